"""The SimPy simulator: how long training takes with each method on real or hypothetical hardware.

Public API::

    from sglab.sim import simulate, load_hardware, PRESETS, SIM_METHODS
    result = simulate(profile, "cluster-10gbe", "dni", steps=50)
    result.summary["speedup"]; result.trace; result.save("out/")

See docs/simulator.md for the model (what costs what, which dependencies each method has).
"""

from sglab.sim.api import build_graph, simulate
from sglab.sim.costs import CostModel, regroup
from sglab.sim.demo import demo_simulation
from sglab.sim.errors import HardwareError, SimError
from sglab.sim.hardware import Device, Hardware, Link, LinkSpec, Slowdown
from sglab.sim.presets import PRESETS
from sglab.sim.results import SimResult
from sglab.sim.schedules import SIM_METHODS, SimMethod, SimOptions, get_sim_method, pipeline_schedule
from sglab.sim.spec import hardware_from_dict, hardware_to_dict, load_hardware
from sglab.sim.trace import chrome_trace

__all__ = [
    "CostModel", "Device", "Hardware", "HardwareError", "Link", "LinkSpec", "PRESETS", "SIM_METHODS",
    "SimError", "SimMethod", "SimOptions", "SimResult", "Slowdown", "build_graph", "chrome_trace",
    "demo_simulation", "get_sim_method", "hardware_from_dict", "hardware_to_dict", "load_hardware",
    "pipeline_schedule", "regroup", "simulate",
]
