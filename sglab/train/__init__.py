"""Training: a method over a chain of stages, executed op by op, written to a run directory."""

from sglab.train.build import build_runner
from sglab.train.config import ConfigError, TrainConfig
from sglab.train.loop import TrainingDiverged, TrainResult, evaluate, train
from sglab.train.step import NullRecorder, StepResult, StepRunner

__all__ = [
    "ConfigError",
    "NullRecorder",
    "StepResult",
    "StepRunner",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "build_runner",
    "evaluate",
    "train",
]
