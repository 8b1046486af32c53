"""The one method registry: each method's graph, what spans steps, schedules, names and errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sglab.methods import (
    ALIASES,
    METHODS,
    RUNNERS,
    Chain,
    CrossStepEdge,
    MethodError,
    get_method,
    method_names,
    topological_order,
)
from sglab.ops import ALL_OPS, Action
from sglab.schedules import with_communication


def graph_text(method, chain, **kwargs):
    """``{"2B0": ["1B0"? ...]}``: the step graph with actions as text, dependencies sorted."""
    graph = METHODS[method].step_graph(chain, **kwargs)
    return {str(a): sorted(map(str, deps)) for a, deps in graph.items()}


def test_backprop_locks_forward_update_and_backward():
    assert graph_text("bprop", 3) == {
        "0F0": [], "1F0": ["0F0"], "2F0": ["1F0"],
        "2B0": ["2F0"], "1B0": ["1F0", "2B0"], "0B0": ["0F0", "1B0"],
        "2U0": ["2B0"], "1U0": ["1B0"], "0U0": ["0B0"],
    }


def test_nobprop_trains_only_the_stage_with_a_loss():
    assert graph_text("nobprop", 3) == {"0F0": [], "1F0": ["0F0"], "2F0": ["1F0"], "2B0": ["2F0"], "2U0": ["2B0"]}
    # with a loss of its own a lower stage learns from it alone (two RNNs without B's gradient)
    assert graph_text("nobprop", Chain(2, losses=frozenset({0, 1})))["0B0"] == ["0F0"]


def test_dni_stages_wait_only_for_their_own_synthesizer_and_targets_come_later():
    g = graph_text("dni", 3)
    assert g["0B0"] == ["0S0"] and g["1B0"] == ["1S0"] and g["2B0"] == ["2F0"]
    assert g["0T0"] == ["0S0", "1B0"] and g["1T0"] == ["1S0", "2B0"]
    assert "2S0" not in g and "2T0" not in g
    assert graph_text("cdni", 3) == g  # the label changes what a synthesizer sees, not what waits


def test_unlocked_stages_do_not_wait_for_the_stage_below():
    g = graph_text("unlocked", 3)
    assert g["1F0"] == ["1SI0"] and g["2F0"] == ["2SI0"] and g["2TI0"] == ["1F0", "2SI0"]


def test_stochastic_updates_drop_inactive_stages_and_their_targets():
    g = graph_text("stochastic", 3, active=[True, False, True])
    assert "1B0" not in g and "1U0" not in g and "1S0" not in g
    assert "0T0" not in g and "1T0" not in g  # 0T0 needs 1B0's input gradient; 1T0 needs 1S0


def test_mixed_unlocking_makes_a_locked_stage_wait_for_the_true_gradient():
    g = graph_text("mixed", 3, locked=[True, False, False])
    assert g["0B0"] == ["0S0", "1B0"] and g["1B0"] == ["1S0"]


def test_dgl_trains_on_local_heads_and_sends_no_gradient():
    g = graph_text("dgl", 3)
    assert g["0B0"] == ["0S0"] and g["0T0"] == ["0S0"] and g["1T0"] == ["1S0"]
    assert not any(dep.startswith(str(int(a[0]) + 1)) for a, deps in g.items() for dep in deps if a[1] in "BT")


def test_pipelines_and_ddg_have_backprops_step_graph():
    for name in ("gpipe", "1f1b", "ddg"):
        assert graph_text(name, 4) == graph_text("bprop", 4)


def test_a_recurrent_chain_in_time_ties_weights_and_trains_the_carried_interface():
    chain = Chain(4, losses=frozenset({1, 2, 3}), tied=True, carried=True)
    g = graph_text("dni", chain)
    assert "0F0" not in g and g["0T0"] == ["1B0"]  # stage 0 is the carried-in state
    assert "0U0" not in g["2F0"] and "1U0" in g["2F0"]  # chunk 2 waits for chunk 1's update (one set of weights)
    assert "0T0" in g["2S0"]  # ... and for the synthesizer's last step
    assert "3S0" not in g  # the sequence ends: no synthetic future
    assert "3S0" in graph_text("dni", Chain(4, losses=frozenset({1, 2, 3}), tied=True, carried=True, open_end=True))
    assert "3S0" in graph_text("dni-aux", chain)  # DNI+Aux's last chunk still predicts (a zero future)
    assert [str(a) for a in METHODS["nobprop"].step_order(chain)] == ["1F0", "1B0", "1U0", "2F0", "2B0", "2U0",
                                                                        "3F0", "3B0", "3U0"]


def test_backprop_over_chunks_with_tied_weights_is_a_cycle_naming_the_stuck_ops():
    chain = Chain(3, losses=frozenset({1, 2}), tied=True, carried=True)
    with pytest.raises(ValueError, match="dependency cycle: these ops can never run: .*1B0"):
        METHODS["bprop"].step_order(chain)


def test_topological_order_names_missing_dependencies_and_cycles():
    with pytest.raises(ValueError, match="depends on ops that are not in the graph: \\['0B0'\\]"):
        topological_order({Action(0, "F"): (Action(0, "B"),)})
    with pytest.raises(ValueError, match="can never run: 0B0, 0F0"):
        topological_order({Action(0, "F"): (Action(0, "B"),), Action(0, "B"): (Action(0, "F"),)})


def test_cross_step_edges():
    bprop, ddg, dni = METHODS["bprop"], METHODS["ddg"], METHODS["dni"]
    weights = [CrossStepEdge(Action(i, "F"), Action(i, "U"), 1) for i in range(3)]
    assert bprop.cross_step_edges(3, max_ahead=2) == weights  # locked stages never run ahead: no queue bound
    assert [e.lag for e in ddg.cross_step_edges(3)] == [3, 2, 1]  # stage k uses weights K-1-k updates older
    bound = dni.cross_step_edges(3, max_ahead=2)[3:]
    assert bound == [CrossStepEdge(Action(0, "F"), Action(1, "F"), 2), CrossStepEdge(Action(1, "F"), Action(2, "F"), 2)]
    assert dni.cross_step_edges(3, max_ahead=None) == weights
    assert (bprop.policy, ddg.policy, dni.policy, METHODS["dgl"].policy) == ("static", "ready", "ready", "ready")


def test_pipeline_rank_actions_flush_with_one_update():
    gpipe = METHODS["gpipe"].rank_actions(2, 3)
    assert [str(a) for a in gpipe[1]] == ["1F0", "1F1", "1F2", "1B0", "1B1", "1B2", "1U0"]
    onefb = METHODS["1f1b"].rank_actions(3, 4)
    assert [str(a) for a in onefb[0]] == ["0F0", "0F1", "0F2", "0B0", "0F3", "0B1", "0B2", "0B3", "0U0"]
    with pytest.raises(MethodError, match="not a pipeline schedule"):
        METHODS["dni"].rank_actions(2, 2)


def test_communication_pass_adds_matching_sends_and_receives_and_names_a_stuck_schedule():
    per_rank = {r: actions[:-1] for r, actions in METHODS["gpipe"].rank_actions(2, 2).items()}
    comms = with_communication(per_rank, lambda stage: stage, 2)
    assert [str(a) for a in comms[0]] == ["0F0", "0SEND_F0", "0F1", "0SEND_F1", "0RECV_B0", "0B0", "0RECV_B1", "0B1"]
    assert [str(a) for a in comms[1]] == ["1RECV_F0", "1F0", "1RECV_F1", "1F1", "1B0", "1SEND_B0", "1B1", "1SEND_B1"]
    with pytest.raises(ValueError, match="rank 0: 0B0"):
        with_communication({0: [Action(0, "B")], 1: [Action(1, "F")]}, lambda stage: stage, 2)


def test_names_mean_one_method_and_aliases_point_to_it():
    for alias, name in ALIASES.items():
        assert get_method(alias) is METHODS[name]
    assert get_method("naive") is get_method("bprop")
    with pytest.raises(MethodError, match="unknown method 'magic'; choose one of: bprop, nobprop"):
        get_method("magic")
    with pytest.raises(MethodError, match="by a string, got int 42"):
        get_method(42)


def test_a_runner_asked_for_a_method_it_cannot_run_names_the_runners_that_can():
    with pytest.raises(MethodError, match="recurrent .* cannot run method 'cdni'; it runs: nobprop, dni, dni-aux. "
                                          "'cdni' runs in: feed-forward training .*two recurrent networks.*the simulator"):
        get_method("cdni", "recurrent")
    for runner in RUNNERS:
        for name in method_names(runner):
            assert get_method(name, runner).name == name


def test_probability_overrides_make_a_new_method_and_are_checked():
    method = get_method("stochastic", update_prob=0.5)
    assert method.update_prob == 0.5 and METHODS["stochastic"].update_prob == 0.2
    assert get_method("dni", update_prob=1.0) is METHODS["dni"]
    with pytest.raises(MethodError, match="unlock_prob applies to methods with synthetic gradients"):
        get_method("bprop", unlock_prob=0.5)
    with pytest.raises(ValueError, match="update_prob must be in"):
        get_method("dni", update_prob=1.5)


@given(st.integers(0, 99), st.sampled_from(ALL_OPS), st.integers(0, 99))
def test_action_text_round_trips(stage, op, microbatch):
    action = Action(stage, op, microbatch)
    assert Action.parse(str(action)) == action


@pytest.mark.parametrize("text", ["F0", "0X0", "-1F0", "0F", "1SEND_Q0"])
def test_malformed_action_text_is_refused(text):
    with pytest.raises(ValueError, match="cannot parse action"):
        Action.parse(text)


def test_a_locked_interface_whose_upper_stage_skips_its_update_falls_back_to_the_synthetic_gradient():
    mixed = METHODS["mixed"]
    assert mixed.waiting([True, False, True], [True, True]) == (False, True, False)
    g = graph_text("mixed", 3, active=[True, False, True], locked=[True, True, False])
    assert g["0B0"] == ["0S0"]  # stage 1 runs no B this step: nothing to wait for
