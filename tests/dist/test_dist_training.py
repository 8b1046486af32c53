"""One process per stage (gloo, 2 ranks): DNI learns, every op is recorded once, and the ranks
compute exactly what the in-process runner computes (identical ops on identical tensors in the
same order, so the comparison is bitwise: torch.equal, no tolerance)."""

from collections import Counter

import pytest
import torch

from sglab.dist import DistRun, train_distributed
from sglab.dist.program import rank_step
from sglab.methods import get_method
from sglab.tasks.classify import BatchStream
from sglab.training import ClassifyConfig
from sglab.training.build import build_chain

STEPS = 30


def tiny(method, steps=STEPS, layers=2):
    return ClassifyConfig(method=method, layers=layers, width=32, synth_width=32, batch_size=32, steps=steps, lr=3e-3,
                          device="cpu", dataset="patterns")


def in_process(config, data):
    """The reference: the in-process runner on the batches the trainer's session draws."""
    runner = build_chain(config, data.input_shape, data.num_classes)
    batches = BatchStream(len(data.x_train), config.batch_size, config.seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    losses = []
    for _ in range(config.steps):
        index = batches.next()
        losses.append(runner.step(x[index], y[index]).loss)
    return runner, losses


def assert_same_modules(result, runner):
    for rank, state in enumerate(result.state()):
        expected = runner.stages[rank].state_dict()
        assert state.keys() == expected.keys()
        for name, tensor in expected.items():
            assert torch.equal(state[name], tensor), f"stage {rank} {name} differs"
    for rank, state in enumerate(result.state("synthesizer")):
        if state is not None:
            for name, tensor in runner.interfaces[rank].synthesizer.state_dict().items():
                assert torch.equal(state[name], tensor), f"synthesizer {rank} {name} differs"


@pytest.fixture(scope="module")
def dni_run(patterns):
    config = tiny("dni")
    return config, train_distributed(DistRun(config, patterns), timeout=30, run_timeout=120)


def test_dni_across_two_processes_lowers_the_training_loss(dni_run):
    _, result = dni_run
    loss = result.loss
    assert len(loss) == STEPS
    assert sum(loss[-5:]) / 5 < 0.8 * sum(loss[:5]) / 5


def test_dni_across_two_processes_matches_the_in_process_runner_bitwise(dni_run, patterns):
    config, result = dni_run
    runner, losses = in_process(config, patterns)
    assert result.loss == losses
    assert_same_modules(result, runner)


def test_every_op_of_every_step_is_recorded_exactly_once(dni_run):
    config, result = dni_run
    method = get_method("dni")
    for rank in range(config.layers):
        expected = Counter(a.op for a in rank_step(method, config.layers, rank).actions)
        assert expected["T" if rank == 0 else "RECV_F"] == 1  # the step has the ops the brief asks for
        per_step: dict[int, Counter] = {}
        for record in result.ranks[rank]["records"]:
            assert record["rank"] == record["stage"] == rank
            assert record["start_ns"] <= record["end_ns"] and record["start_wall_ns"] <= record["end_wall_ns"]
            per_step.setdefault(record["step"], Counter())[record["op"]] += 1
        assert sorted(per_step) == list(range(STEPS))
        assert all(ops == expected for ops in per_step.values())
    # the wall clock is shared: rank 1 finishes receiving h_0 of a step only after rank 0 began sending it
    sends = {r["step"]: r for r in result.ranks[0]["records"] if r["op"] == "SEND_F"}
    for record in result.ranks[1]["records"]:
        if record["op"] == "RECV_F":
            assert record["end_wall_ns"] >= sends[record["step"]]["start_wall_ns"]


@pytest.mark.parametrize("method, layers", [
    ("bprop", 2), ("cdni", 2),
    pytest.param("mixed", 3, marks=pytest.mark.slow),  # locked and unlocked interfaces, a middle rank
    pytest.param("unlocked", 3, marks=pytest.mark.slow),  # synthetic inputs: TI waits for h from below
])
def test_other_methods_match_the_in_process_runner_bitwise(method, layers, patterns):
    config = tiny(method, steps=12, layers=layers)
    result = train_distributed(DistRun(config, patterns), timeout=30, run_timeout=120)
    runner, losses = in_process(config, patterns)
    assert result.loss == losses
    assert_same_modules(result, runner)


def test_a_rank_program_is_the_registry_order_plus_messages():
    bprop, dni = get_method("bprop"), get_method("dni")
    text = lambda method, rank, k=2: " ".join(map(str, rank_step(method, k, rank).actions))  # noqa: E731
    assert text(bprop, 0) == "0F0 0SEND_F0 0RECV_B0 0B0 0U0"
    assert text(bprop, 1) == "1RECV_F0 1F0 1B0 1SEND_B0 1U0"
    assert text(dni, 0) == "0F0 0SEND_F0 0S0 0B0 0U0 0RECV_B0 0T0"
    assert rank_step(dni, 2, 0).deferred and not rank_step(bprop, 2, 0).deferred
    assert text(dni, 1, 3) == "1RECV_F0 1F0 1SEND_F0 1S0 1B0 1SEND_B0 1U0 1RECV_B0 1T0"


@pytest.mark.slow
def test_targets_that_trail_by_steps_still_train_and_record_every_op_once(patterns):
    # target_lag 1: T_r of step t may run after S_r of t+1 (re-predicting δ̂ on the updated synthesizer)
    config = tiny("dni", layers=3)
    result = train_distributed(DistRun(config, patterns, target_lag=1, max_pending=3), timeout=30, run_timeout=120)
    assert sum(result.loss[-5:]) / 5 < 0.8 * sum(result.loss[:5]) / 5
    seen = Counter((r["rank"], r["step"], r["op"]) for r in result.records)
    expected = {(rank, step, a.op) for rank in range(3) for step in range(STEPS)
                for a in rank_step(get_method("dni"), 3, rank).actions}
    assert set(seen) == expected and set(seen.values()) == {1}
