"""Per-stage, per-op cost profiles: measured (micro-benchmark or inside training) or imported.

    from sglab.profile import profile_model, CostProfile
    profile = profile_model(TrainConfig(method="dni"), dataset=load_dataset("embedded"))
    profile.save("fcn3-dni.json"); CostProfile.load("fcn3-dni.json")

See ``docs/profiler.md`` for the JSON schema and the two ways of measuring. The schema is
imported eagerly; everything that needs torch is imported on first use, so reading a profile
(as the simulator does) stays light.
"""

from importlib import import_module

from sglab.profile.schema import SCHEMA_VERSION, CostProfile, Measurement, ProfileError, StageCost

#: Public name -> submodule that defines it (imported lazily by ``__getattr__``).
_LAZY = {
    "OpRecord": "timer",
    "OpTimer": "timer",
    "Stopwatch": "timer",
    "chrome_trace_events": "chrome_trace",
    "write_chrome_trace": "chrome_trace",
    "import_graph_txt": "graphtxt",
    "parse_graph_txt": "graphtxt",
    "profile_from_timer": "inrun",
    "profile_training": "inrun",
    "demo_profile": "microbench",
    "profile_model": "microbench",
}

__all__ = ["SCHEMA_VERSION", "CostProfile", "Measurement", "ProfileError", "StageCost", *_LAZY]


def __getattr__(name: str):
    """Import a public name's submodule on first use."""
    if name in _LAZY:
        return getattr(import_module(f"sglab.profile.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'sglab.profile' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
