"""The configuration of a training run: one dataclass per task, saved with every checkpoint and result.

Every task's config is a :class:`RunConfig` (method, steps, learning rate, logging, seed ...)
plus the task's own fields. Each checks its fields when it is made (types and ranges, naming
the field) and which methods its runner can run (:mod:`sglab.methods`). The classes live in
:mod:`~sglab.training.run_config`, :mod:`~sglab.training.classify_config` and
:mod:`~sglab.training.recurrent_config`; this module names them by ``--task`` and re-exports them.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sglab.config import ConfigError, from_dict
from sglab.training.classify_config import COMPILE_MODES, ClassifyConfig
from sglab.training.recurrent_config import CharLMConfig, CopyConfig, RecurrentConfig, RNNChainConfig, TwoRNNConfig
from sglab.training.run_config import DEVICES, RunConfig

__all__ = ["COMPILE_MODES", "DEVICES", "TASKS", "CharLMConfig", "ClassifyConfig", "CopyConfig", "RNNChainConfig",
           "RecurrentConfig", "RunConfig", "TwoRNNConfig", "config_class", "config_fields", "make_config"]


#: ``--task`` name → its config class and the fields the name sets.
TASKS: dict[str, tuple[type[RunConfig], dict[str, Any]]] = {
    "classify": (ClassifyConfig, {}),
    "copy": (CopyConfig, {"repeat": False}),
    "repeat-copy": (CopyConfig, {"repeat": True}),
    "charlm": (CharLMConfig, {}),
    "two-rnn": (TwoRNNConfig, {}),
    "rnn-chain": (RNNChainConfig, {}),
}


def config_class(task: str) -> type[RunConfig]:
    """The config class of ``task``; :class:`ConfigError` lists the tasks."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[task][0]


def make_config(task: str, values: dict[str, Any]) -> RunConfig:
    """The config of ``task`` from field values (``--config`` file and flags), unknown fields named."""
    cls, fixed = TASKS[task] if task in TASKS else (config_class(task), {})
    return from_dict(cls, {**values, **fixed}, where=f"{task} config")


def config_fields(cls: type[RunConfig]) -> list[str]:
    """The field names of a config class, in order."""
    return [f.name for f in fields(cls)]
