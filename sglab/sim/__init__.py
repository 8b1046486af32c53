"""The SimPy simulator: how long training takes with each method on real or hypothetical hardware.

Public API::

    from sglab.sim import simulate, load_hardware, PRESETS
    result = simulate(profile, "cluster-10gbe", "dni", steps=50)
    result.summary["speedup"]; result.trace; result.save("out/")

Methods come from the one registry, :mod:`sglab.methods` (``method_names("sim")``); see
docs/simulator.md for the model (what costs what, which dependencies each method has).
"""

from sglab.sim.api import BASELINE, build_graph, simulate, simulate_baseline
from sglab.sim.costs import CostModel
from sglab.sim.errors import HardwareError, SimError, SimUsageError
from sglab.sim.hardware import Device, Hardware, Link, LinkSpec, Slowdown
from sglab.sim.options import SimOptions
from sglab.sim.pipeline import UserSchedule, pipeline_schedule
from sglab.sim.presets import PRESETS
from sglab.sim.results import SimResult
from sglab.sim.spec import hardware_from_dict, hardware_to_dict, load_hardware

__all__ = [
    "BASELINE", "CostModel", "Device", "Hardware", "HardwareError", "Link", "LinkSpec", "PRESETS", "SimError",
    "SimOptions", "SimResult", "SimUsageError", "Slowdown", "UserSchedule", "build_graph", "hardware_from_dict",
    "hardware_to_dict", "load_hardware", "pipeline_schedule", "simulate", "simulate_baseline",
]
