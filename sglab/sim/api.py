"""``simulate``: profile + hardware + method → :class:`SimResult`, with speedup over the baseline.

A method is a registry name (:func:`sglab.methods.get_method` for the ``sim`` runner), a
:class:`~sglab.methods.Method`, or a hand-written pipeline (:func:`pipeline_schedule`). Its task
graph comes from one of two builders: :func:`~sglab.sim.steps.build_steps` for methods whose
step is one minibatch, :func:`~sglab.sim.pipeline.build_pipeline` for pipeline schedules. A
device runs a static order where the method's stages wait for each other
(``method.policy == "static"``) and otherwise the oldest ready op (a ready queue).

The baseline of every speedup is sequential backprop: ``bprop`` with every stage on the device
of stage 0, run on the same samples one batch per step.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from sglab.costprofile import CostProfile
from sglab.methods import Method, get_method, method_names
from sglab.sim.costs import CostModel
from sglab.sim.engine import Engine
from sglab.sim.errors import SimUsageError
from sglab.sim.graph import TaskGraph
from sglab.sim.hardware import Hardware
from sglab.sim.options import SimOptions
from sglab.sim.pipeline import UserSchedule, build_pipeline, method_orders, stage_placement, user_orders
from sglab.sim.results import SimResult, add_speedup, summarise
from sglab.sim.spec import load_hardware
from sglab.sim.steps import build_steps

#: What ``simulate`` accepts as a method.
MethodLike = str | Method | UserSchedule
#: The method of the baseline, run with every stage on the device of stage 0.
BASELINE = "bprop"


def resolve_method(method: MethodLike, options: SimOptions) -> Method | UserSchedule:
    """The method ``method`` names, with ``options``' update and unlock probabilities applied."""
    if isinstance(method, str):
        return get_method(method, "sim", update_prob=options.update_prob, unlock_prob=options.unlock_prob)
    if isinstance(method, UserSchedule):
        if options.update_prob is not None or options.unlock_prob is not None:
            raise SimUsageError(f"schedule {method.name!r} is backprop over microbatches; "
                                "update_prob and unlock_prob do not apply")
        return method
    if isinstance(method, Method):
        if "sim" not in method.runners:
            raise SimUsageError(f"the simulator cannot run method {method.name!r}; it runs: "
                                f"{', '.join(method_names('sim'))}")
        if options.unlock_prob is not None and not method.synthetic_gradients:
            raise SimUsageError(f"unlock_prob applies to methods with synthetic gradients, not {method.name!r}")
        probs = (("update_prob", options.update_prob), ("unlock_prob", options.unlock_prob))
        return replace(method, **{name: p for name, p in probs if p is not None})
    raise SimUsageError(f"method must be a method name ({', '.join(method_names('sim'))}), a sglab.methods.Method "
                        f"or a schedule from pipeline_schedule(), got {type(method).__name__} {method!r}")


def microbatches_for(method: Method | UserSchedule, options: SimOptions, ranks: int) -> int:
    """Microbatches per step: a pipeline's ``options.microbatches`` (default its own), else 1."""
    if isinstance(method, UserSchedule):
        if options.microbatches not in (None, method.microbatches):
            raise SimUsageError(f"schedule {method.name!r} lists {method.microbatches} microbatches per step, "
                                f"not {options.microbatches}")
        return method.microbatches
    if not method.pipelined:
        return 1
    return options.microbatches or method.default_microbatches(ranks)


def host_ns_per_batch(profile: CostProfile, options: SimOptions) -> int:
    """With ``options.host_time``, the profile's measured host time per batch (else 0)."""
    if not options.host_time:
        return 0
    if "host_ns_per_step" not in profile.totals:
        raise SimUsageError("host_time needs the profile's totals.host_ns_per_step, which only an in-run CPU profile "
                            "(sglab profile --mode inrun, profile_training) measures; this profile has "
                            f"{', '.join(profile.totals) or 'no totals'}")
    return profile.totals["host_ns_per_step"]


def build_graph(profile: CostProfile, hardware: Hardware, method: Method | UserSchedule, options: SimOptions,
                placement: list[int] | None = None) -> TaskGraph:
    """The task graph of ``method`` on ``hardware`` (stages placed by the hardware, or on ``placement``)."""
    placement = stage_placement(method, hardware, profile.num_stages) if placement is None else placement
    options = replace(options, microbatches=microbatches_for(method, options, len(set(placement))))
    costs = CostModel(options.synth_cost_ratio, options.override_synth, host_ns_per_batch(profile, options))
    base = method.method if isinstance(method, UserSchedule) else method
    policy = "static" if base.policy == "static" else "priority"
    graph = TaskGraph(profile, hardware, placement, costs, method.name, policy)
    if isinstance(method, UserSchedule):
        build_pipeline(graph, base, user_orders(method, placement), options)
    elif method.pipelined:
        build_pipeline(graph, method, method_orders(method, placement, options.microbatches), options)
    else:
        build_steps(graph, method, options)
    return graph


def _options(options: SimOptions | None, overrides: dict[str, Any]) -> SimOptions:
    known = {f.name for f in fields(SimOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SimUsageError(f"unknown SimOptions field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return replace(options or SimOptions(), **overrides)


def _run(profile: CostProfile, hw: Hardware, method: Method | UserSchedule, options: SimOptions,
         placement: list[int] | None = None) -> SimResult:
    placement = stage_placement(method, hw, profile.num_stages) if placement is None else placement
    options = replace(options, microbatches=microbatches_for(method, options, len(set(placement))))
    graph = build_graph(profile, hw, method, options, placement)
    engine = Engine(graph, graph.durations(options.seed)).run()
    base = method.method if isinstance(method, UserSchedule) else method
    described = {"name": method.name, "description": method.description, "update_prob": base.update_prob,
                 "unlock_prob": base.unlock_prob}
    return summarise(graph, engine, hw, options, described)


def simulate(profile: CostProfile, hardware: Hardware | str | Path | dict, method: MethodLike,
             options: SimOptions | None = None, *, baseline: bool = True, **overrides: Any) -> SimResult:
    """Simulate ``options.steps`` training steps of ``method`` on ``hardware``.

    ``hardware`` may be a :class:`Hardware`, a preset name, a spec file or a spec mapping;
    keyword ``overrides`` replace fields of ``options`` (``steps=100``). With ``baseline``, the
    same samples are also simulated with sequential backprop (:func:`simulate_baseline`),
    giving ``speedup`` and ``steady_speedup``.
    """
    options = _options(options, overrides)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    result = _run(profile, hw, resolve_method(method, options), options)
    if baseline:
        summary = result.summary
        same_samples = replace(options, steps=summary["steps"] * summary["microbatches"], microbatches=None,
                               update_prob=None, unlock_prob=None)
        base = simulate_baseline(profile, hw, same_samples)
        add_speedup(summary, base.summary)
    return result


def simulate_baseline(profile: CostProfile, hardware: Hardware | str | Path | dict,
                      options: SimOptions | None = None, **overrides: Any) -> SimResult:
    """Sequential backprop: ``bprop`` with every stage on the device of stage 0 (the speedup baseline).

    Its summary's ``baseline`` names it; it has no speedup of its own.
    """
    options = _options(options, overrides)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    first = hw.placement_for(profile.num_stages)[0]
    result = _run(profile, hw, get_method(BASELINE, "sim"), options, [first] * profile.num_stages)
    result.summary["baseline"] = f"{BASELINE} on {hw.devices[first].name} (every stage on one device)"
    return result
