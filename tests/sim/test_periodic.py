"""Copying the steady step (sglab.sim.periodic) builds exactly the graph that building every step builds."""

from __future__ import annotations

import numpy as np
import pytest
from simfixtures import build_hardware, build_profile

import sglab.sim.steps as steps_module
from sglab.methods import get_method, method_names, pipelines
from sglab.sim import SimOptions, build_graph, simulate
from sglab.sim.graph import COLUMNS
from sglab.sim.periodic import repeat_step

STEP_METHODS = [name for name in method_names("sim") if name not in set(pipelines())]
BUFFERS = ("buffer_alloc", "buffer_free", "buffer_bytes", "buffer_kind")


def _graph(name: str, steps: int, copy: bool, monkeypatch, **options):
    calls = []

    def refuse(*args):
        calls.append(args)
        return False

    with monkeypatch.context() as patch:
        if not copy:
            patch.setattr(steps_module, "repeat_step", refuse)
        hardware = build_hardware(3, latency_ns=100, bandwidth=10**9)
        graph = build_graph(build_profile(3), hardware, get_method(name, "sim"), SimOptions(steps=steps, **options))
    return graph, calls


@pytest.mark.parametrize("name", STEP_METHODS)
@pytest.mark.parametrize("steps", [1, 2, 3, 7])
def test_copied_steps_equal_built_steps(name, steps, monkeypatch):
    copied, _ = _graph(name, steps, True, monkeypatch, max_ahead=2)
    built, _ = _graph(name, steps, False, monkeypatch, max_ahead=2)
    assert len(copied) == len(built)
    for column in (*COLUMNS, *BUFFERS):
        assert np.array_equal(copied.column(column), built.column(column)), column
    assert [list(s.order) for s in copied.servers] == [list(s.order) for s in built.servers]


def test_a_long_run_is_copied_and_its_trace_unchanged(monkeypatch):
    _, calls = _graph("dni", 50, False, monkeypatch)
    assert len(calls) == 1  # tried once, after the cross-step edges' lag
    hardware = build_hardware(3, latency_ns=100, bandwidth=10**9)
    copied = simulate(build_profile(3), hardware, "dni", steps=50)
    monkeypatch.setattr(steps_module, "repeat_step", lambda *args: False)
    built = simulate(build_profile(3), hardware, "dni", steps=50)
    assert copied.trace.equals(built.trace)
    assert copied.summary == built.summary


def test_stochastic_methods_are_built_step_by_step(monkeypatch):
    stochastic = [n for n in STEP_METHODS if get_method(n, "sim").update_prob < 1 or get_method(n, "sim").unlock_prob < 1]
    assert stochastic
    for name in stochastic:
        assert _graph(name, 20, False, monkeypatch)[1] == []


def test_steps_that_differ_are_not_copied(monkeypatch):
    graph, _ = _graph("dni", 1, True, monkeypatch)
    per_step = len(graph)
    graph.compute(1, 0, "F", 0, [0])  # a second "step" of one op: not a copy of the first
    assert not repeat_step(graph, 0, per_step, 5, {})
    assert len(graph) == per_step + 1


def test_a_step_with_other_dependencies_is_not_copied(monkeypatch):
    graph, _ = _graph("bprop", 2, False, monkeypatch)
    half = len(graph) // 2
    graph.add_deps(len(graph) - 1, 0)
    assert not repeat_step(graph, 0, half, 3, {})
    assert len(graph) == 2 * half
