"""Measuring per-stage, per-op costs: micro-benchmarks, timing inside real training, graph.txt import.

    from sglab.profiling import profile_model
    profile = profile_model(ClassifyConfig(method="dni"), dataset=load_dataset("embedded"))
    profile.save("fcn3-dni.json")            # a sglab.costprofile.CostProfile

See ``docs/profiler.md`` for the JSON schema (:mod:`sglab.costprofile`) and the two ways of
measuring. Submodules are imported on first use, so ``import sglab.profiling`` stays light.
"""

from importlib import import_module

#: Public name -> submodule that defines it (imported lazily by ``__getattr__``).
_LAZY = {
    "OpTimer": "timer",
    "Stopwatch": "timer",
    "import_graph_txt": "graphtxt",
    "parse_graph_txt": "graphtxt",
    "profile_from_timer": "inrun",
    "profile_training": "inrun",
    "demo_profile": "microbench",
    "profile_model": "microbench",
    "profile_recurrent": "recurrent",
    "profile_two_rnn": "recurrent",
    "profile_rnn_chain": "rnn_chain",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    """Import a public name's submodule on first use."""
    if name in _LAZY:
        return getattr(import_module(f"sglab.profiling.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'sglab.profiling' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
