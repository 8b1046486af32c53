"""A chain of RNNs on their own clocks, each link a DNI: targets, who waits for whom, learning, ablations."""

from __future__ import annotations

import json
import math

import pytest
import torch
from recurrent_helpers import OpRecorder, TensorRecorder

from sglab.config import ConfigError
from sglab.tasks.rnn_chain import majority_rate, make_chain_episodes
from sglab.training import RNNChainConfig
from sglab.training.build import build_rnn_chain

#: Chance level of the last network's loss on the default task: the entropy of Binomial(4, 1/2), in nats.
CHANCE_LOSS = -sum(p * math.log(p) for p in (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16))


def episodes(config: RNNChainConfig, batch: int, seed: int):
    """Episodes of ``config``'s task."""
    return make_chain_episodes(config.symbols, tuple(config.ratios), config.last_ticks, batch,
                               torch.Generator().manual_seed(seed))


def initial_weights(runner) -> list[list[torch.Tensor]]:
    """A copy of every network's parameters."""
    return [[p.detach().clone() for p in net.parameters()] for net in runner.networks]


def unchanged(runner, before) -> list[bool]:
    """Per network: are its parameters exactly what ``before`` holds?"""
    return [all(torch.equal(p, q) for p, q in zip(net.parameters(), old)) for net, old in zip(runner.networks, before)]


def train(config: RNNChainConfig, steps: int, observer=None):
    """``steps`` steps on fresh episodes (seeded by ``config.seed``); returns the runner and the held-out scores."""
    runner = build_rnn_chain(config)
    generator = torch.Generator().manual_seed(config.seed + 1)
    for _ in range(steps):
        batch = make_chain_episodes(config.symbols, tuple(config.ratios), config.last_ticks, config.batch_size, generator)
        runner.train_step(batch, observer)
    return runner, runner.evaluate(episodes(config, 512, config.seed + 2))


def test_episode_targets_count_the_odd_symbols_of_each_window():
    batch = make_chain_episodes(5, (2, 3), 2, 4, torch.Generator().manual_seed(0))
    assert batch.inputs.shape == (12, 4, 5) and batch.counts.shape == (2, 4)
    assert torch.equal(batch.inputs.argmax(-1), batch.symbols)
    for b in range(4):
        seq = batch.symbols[:, b].tolist()
        assert batch.counts[:, b].tolist() == [sum(s % 2 for s in seq[:6]), sum(s % 2 for s in seq[6:])]
    assert majority_rate(6, (2, 2)) == 6 / 16


@pytest.mark.parametrize("changes, expected", [
    # DNI at both links: network 1 ticks once per chunk of network 0 (2 symbols), network 2 once
    # per chunk of network 1 (2 of its ticks); each updates at the end of its own chunk, and
    # link k's synthesizer trains (kT) once network k+1's backward has the true gradient of the
    # messages it read.
    ({}, "0F0 0S0 0B0 0U0 0F1 0S1 0B1 0U1 1F0 1S0 1B0 1U0 0T0 0T1 2F0 2B0 2U0 1T0"),
    # link 0 cut: network 0 only runs forward
    ({"cut_links": [0]}, "0F0 0F1 1F0 1S0 1B0 1U0 2F0 2B0 2U0 1T0"),
    # link 1 cut: network 1 gets no gradient, so it has none to give link 0's synthesizer (no 0T)
    ({"cut_links": [1]}, "0F0 0S0 0B0 0U0 0F1 0S1 0B1 0U1 1F0 2F0 2B0 2U0"),
    ({"method": "nobprop"}, "0F0 0F1 1F0 2F0 2B0 2U0"),
])
def test_each_network_runs_on_its_own_clock_and_nobody_waits(changes, expected):
    config = RNNChainConfig(last_ticks=1, hidden=4, message_size=3, **changes)
    recorder = OpRecorder()
    build_rnn_chain(config).train_step(episodes(config, 4, 0), observer=recorder)
    assert recorder.actions == expected.split()


def test_four_networks_tick_at_their_ratios():
    config = RNNChainConfig(ratios=[2, 1, 3], last_ticks=2, hidden=4, message_size=3)
    recorder = OpRecorder()
    build_rnn_chain(config).train_step(episodes(config, 4, 0), observer=recorder)
    forwards = [sum(a[1] == "F" and a[0] == str(k) for a in recorder.actions) for k in range(4)]
    # 12 symbols: network 0 sends a message every 2, network 1 every tick, network 2 every 3 of its ticks
    assert forwards == [6, 6, 2, 2]
    assert recorder.actions.count("2T1") == 1 and "3S0" not in recorder.actions


@pytest.mark.slow
def test_the_first_synthetic_gradients_are_zero_and_the_chain_learns_through_both_links():
    config = RNNChainConfig(seed=0)
    recorder = TensorRecorder()
    runner = build_rnn_chain(config)
    before = initial_weights(runner)
    runner.train_step(episodes(config, config.batch_size, 1), observer=recorder)
    assert torch.count_nonzero(recorder.seen["0S0"]["synthetic_gradient"]) == 0  # zero-initialised synthesizers
    runner, scores = train(config, 300)
    assert not any(unchanged(runner, before))  # every network moved, the first one included
    assert scores["loss"] < 0.7 < CHANCE_LOSS - 0.7  # chance: 1.41 nats
    assert scores["accuracy"] > 0.7


@pytest.mark.slow
@pytest.mark.parametrize("cut", [[0], [1]])
def test_a_cut_link_leaves_every_network_upstream_exactly_untouched(cut):
    config = RNNChainConfig(seed=0, cut_links=cut)
    runner = build_rnn_chain(config)
    before = initial_weights(runner)
    runner, scores = train(config, 300)
    upstream = cut[0] + 1
    assert unchanged(runner, before) == [True] * upstream + [False] * (3 - upstream)
    assert scores["loss"] > CHANCE_LOSS - 0.05  # what network 0 sees never reaches the last network


def test_with_the_downstream_link_cut_network_0_gets_exactly_zero_synthetic_gradients():
    config = RNNChainConfig(seed=0, cut_links=[1], last_ticks=2)
    recorder = TensorRecorder()
    runner, _ = train(config, 3, recorder)
    assert runner.synthesizers[1] is None and runner.synthesizers[0] is not None
    grads = [seen["synthetic_gradient"] for action, seen in recorder.seen.items() if action[1] == "S"]
    assert len(grads) == 4 and all(torch.count_nonzero(g) == 0 for g in grads)


@pytest.mark.parametrize("changes, field", [
    ({"ratios": []}, "ratios"), ({"ratios": [2, 0]}, "ratios"), ({"cut_links": [2]}, "cut_links"),
    ({"cut_links": [0, 0]}, "cut_links"), ({"method": "nobprop", "cut_links": [0]}, "cut_links"),
    ({"method": "bprop"}, "method"), ({"symbols": 1}, "symbols"), ({"probe_every": 5}, "probe_every"),
])
def test_bad_chain_settings_are_rejected_clearly(changes, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        RNNChainConfig(**changes)


def test_sglab_train_rnn_chain_writes_a_run_directory(tmp_path, sglab_main, capsys):
    out = tmp_path / "run"
    argv = ["train", "--task", "rnn-chain", "--ratios", "2", "3", "--cut-links", "1", "--hidden", "4",
            "--message-size", "3", "--steps", "4", "--eval-every", "2", "--eval-episodes", "8", "--batch-size", "4",
            "--no-progress", "--out", str(out)]
    assert sglab_main(argv) == 0
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["ratios"] == [2, 3] and saved["cut_links"] == [1] and saved["method"] == "cdni"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "rnn-chain" and summary["chance"] == majority_rate(6, (2, 3))
    assert "links [1] cut" in capsys.readouterr().out
    assert sglab_main(["train", "--task", "rnn-chain", "--tick-ratio", "3", "--out", str(tmp_path / "x")]) == 2
