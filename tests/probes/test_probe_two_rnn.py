"""The two-RNN probe: its true gradient is the one B's real backward sends A's message."""

import math

import pytest
import torch
from probe_helpers import fake_digits, tiny_two_rnn

from sglab.exec.observe import Observer, Observers
from sglab.probes import TwoRNNProbe
from sglab.tasks.two_rnn import make_episodes
from sglab.training.build import build_two_rnn


class Received(Observer):
    """B's input gradient (∂L_B/∂m by the real backward) and A's message's injected gradient, per chunk."""

    wants_tensors = True

    def begin_step(self, step):
        self.b_input, self.a_output = {}, {}

    def tensors(self, action, tensors):
        if (action.stage, action.op) == (1, "B") and "input_gradient" in tensors:
            self.b_input[action.microbatch] = tensors["input_gradient"]
        if (action.stage, action.op) == (0, "B") and "output_gradient" in tensors:
            self.a_output[action.microbatch] = tensors["output_gradient"]


def steps(method, n=3):
    config = tiny_two_rnn(method, lr=0.05)
    runner = build_two_rnn(config, 784)
    images, labels = fake_digits(200, 0)
    g = torch.Generator().manual_seed(1)
    probe, spy = TwoRNNProbe(runner), Received()
    for step in range(n):
        runner.train_step(make_episodes(images, labels, config.tick_ratio, config.b_ticks, config.batch_size, g),
                          Observers(spy, probe))
        yield probe, spy, probe.finish(step), config


@pytest.mark.parametrize("method", ["bprop", "dni", "cdni"])
def test_the_true_gradient_is_bs_real_input_gradient_at_every_chunk(method):
    for probe, spy, _rows, config in steps(method):
        assert sorted(probe.last) == [(0, k) for k in range(config.b_ticks)]
        for k in range(config.b_ticks):
            record = probe.last[(0, k)]
            assert torch.equal(record["true"], spy.b_input[k])
            sent = record["true"] if method == "bprop" else record["synthetic"]
            assert torch.equal(spy.a_output[k], sent)  # what A's backward injects: δ under bprop, δ̂ under DNI


def test_the_synthesizers_target_is_the_true_gradient_so_its_bootstrapping_error_is_zero():
    for step, (_probe, _spy, rows, config) in enumerate(steps("cdni")):
        metrics = {(r["microbatch"], r["metric"]): r["value"] for r in rows}
        for k in range(config.b_ticks):
            assert metrics[k, "target_cosine"] == pytest.approx(1, abs=1e-6) and metrics[k, "target_rel_error"] < 1e-6
            assert metrics[k, "update_norm"] > 0
            if step == 0 and k == 0:  # the zero-initialised synthesizer's first δ̂ has no direction
                assert math.isnan(metrics[k, "synthetic_cosine"]) and metrics[k, "synthetic_norm_ratio"] == 0
            else:
                assert -1 <= metrics[k, "synthetic_cosine"] <= 1


def test_without_a_synthesizer_the_probe_records_the_scales():
    for _probe, _spy, rows, config in steps("nobprop", n=1):
        assert {r["metric"] for r in rows} == {"true_norm", "update_norm"}
        assert {r["microbatch"] for r in rows} == set(range(config.b_ticks))
        assert all(r["value"] > 0 for r in rows)
