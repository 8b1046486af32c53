"""sglab: study forward, update and backward locking with Decoupled Neural Interfaces.

The public API::

    from sglab import train, simulate, profile, load_dataset, METHODS
    from sglab import ClassifyConfig, CopyConfig, CharLMConfig, TwoRNNConfig, SimOptions, CostProfile

``train(config, out_dir)`` runs any task's config into a run directory; ``profile(config)``
micro-benchmarks a feed-forward config's per-stage op costs into a CostProfile;
``simulate(profile, hardware, method)`` runs it on (hypothetical) hardware; ``METHODS`` is the
one method registry. Names are imported on first use, so ``import sglab`` stays light.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sglab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: Public name -> (module, attribute).
_PUBLIC = {
    "train": ("sglab.training.loop", "train"),
    "ClassifyConfig": ("sglab.training.config", "ClassifyConfig"),
    "CopyConfig": ("sglab.training.config", "CopyConfig"),
    "CharLMConfig": ("sglab.training.config", "CharLMConfig"),
    "TwoRNNConfig": ("sglab.training.config", "TwoRNNConfig"),
    "profile": ("sglab.profiling.microbench", "profile_model"),
    "simulate": ("sglab.sim.api", "simulate"),
    "SimOptions": ("sglab.sim", "SimOptions"),
    "load_hardware": ("sglab.sim", "load_hardware"),
    "load_dataset": ("sglab.data", "load_dataset"),
    "CostProfile": ("sglab.costprofile", "CostProfile"),
    "METHODS": ("sglab.methods", "METHODS"),
    "Method": ("sglab.methods", "Method"),
    "get_method": ("sglab.methods", "get_method"),
    "Action": ("sglab.ops", "Action"),
    "Observer": ("sglab.exec.observe", "Observer"),
    "summarize_trace": ("sglab.trace", "summarize_trace"),
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    """Import a public name on first use."""
    if name in _PUBLIC:
        module, attribute = _PUBLIC[name]
        value = getattr(import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sglab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
