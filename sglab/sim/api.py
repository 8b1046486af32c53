"""``simulate``: profile + hardware + method → :class:`SimResult`, with speedup over the baseline.

A method is a registry name (:func:`sglab.methods.get_method` for the ``sim`` runner), a
:class:`~sglab.methods.Method`, or a hand-written pipeline (:func:`pipeline_schedule`). Its task
graph comes from one of two builders: :func:`~sglab.sim.steps.build_steps` for methods whose
step is one minibatch, :func:`~sglab.sim.pipeline.build_pipeline` for pipeline schedules. A
device runs a static order where the method's stages wait for each other
(``method.policy == "static"``) and otherwise the oldest ready op (a ready queue).

The baseline of every speedup is sequential backprop: ``bprop`` with every stage on the device
of stage 0, run on the same samples one batch per step (every replica's, with data parallelism:
``SimOptions.replicas``, :mod:`sglab.sim.data_parallel`).
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from sglab.costprofile import CostProfile
from sglab.methods import Method, get_method, method_names
from sglab.sim.clocks import build_clocked_steps, is_clocked
from sglab.sim.costs import CostModel
from sglab.sim.data_parallel import add_replicas, replica_placements, replicated_profile
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
                placement: list[int] | None = None, *, replica_devices: list[list[int]] | None = None) -> TaskGraph:
    """The task graph of ``method`` on ``hardware`` (stages placed by the hardware, or on ``placement``).

    With ``options.replicas`` > 1, one copy per replica with their gradient all-reduces
    (:mod:`sglab.sim.data_parallel`); each replica's placement comes from
    :func:`~sglab.sim.data_parallel.replica_placements` (on ``replica_devices[r]`` if given),
    so ``placement`` must be None.
    """
    if options.replicas > 1:
        return _replicated_graph(profile, hardware, method, options, placement, replica_devices)
    placement = stage_placement(method, hardware, profile.num_stages) if placement is None else placement
    options = replace(options, microbatches=microbatches_for(method, options, len(set(placement))))
    graph = _new_graph(profile, hardware, placement, method, options)
    add_ops(graph, method, options)
    return graph


def _new_graph(profile: CostProfile, hardware: Hardware, placement: list[int], method: Method | UserSchedule,
               options: SimOptions) -> TaskGraph:
    costs = CostModel(options.synth_cost_ratio, options.override_synth, host_ns_per_batch(profile, options))
    base = method.method if isinstance(method, UserSchedule) else method
    # stages on their own clocks are built chunk by chunk, with no static device order
    policy = "static" if base.policy == "static" and not is_clocked(profile) else "priority"
    return TaskGraph(profile, hardware, placement, costs, method.name, policy)


def add_ops(graph, method: Method | UserSchedule, options: SimOptions) -> None:
    """Add ``options.steps`` steps of ``method`` to ``graph``, its stages on ``graph.placement``."""
    if isinstance(method, UserSchedule):
        build_pipeline(graph, method.method, user_orders(method, graph.placement), options)
    elif is_clocked(graph.profile):
        build_clocked_steps(graph, method, options)
    elif method.pipelined:
        build_pipeline(graph, method, method_orders(method, graph.placement, options.microbatches), options)
    else:
        build_steps(graph, method, options)


def _replicated_graph(profile: CostProfile, hardware: Hardware, method: Method | UserSchedule, options: SimOptions,
                      placement: list[int] | None, groups: list[list[int]] | None) -> TaskGraph:
    if placement is not None:
        raise SimUsageError(f"a placement applies to one replica; with replicas={options.replicas} each replica's "
                            "comes from sglab.sim.data_parallel.replica_placements")
    placements = replica_placements(method, hardware, profile.num_stages, options.replicas, groups)
    options = replace(options, microbatches=microbatches_for(method, options, len(set(placements[0]))))
    flat = [device for p in placements for device in p]
    graph = _new_graph(replicated_profile(profile, options.replicas), hardware, flat, method, options)
    add_replicas(graph, profile, placements, options, lambda mirror: add_ops(mirror, method, options))
    return graph


def _options(options: SimOptions | None, overrides: dict[str, Any]) -> SimOptions:
    known = {f.name for f in fields(SimOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SimUsageError(f"unknown SimOptions field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return replace(options or SimOptions(), **overrides)


def _run(profile: CostProfile, hw: Hardware, method: Method | UserSchedule, options: SimOptions,
         placement: list[int] | None = None, replica_devices: list[list[int]] | None = None) -> SimResult:
    if options.replicas > 1:
        ranks = len(set(replica_placements(method, hw, profile.num_stages, options.replicas, replica_devices)[0]))
    else:
        placement = stage_placement(method, hw, profile.num_stages) if placement is None else placement
        ranks = len(set(placement))
    options = replace(options, microbatches=microbatches_for(method, options, ranks))
    graph = build_graph(profile, hw, method, options, placement, replica_devices=replica_devices)
    engine = Engine(graph, graph.durations(options.seed)).run()
    base = method.method if isinstance(method, UserSchedule) else method
    described = {"name": method.name, "description": method.description, "update_prob": base.update_prob,
                 "unlock_prob": base.unlock_prob}
    result = summarise(graph, engine, hw, options, described)
    _per_replica(result, profile.num_stages, options.replicas)
    return result


def _per_replica(result: SimResult, num_stages: int, replicas: int) -> None:
    """Say ``replicas`` in the summary, count every replica's samples, and give the trace the model's stages.

    The task graph numbers replica ``r``'s stage ``s`` as ``r·K + s``; the stage table keeps a
    row per replica and stage, with a ``replica`` column.
    """
    summary = result.summary
    items = list(summary.items())
    at = [key for key, _ in items].index("num_devices") + 1
    result.summary = summary = dict(items[:at] + [("replicas", replicas)] + items[at:])
    if replicas == 1:
        return
    summary["num_stages"] = num_stages
    summary["samples"] *= replicas
    makespan = summary["makespan_ns"]
    summary["throughput_samples_per_s"] = summary["samples"] * 1e9 / makespan if makespan else None
    result.trace["stage"] = result.trace["stage"] % num_stages
    stages = result.stages
    stages.insert(0, "replica", stages["stage"] // num_stages)
    stages["stage"] = stages["stage"] % num_stages
    devices = result.devices
    devices["stages"] = [" ".join(str(int(s) % num_stages) for s in listed.split()) for listed in devices["stages"]]


def simulate(profile: CostProfile, hardware: Hardware | str | Path | dict, method: MethodLike,
             options: SimOptions | None = None, *, baseline: bool = True,
             replica_devices: list[list[int]] | None = None, **overrides: Any) -> SimResult:
    """Simulate ``options.steps`` training steps of ``method`` on ``hardware``.

    ``hardware`` may be a :class:`Hardware`, a preset name, a spec file or a spec mapping;
    keyword ``overrides`` replace fields of ``options`` (``steps=100``). With ``baseline``, the
    same samples are also simulated with sequential backprop (:func:`simulate_baseline`),
    giving ``speedup`` and ``steady_speedup``. With ``options.replicas`` > 1 the run is data
    parallel (:mod:`sglab.sim.data_parallel`): replica ``r`` on the devices ``replica_devices[r]``
    (default: the ``r``-th block of ``D // replicas``), and the baseline runs every replica's samples.
    """
    options = _options(options, overrides)
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    if replica_devices is not None and options.replicas == 1:
        raise SimUsageError("replica_devices needs SimOptions field 'replicas' > 1")
    result = _run(profile, hw, resolve_method(method, options), options, replica_devices=replica_devices)
    if baseline:
        summary, replicas = result.summary, options.replicas
        batches = summary["microbatches"] * replicas  # per step, over every replica
        same_samples = replace(options, steps=summary["steps"] * batches, microbatches=None, update_prob=None,
                               unlock_prob=None, replicas=1)
        base = simulate_baseline(profile, hw, same_samples)
        scaled = {**summary, "microbatches": batches}  # add_speedup scales the baseline's step by it
        add_speedup(scaled, base.summary)
        summary.update({key: value for key, value in scaled.items() if key != "microbatches"})
    return result


def simulate_baseline(profile: CostProfile, hardware: Hardware | str | Path | dict,
                      options: SimOptions | None = None, **overrides: Any) -> SimResult:
    """Sequential backprop: ``bprop`` with every stage on the device of stage 0 (the speedup baseline).

    Its summary's ``baseline`` names it; it has no speedup of its own.
    """
    options = _options(options, overrides)
    if options.replicas != 1:
        raise SimUsageError(f"the baseline is sequential backprop on one device; SimOptions field 'replicas' must be 1 "
                            f"here, got {options.replicas}")
    hw = hardware if isinstance(hardware, Hardware) else load_hardware(hardware)
    first = hw.placement_for(profile.num_stages)[0]
    result = _run(profile, hw, get_method(BASELINE, "sim"), options, [first] * profile.num_stages)
    result.summary["baseline"] = f"{BASELINE} on {hw.devices[first].name} (every stage on one device)"
    return result
