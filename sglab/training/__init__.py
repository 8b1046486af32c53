"""Training: the one loop for every task, with run directories, checkpoints and resume.

    from sglab.training import ClassifyConfig, train
    result = train(ClassifyConfig(method="dni", layers=4, steps=1000), "runs/dni4")
"""

from sglab.config import ConfigError
from sglab.training.config import (
                                   TASKS,
                                   CharLMConfig,
                                   ClassifyConfig,
                                   CopyConfig,
                                   RecurrentConfig,
                                   RNNChainConfig,
                                   RunConfig,
                                   TwoRNNConfig,
                                   make_config,
)
from sglab.training.loop import TrainingDiverged, TrainResult, make_session, train
from sglab.training.run_dir import RunDir

__all__ = ["TASKS", "CharLMConfig", "ClassifyConfig", "ConfigError", "CopyConfig", "RecurrentConfig", "RNNChainConfig",
           "RunConfig", "RunDir", "TrainResult", "TrainingDiverged", "TwoRNNConfig", "make_config", "make_session", "train"]
