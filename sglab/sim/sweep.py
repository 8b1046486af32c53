"""Grids of simulations (methods × hardware × stages × bandwidth × synthesizer cost ...) on an Executor.

Each grid point is a plain dict (profile and hardware as spec mappings), so any
``concurrent.futures.Executor`` can run :func:`run_point`: a process pool by default, or a
``dask.distributed`` cluster's executor when a scheduler address is given. A point that cannot
be simulated becomes a row with its ``error`` rather than stopping the sweep. Figures of a
sweep are drawn by :func:`analysis.sim_figures.sweep_figures`.

:func:`frontier_grids` turns a grid into the few grids that compare every locked schedule with
every unlocked method (``sglab sweep --frontier``; :mod:`analysis.frontier` reads the rows).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from sglab.costprofile import CostProfile
from sglab.errors import SglabError
from sglab.executors import open_executor
from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.methods import get_method, method_names
from sglab.partition import regroup
from sglab.sim.api import simulate
from sglab.sim.options import SimOptions
from sglab.sim.pipeline import devices_for
from sglab.sim.spec import hardware_from_dict, hardware_to_dict, load_hardware

#: Swept dimensions: grid field → (summary column, figure x label, log x axis).
DIMENSIONS = {
    "stages": ("stages_requested", "stages K (one per device)", False),
    "bandwidths": ("bandwidth_GB_per_s", "link bandwidth (GB/s per direction)", True),
    "synth_cost_ratios": ("synth_cost_ratio", "synthesizer cost (S / F)", False),
    "microbatches": ("microbatches_requested", "microbatches per step", False),
    "replicas": ("replicas_requested", "data-parallel replicas", False),
}


@dataclass(frozen=True)
class SweepGrid:
    """The values to combine; ``None`` in a list means "as given" (profile's K, spec's bandwidth...)."""

    methods: tuple[str, ...] = tuple(method_names("sim"))
    hardware: tuple[str, ...] = ("cluster-10gbe",)
    stages: tuple[int | None, ...] = (None,)
    bandwidths: tuple[float | None, ...] = (None,)  # GB/s per direction
    synth_cost_ratios: tuple[float | None, ...] = (None,)
    microbatches: tuple[int | None, ...] = (None,)
    replicas: tuple[int, ...] = (1,)  # data-parallel copies, each on its own devices
    steps: int = 20
    seed: int = 0
    reference_flops: float | None = None
    resize: bool = True  # give K stages K devices (times the replicas; homogeneous machines)
    override_synth: bool = True  # synth_cost_ratios replace measured S/T (False: fill only missing ones)
    extra: dict[str, Any] = field(default_factory=dict)

    def points(self, profile: CostProfile) -> list[dict[str, Any]]:
        """Every combination as a self-contained dict for :func:`run_point`."""
        specs = {h: hardware_to_dict(load_hardware(h, self.reference_flops)) for h in self.hardware}
        data = profile.to_dict()
        combos = itertools.product(self.methods, self.hardware, self.stages, self.bandwidths,
                                   self.synth_cost_ratios, self.microbatches, self.replicas)
        return [{"profile": data, "hardware_name": h, "hardware": specs[h], "method": m, "stages": k,
                 "bandwidth_GB_per_s": bw, "synth_cost_ratio": r, "microbatches": mb, "replicas": n,
                 "steps": self.steps, "seed": self.seed, "resize": self.resize,
                 "override_synth": self.override_synth, **self.extra}
                for m, h, k, bw, r, mb, n in combos]


def locked_methods() -> list[str]:
    """The registry's locked baselines the simulator runs: every method whose true gradient crosses each
    interface of the current weights (bprop and every pipeline schedule).

    DDG also sends true gradients, but its forwards run on stale weights so that no stage waits
    for its own gradient: it is backward-unlocked, so it is no locked baseline.
    """
    return [m for m in method_names("sim") if get_method(m).gradient == "true" and not get_method(m).weight_delay]


def unlocked_methods() -> list[str]:
    """The registry's fully unlocked methods the simulator runs: synthetic gradients at every interface,
    every stage updating every step (``stochastic`` does less work, ``mixed`` waits half the time)."""
    return [m for m in method_names("sim")
            if get_method(m).synthetic_gradients and get_method(m).update_prob == 1 and get_method(m).unlock_prob == 1]


def frontier_grids(grid: SweepGrid) -> tuple[SweepGrid, ...]:
    """``grid`` as the few grids that compare its locked methods with its unlocked ones, without redundant points.

    A method that runs no synthesizer (bprop, the pipelines, DDG, No Bprop) runs once per point
    whatever ``synth_cost_ratios`` says, and a method that is no pipeline runs one batch per step,
    once whatever ``microbatches`` says. Sequential backprop on one device (``bprop`` at one stage)
    is added when the grid has bprop but not one stage: on slow links the best locked training may
    be not to split the model at all. Methods are named as the registry names them (no aliases).
    """
    methods = list(dict.fromkeys(get_method(m, "sim").name for m in grid.methods))
    grids = []
    for synth, piped in itertools.product((False, True), repeat=2):
        group = tuple(m for m in methods if _runs_synthesizers(m) == synth and get_method(m).pipelined == piped)
        if group:
            grids.append(replace(grid, methods=group, synth_cost_ratios=grid.synth_cost_ratios if synth else (None,),
                                 microbatches=grid.microbatches if piped else (None,),
                                 override_synth=grid.override_synth and synth))
    if "bprop" in methods and 1 not in grid.stages:
        grids.append(replace(grid, methods=("bprop",), stages=(1,), synth_cost_ratios=(None,), microbatches=(None,),
                             override_synth=False))
    return tuple(grids)


def _runs_synthesizers(method: str) -> bool:
    """Whether ``method`` runs S and T ops, whose cost ``synth_cost_ratio`` sets (DGL's local heads run as S, T)."""
    return get_method(method).gradient in ("synthetic", "local")


def run_point(point: dict[str, Any]) -> dict[str, Any]:
    """Simulate one grid point; returns its summary row (with ``error`` set if it failed)."""
    row = {"hardware_spec": point["hardware_name"], "stages_requested": point["stages"],
           "bandwidth_GB_per_s": point["bandwidth_GB_per_s"],
           "synth_cost_ratio": point["synth_cost_ratio"], "microbatches_requested": point["microbatches"],
           "replicas_requested": point.get("replicas") or 1, "method": point["method"], "error": ""}
    try:
        profile = CostProfile.from_dict(point["profile"])
        if point["stages"] is not None:
            profile = regroup(profile, point["stages"])
        hw = hardware_from_dict(point["hardware"])
        replicas = row["replicas_requested"]
        wanted = devices_for(point["method"], profile.num_stages) * replicas
        if point["resize"] and hw.num_devices != wanted and hw.topology != "custom":
            hw = hw.resized(wanted)
        if point["bandwidth_GB_per_s"] is not None:
            hw = hw.with_link(bandwidth_bytes_per_s=int(point["bandwidth_GB_per_s"] * 1e9))
        ratio = point["synth_cost_ratio"]
        options = SimOptions(steps=point["steps"], seed=point["seed"], microbatches=point["microbatches"],
                             replicas=replicas, synth_cost_ratio=ratio,
                             override_synth=ratio is not None and point["override_synth"])
        row.update(simulate(profile, hw, point["method"], options).summary)
    except SglabError as err:  # a profile, hardware or method that cannot work at this point
        row["error"] = str(err)
    return row


def run_sweep(profile: CostProfile, grid: SweepGrid | Sequence[SweepGrid], executor: Executor | None = None,
              workers: int | None = None, scheduler_address: str | None = None, progress: bool = True,
              connect_timeout_s: float = 10.0) -> pd.DataFrame:
    """Run every point of ``grid`` (or of several grids, one after another) and return one row per point,
    in grid order.

    ``executor`` is used as given; otherwise a ``dask.distributed`` client's executor when
    ``scheduler_address`` is set (a scheduler that does not answer within ``connect_timeout_s``
    is an :class:`~sglab.errors.SglabError`), else a process pool of ``workers`` processes
    (:func:`sglab.executors.open_executor`, which refuses ``workers < 1``).
    """
    from tqdm.auto import tqdm

    grids = (grid,) if isinstance(grid, SweepGrid) else tuple(grid)
    points = [point for g in grids for point in g.points(profile)]
    with contextlib.ExitStack() as stack:
        if executor is None:
            executor = stack.enter_context(open_executor(workers, scheduler_address, connect_timeout_s))
        futures = {executor.submit(run_point, point): i for i, point in enumerate(points)}
        rows: list[dict | None] = [None] * len(points)
        for future in tqdm(as_completed(futures), total=len(futures), desc="simulating", disable=not progress):
            rows[futures[future]] = future.result()
    return pd.DataFrame(rows)


def write_sweep(table: pd.DataFrame, grid: SweepGrid | Sequence[SweepGrid], out_dir: str | Path) -> list[Path]:
    """Write ``sweep.csv`` and ``sweep.json`` (grid, or list of grids, and provenance); returns the paths."""
    out = Path(out_dir)
    grids = dict(grid.__dict__) if isinstance(grid, SweepGrid) else [dict(g.__dict__) for g in grid]
    meta = {"grid": grids, "provenance": provenance()}
    return [atomic_write_text(out / "sweep.csv", table.to_csv(index=False)),
            atomic_write_json(out / "sweep.json", meta)]
