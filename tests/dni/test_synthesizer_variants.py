"""Every synthesizer objective in the feed-forward runner, in ``train`` and on the command line."""

import argparse
import copy

import pandas as pd
import pytest
import torch

from sglab.config import ConfigError
from sglab.dni import losses, targets
from sglab.exec.chain import ChainRunner
from sglab.exec.observe import Observer
from sglab.methods import Chain, get_method, method_names
from sglab.training import ClassifyConfig, train
from sglab.training.build import build_chain
from sglab.training.run_dir import RunDir

OBJECTIVES = ("l2", "sobolev", "critic")


def tiny(method="dni", **overrides):
    base = dict(method=method, layers=3, width=16, synth_width=16, channels=4, batch_size=16, steps=40,
                eval_every=20, log_every=5, lr=3e-3, device="cpu", dataset="patterns")
    return ClassifyConfig(**{**base, **overrides})


class Seen(Observer):
    """Keeps every tensor of every op, by action."""

    wants_tensors = True

    def __init__(self):
        self.seen = {}

    def tensors(self, action, mapping):
        self.seen[str(action)] = {k: v.clone() for k, v in mapping.items()}


def first_batch(patterns, n=16):
    return torch.from_numpy(patterns.x_train[:n]), torch.from_numpy(patterns.y_train[:n])


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("model, synthesizer", [("fcn", "linear"), ("fcn", "mlp"), ("cnn", "conv")])
@pytest.mark.parametrize("method", ["dni", "cdni"])
def test_every_variant_starts_with_exactly_zero_synthetic_gradients(objective, model, synthesizer, method, patterns):
    config = tiny(method, model=model, synthesizer=synthesizer, synth_loss=objective)
    runner = build_chain(config, patterns.input_shape, 10)
    observer = Seen()
    runner.step(*first_batch(patterns), observer)
    for stage in (0, 1):
        delta = observer.seen[f"{stage}S0"]["synthetic_gradient"]
        assert torch.count_nonzero(delta) == 0 and delta.shape[0] == 16
        assert set(observer.seen[f"{stage}T0"]) == {"prediction", "target"}


def test_every_order_trains_an_interface_before_the_stages_and_synthesizers_its_target_is_made_of():
    """The Sobolev target is rebuilt from stage ``i+1..j`` and synthesizer ``j`` as they are at ``T_i``:
    their weights must still be those of the forward, so no ``U_k`` or ``T_k`` (``k > i``) runs before it."""
    patterns = [(None, None), (None, (True, False, True, False)), (None, (True,) * 4), ((True, False, True, True), None)]
    for name in method_names("train"):
        method = get_method(name, unlock_prob=0.5 if name == "mixed" else None)
        if not method.synthetic_gradients:
            continue
        for active, locked in patterns:
            order = [str(a) for a in method.step_order(Chain(4), active, locked)]
            for i in range(3):
                if f"{i}T0" in order:
                    later = [f"{k}{op}0" for k in range(i + 1, 4) for op in "UT" if f"{k}{op}0" in order]
                    assert all(order.index(f"{i}T0") < order.index(a) for a in later), (name, active, locked, order)


def test_sobolev_with_zero_weight_trains_exactly_as_l2(patterns):
    runs = {}
    for objective in ("l2", "sobolev"):
        weights = {"sobolev_weight": 0.0} if objective == "sobolev" else {}
        runner = build_chain(tiny(synth_loss=objective, **weights), patterns.input_shape, 10)
        x, y = first_batch(patterns, 160)
        for start in range(0, 160, 16):
            runner.step(x[start:start + 16], y[start:start + 16])
        runs[objective] = [t.clone() for t in runner.stages.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(runs["l2"], runs["sobolev"]))


@pytest.mark.parametrize("objective", ["sobolev", "critic"])
def test_the_objectives_leave_the_real_run_alone(objective, patterns):
    """One step: every δ̂ is still zero, so the stages' weights and running statistics (and, for
    Sobolev, the synthesizers' running statistics) must be bitwise those of the L2 run."""
    states = {}
    for name in ("l2", objective):
        runner = build_chain(tiny(synth_loss=name), patterns.input_shape, 10)
        runner.step(*first_batch(patterns))
        synth_buffers = [b.clone() for i in runner.interfaces for b in i.synthesizer.buffers()] if name != "critic" else []
        states[name] = [t.clone() for t in runner.stages.state_dict().values()] + synth_buffers
    assert len(states["l2"]) >= len(states[objective]) > 0
    assert all(torch.equal(a, b) for a, b in zip(states["l2"], states[objective]))


def test_targets_skip_interfaces_that_waited_for_the_true_gradient(patterns, monkeypatch):
    """unlock_prob 0: every stage waits, so each interface's targets come from the loss itself."""
    paths, values = [], []
    real_jvps, real_critic = targets.target_jvps, losses.critic_loss
    monkeypatch.setattr(targets, "target_jvps", lambda h, path, close, d: paths.append(len(path)) or real_jvps(h, path, close, d))
    monkeypatch.setattr(losses, "critic_loss", lambda g, t, v, value, w: values.append(value) or real_critic(g, t, v, value, w))
    x, y = first_batch(patterns)
    for objective in ("sobolev", "critic"):
        runner = build_chain(tiny("mixed", layers=4, unlock_prob=0.0, synth_loss=objective), patterns.input_shape, 10)
        observer = Seen()
        runner.step(x, y, observer)
    assert paths == [3, 2, 1]  # T0 backpropagates through stages 1..3 to the loss, T1 through 2..3, T2 through 3
    expected = targets.per_sample_loss(runner.criterion, observer.seen["3F0"]["h"], y) / len(y)  # each sample's share
    assert len(values) == 3 and all(torch.equal(v, expected) for v in values)


def test_deeper_critic_values_are_bootstrapped_from_the_next_critic(patterns, monkeypatch):
    values = []
    real = losses.critic_loss
    monkeypatch.setattr(losses, "critic_loss", lambda g, t, v, value, w: values.append(value) or real(g, t, v, value, w))
    runner = build_chain(tiny(synth_loss="critic"), patterns.input_shape, 10)
    for p in runner.interfaces[1].synthesizer.body[-1].parameters():
        torch.nn.init.normal_(p)  # a non-zero critic at interface 1
    critic1 = copy.deepcopy(runner.interfaces[1].synthesizer)
    x, y = first_batch(patterns)
    observer = Seen()
    runner.step(x, y, observer)
    # T0 runs first and reads L̂_1(h_1) as made in S1, before T1 trains critic 1; T1 reads the true share ℓ_b/B
    assert torch.count_nonzero(values[0]) > 0 and torch.equal(values[0], critic1.value(observer.seen["1F0"]["h"]))
    assert torch.equal(values[1], targets.per_sample_loss(runner.criterion, observer.seen["2F0"]["h"], y) / len(y))


def test_a_critic_objective_without_critics_is_refused(patterns):
    runner = build_chain(tiny(), patterns.input_shape, 10)
    with pytest.raises(ValueError, match="critic objective needs critic synthesizers"):
        ChainRunner(runner.stages, runner.method, runner.optimizers, runner.interfaces,
                    objective=losses.SynthObjective("critic"))


def same_run(a, b):
    """Metrics (but time) and every checkpoint tensor bitwise equal."""
    ma, mb = (pd.read_csv(d / "metrics.csv").drop(columns=["time_s"]) for d in (a, b))
    pd.testing.assert_frame_equal(ma, mb, check_exact=True)
    sa, sb = (RunDir(d).load_checkpoint()["session"]["modules"] for d in (a, b))
    assert sa.keys() == sb.keys()
    for name in sa:
        assert all(torch.equal(sa[name][k], sb[name][k]) for k in sa[name]), name


VARIANTS = [  # objective, method, model, synthesizer, its weight (Sobolev's derivative term, the critic's value term)
    ("sobolev", "dni", "fcn", "mlp", 1.0), ("sobolev", "cdni", "fcn", "linear", 1.0), ("sobolev", "cdni", "cnn", "conv", 1.0),
    ("critic", "dni", "fcn", "mlp", 1.0), ("critic", "cdni", "fcn", "linear", 1e-3), ("critic", "cdni", "cnn", "conv", 1e-5),
]


@pytest.mark.parametrize("objective, method, model, synthesizer, value_weight", VARIANTS)
def test_every_variant_trains_end_to_end_and_lowers_the_loss(objective, method, model, synthesizer, value_weight,
                                                             patterns, tmp_path):
    weight = {"sobolev_weight" if objective == "sobolev" else "critic_value_weight": value_weight}
    config = tiny(method, model=model, synthesizer=synthesizer, synth_loss=objective, steps=80, eval_every=80, **weight)
    train(config, tmp_path, progress=False, dataset=patterns)
    metrics = pd.read_csv(tmp_path / "metrics.csv").query("kind == 'train'")
    loss = metrics.loss.to_numpy()
    factor = 0.95 if model == "cnn" else 0.9  # the 4-channel CNN learns slowest, with every objective (L2: 0.81)
    assert loss[-3:].mean() < factor * loss[:3].mean(), loss
    assert metrics[["synth_loss_0", "synth_loss_1"]].notna().all().all()


@pytest.mark.parametrize("objective, method", [("sobolev", "mixed"), ("critic", "cdni")])
def test_runs_repeat_and_resume_bitwise(objective, method, patterns, tmp_path):
    extra = dict(synth_loss=objective, unlock_prob=0.5 if method == "mixed" else None, log_every=3, eval_every=10)
    extra.update(sobolev_directions=2, sobolev_distribution="gaussian") if objective == "sobolev" else None
    train(tiny(method, steps=30, **extra), tmp_path / "a", progress=False, dataset=patterns)
    train(tiny(method, steps=30, **extra), tmp_path / "b", progress=False, dataset=patterns)
    same_run(tmp_path / "a", tmp_path / "b")
    train(tiny(method, steps=20, **extra), tmp_path / "cut", progress=False, dataset=patterns)
    train(tiny(method, steps=30, **extra), tmp_path / "cut", progress=False, dataset=patterns, resume=True)
    same_run(tmp_path / "a", tmp_path / "cut")
    other = tiny(method, steps=30, **{**extra, "seed": 1})
    train(other, tmp_path / "other", progress=False, dataset=patterns)
    assert not pd.read_csv(tmp_path / "a" / "metrics.csv").loss.equals(pd.read_csv(tmp_path / "other" / "metrics.csv").loss)


@pytest.mark.parametrize("values, message", [
    ({"synth_loss": "l1"}, "'synth_loss' must be one of l2, sobolev, critic"),
    ({"synth_loss": "critic", "method": "bprop"}, "'synth_loss' 'critic' applies to methods with synthetic gradients"),
    ({"sobolev_weight": 2.0}, "'sobolev_weight' applies to synth_loss 'sobolev', not 'l2'"),
    ({"synth_loss": "critic", "sobolev_directions": 3}, "'sobolev_directions' applies to synth_loss 'sobolev', not 'critic'"),
    ({"synth_loss": "sobolev", "critic_value_weight": 0.5}, "'critic_value_weight' applies to synth_loss 'critic'"),
    ({"synth_loss": "sobolev", "sobolev_directions": 0}, "'sobolev_directions' must be >= 1"),
    ({"synth_loss": "sobolev", "sobolev_weight": -1.0}, "'sobolev_weight' must be >= 0"),
    ({"synth_loss": "sobolev", "sobolev_distribution": "uniform"}, "must be one of rademacher, gaussian"),
    ({"synth_loss": "critic", "critic_value_weight": -0.1}, "'critic_value_weight' must be >= 0"),
])
def test_bad_objective_fields_are_named(values, message):
    from sglab.training import make_config

    with pytest.raises(ConfigError, match=message):
        make_config("classify", values)


def parse(argv):
    from sglab.cli import train as train_cli

    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    return train_cli.build_config(parser.parse_args(["train", *argv]))


def test_command_line_flags_select_the_objective():
    config = parse(["--synth-loss", "sobolev", "--sobolev-weight", "0.5", "--sobolev-directions", "3",
                    "--sobolev-distribution", "gaussian"])
    assert (config.synth_loss, config.sobolev_weight, config.sobolev_directions, config.sobolev_distribution) == \
        ("sobolev", 0.5, 3, "gaussian")
    assert parse(["--synth-loss", "critic", "--critic-value-weight", "0.1"]).critic_value_weight == 0.1
    assert parse([]).synth_loss == "l2"
    with pytest.raises(ConfigError, match="--synth-loss does not apply to --task copy"):
        parse(["--task", "copy", "--synth-loss", "critic"])


def test_config_and_command_line_offer_exactly_the_objectives_the_losses_define():
    """The config spells its choices out (it imports no torch); they must stay those of sglab.dni.losses."""
    import dataclasses

    from sglab.cli import train as train_cli

    specs = {f.name: f.metadata for f in dataclasses.fields(ClassifyConfig)}
    assert specs["synth_loss"]["choices"] == losses.SYNTH_LOSSES
    assert specs["sobolev_distribution"]["choices"] == losses.DISTRIBUTIONS
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    flags = {a.dest: a for a in parser._subparsers._group_actions[0].choices["train"]._actions}
    assert tuple(flags["synth_loss"].choices) == losses.SYNTH_LOSSES
    assert tuple(flags["sobolev_distribution"].choices) == losses.DISTRIBUTIONS
