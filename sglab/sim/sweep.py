"""Grids of simulations (methods × hardware × stages × bandwidth × synthesizer cost ...) on an Executor.

Each grid point is a plain dict (profile and hardware as spec mappings), so any
``concurrent.futures.Executor`` can run :func:`run_point`: a process pool by default, or a
``dask.distributed`` cluster's executor when a scheduler address is given. A point that cannot
be simulated becomes a row with its ``error`` rather than stopping the sweep. Figures of a
sweep are drawn by :func:`analysis.sim_figures.sweep_figures`.
"""

from __future__ import annotations

import itertools
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sglab.costprofile import CostProfile
from sglab.errors import SglabError
from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.methods import method_names
from sglab.partition import regroup
from sglab.sim.api import simulate
from sglab.sim.errors import SimError, SimUsageError
from sglab.sim.options import SimOptions
from sglab.sim.pipeline import devices_for
from sglab.sim.spec import hardware_from_dict, hardware_to_dict, load_hardware

#: Swept dimensions: grid field → (summary column, figure x label, log x axis).
DIMENSIONS = {
    "stages": ("stages_requested", "stages K (one per device)", False),
    "bandwidths": ("bandwidth_GB_per_s", "link bandwidth (GB/s per direction)", True),
    "synth_cost_ratios": ("synth_cost_ratio", "synthesizer cost (S / F)", False),
    "microbatches": ("microbatches_requested", "microbatches per step", False),
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
    steps: int = 20
    seed: int = 0
    reference_flops: float | None = None
    resize: bool = True  # give K stages K devices (homogeneous machines)
    override_synth: bool = True  # synth_cost_ratios replace measured S/T (False: fill only missing ones)
    extra: dict[str, Any] = field(default_factory=dict)

    def points(self, profile: CostProfile) -> list[dict[str, Any]]:
        """Every combination as a self-contained dict for :func:`run_point`."""
        specs = {h: hardware_to_dict(load_hardware(h, self.reference_flops)) for h in self.hardware}
        data = profile.to_dict()
        combos = itertools.product(self.methods, self.hardware, self.stages, self.bandwidths,
                                   self.synth_cost_ratios, self.microbatches)
        return [{"profile": data, "hardware_name": h, "hardware": specs[h], "method": m, "stages": k,
                 "bandwidth_GB_per_s": bw, "synth_cost_ratio": r, "microbatches": mb, "steps": self.steps,
                 "seed": self.seed, "resize": self.resize,
                 "override_synth": self.override_synth, **self.extra}
                for m, h, k, bw, r, mb in combos]


def run_point(point: dict[str, Any]) -> dict[str, Any]:
    """Simulate one grid point; returns its summary row (with ``error`` set if it failed)."""
    row = {"hardware_spec": point["hardware_name"], "stages_requested": point["stages"],
           "bandwidth_GB_per_s": point["bandwidth_GB_per_s"],
           "synth_cost_ratio": point["synth_cost_ratio"], "microbatches_requested": point["microbatches"],
           "method": point["method"], "error": ""}
    try:
        profile = CostProfile.from_dict(point["profile"])
        if point["stages"] is not None:
            profile = regroup(profile, point["stages"])
        hw = hardware_from_dict(point["hardware"])
        wanted = devices_for(point["method"], profile.num_stages)
        if point["resize"] and hw.num_devices != wanted and hw.topology != "custom":
            hw = hw.resized(wanted)
        if point["bandwidth_GB_per_s"] is not None:
            hw = hw.with_link(bandwidth_bytes_per_s=int(point["bandwidth_GB_per_s"] * 1e9))
        ratio = point["synth_cost_ratio"]
        options = SimOptions(steps=point["steps"], seed=point["seed"], microbatches=point["microbatches"],
                             synth_cost_ratio=ratio, override_synth=ratio is not None and point["override_synth"])
        row.update(simulate(profile, hw, point["method"], options).summary)
    except SglabError as err:  # a profile, hardware or method that cannot work at this point
        row["error"] = str(err)
    return row


def run_sweep(profile: CostProfile, grid: SweepGrid, executor: Executor | None = None, workers: int | None = None,
              scheduler_address: str | None = None, progress: bool = True,
              connect_timeout_s: float = 10.0) -> pd.DataFrame:
    """Run every point of ``grid`` and return one row per point, in grid order.

    ``executor`` is used as given; otherwise a ``dask.distributed`` client's executor when
    ``scheduler_address`` is set (a scheduler that does not answer within ``connect_timeout_s``
    is a :class:`SimError`), else a process pool of ``workers`` processes.
    """
    from tqdm.auto import tqdm

    if workers is not None and workers < 1:
        raise SimUsageError(f"workers must be >= 1, got {workers}")
    points = grid.points(profile)
    owned, client = None, None
    if executor is None:
        if scheduler_address:
            client = _dask_client(scheduler_address, connect_timeout_s)
            executor = owned = client.get_executor()
        else:
            executor = owned = ProcessPoolExecutor(max_workers=workers)
    try:
        futures = {executor.submit(run_point, point): i for i, point in enumerate(points)}
        rows: list[dict | None] = [None] * len(points)
        for future in tqdm(as_completed(futures), total=len(futures), desc="simulating", disable=not progress):
            rows[futures[future]] = future.result()
    finally:
        if owned is not None:
            owned.shutdown()
        if client is not None:
            client.close()
    return pd.DataFrame(rows)


def _dask_client(address: str, timeout_s: float):
    """A ``dask.distributed`` client of the scheduler at ``address``, or one clear error."""
    try:
        from distributed import Client
    except ImportError:
        raise SimError("a scheduler address needs dask.distributed (pip install distributed)") from None
    try:
        return Client(address, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError) as err:  # refused, unreachable, timed out, malformed address
        raise SimError(f"cannot reach the dask scheduler at {address} within {timeout_s:g} s "
                       f"({type(err).__name__}: {err}); is it running and reachable from here?") from None


def write_sweep(table: pd.DataFrame, grid: SweepGrid, out_dir: str | Path) -> list[Path]:
    """Write ``sweep.csv`` and ``sweep.json`` (grid and provenance); returns the paths."""
    out = Path(out_dir)
    meta = {"grid": dict(grid.__dict__), "provenance": provenance()}
    return [atomic_write_text(out / "sweep.csv", table.to_csv(index=False)),
            atomic_write_json(out / "sweep.json", meta)]
