"""What every training run's config has: :class:`RunConfig` (method, steps, learning rates, logging, seed).

Each task's config (:mod:`sglab.training.classify_config`, :mod:`sglab.training.recurrent_config`)
adds its own fields; :mod:`sglab.training.config` names them by task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from sglab.config import ConfigError, check_fields, spec
from sglab.methods import Method, MethodError, get_method

DEVICES = "auto, cpu, cuda or cuda:N"


@dataclass
class RunConfig:
    """What every training run has.

    Attributes:
        method: a method of :mod:`sglab.methods` this task's runner can run.
        steps: training steps (minibatches); a resumed run may raise it to continue.
        batch_size, lr, synth_lr: minibatch and Adam learning rates (``synth_lr`` None: ``lr``).
        lr_milestones, lr_gamma: every learning rate is multiplied by ``lr_gamma`` after each
            milestone step (the paper's ÷10 drops).
        eval_every: steps between evaluations and checkpoints (and one at the end).
        log_every: steps between training-metric rows.
        divergence_loss: a training loss above this (or not finite) stops the run as diverged; so
            does a synthesizer's regression loss above it.
        probe_every: every this many steps, compare each interface's synthetic gradient with the
            true one (fidelity probes); None: never. Probes change nothing the run computes.
        seed, device: the usual; ``device`` is auto, cpu, cuda or cuda:N.
    """

    task: ClassVar[str] = ""
    runner: ClassVar[str] = ""
    #: Fields that may change when a run is resumed (they do not change what training computes).
    RESUMABLE: ClassVar[tuple[str, ...]] = ("steps", "eval_every", "log_every", "probe_every")

    method: str = "dni"
    steps: int = spec(1000, ge=1)
    batch_size: int = spec(256, ge=1)
    lr: float = spec(3e-4, gt=0)
    synth_lr: float | None = spec(None, gt=0)
    lr_milestones: list[int] = spec(factory=list, ge=1)
    lr_gamma: float = spec(0.1, gt=0)
    eval_every: int = spec(200, ge=1)
    log_every: int = spec(10, ge=1)
    divergence_loss: float = spec(1e4, gt=0)
    probe_every: int | None = spec(None, ge=1)
    seed: int = spec(0, ge=0)
    device: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "RunConfig":
        """Raise :class:`ConfigError` naming the first field that cannot work; returns self."""
        check_fields(self)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"config field 'device' must be {DEVICES}, got {self.device!r}")
        try:
            self.method = self.resolved_method().name  # an alias is stored as the method it names
        except MethodError as err:
            raise ConfigError(f"config field 'method': {err}") from None
        return self

    def resolved_method(self) -> Method:
        """The registry's method, checked against this task's runner."""
        return get_method(self.method, self.runner)

    @property
    def task_name(self) -> str:
        """The ``--task`` this config is for."""
        return self.task

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)
