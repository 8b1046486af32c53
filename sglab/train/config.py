"""The configuration of a training run: one dataclass, saved with every checkpoint and result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sglab.errors import SglabError
from sglab.methods import METHODS


class ConfigError(SglabError, ValueError):
    """A configuration value that cannot work; the message names the field."""


@dataclass
class TrainConfig:
    """Everything that determines a feed-forward training run.

    Defaults follow the paper where it is cheap to (Adam, batch 256, 256-unit FCN layers,
    synthesizers with zero-initialised output layers) and are small elsewhere so a run on a
    laptop CPU finishes in minutes. The paper trained 500k steps at lr 3e-5 (÷10 at 300k, 400k).
    """

    dataset: str = "embedded"
    data_dir: str | None = None
    download: bool = False
    limit_train: int | None = None
    limit_test: int | None = None

    model: str = "fcn"
    layers: int = 3
    width: int = 256
    channels: int = 128

    method: str = "dni"
    update_prob: float | None = None  # None: the method's own (0.2 for "stochastic")
    synthesizer: str = "auto"  # auto: mlp for vectors, conv for feature maps
    synth_hidden_layers: int = 1
    synth_width: int = 1024
    synth_loss_weight: float = 1.0
    input_model_hidden_layers: int = 1

    batch_size: int = 256
    steps: int = 1000
    lr: float = 3e-4
    synth_lr: float | None = None  # None: same as lr
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    eval_every: int = 200
    log_every: int = 10
    eval_batch_size: int = 1000
    train_eval_examples: int = 1000
    divergence_loss: float = 1e4  # a loss above this stops the run as diverged

    seed: int = 0
    device: str = "auto"

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` naming the first field that cannot work; returns self."""
        checks = [
            (self.model in ("fcn", "cnn"), "model", "must be 'fcn' or 'cnn'"),
            (self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}"),
            (self.layers >= 1, "layers", "must be >= 1"),
            (self.width >= 1 and self.channels >= 1, "width/channels", "must be >= 1"),
            (self.synthesizer in ("auto", "linear", "mlp", "conv"), "synthesizer", "must be auto, linear, mlp or conv"),
            (self.synth_hidden_layers >= 0, "synth_hidden_layers", "must be >= 0"),
            (self.batch_size >= 2, "batch_size", "must be >= 2 (batch norm needs 2 examples)"),
            (self.steps >= 0, "steps", "must be >= 0"),
            (self.lr > 0 and (self.synth_lr is None or self.synth_lr > 0), "lr", "must be > 0"),
            (self.eval_every >= 1 and self.log_every >= 1, "eval_every/log_every", "must be >= 1"),
            (self.update_prob is None or 0 < self.update_prob <= 1, "update_prob", "must be in (0, 1]"),
            (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"), "device", "must be auto, cpu or cuda"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise ConfigError(f"config field {name!r} {message} (got {getattr(self, name.split('/')[0])!r})")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from a dict (e.g. a saved config.json), rejecting unknown fields by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**data).validate()
