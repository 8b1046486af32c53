"""The config of a feed-forward chain (FCN or CNN) learning to classify images: :class:`ClassifyConfig`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from sglab.config import ConfigError, check_fields, spec
from sglab.methods import Method, MethodError, get_method
from sglab.training.run_config import RunConfig

#: ``ClassifyConfig.compile``: off, or a ``torch.compile`` mode.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass
class ClassifyConfig(RunConfig):
    """A feed-forward chain (FCN or CNN, one stage per layer) learning to classify images.

    Defaults follow the paper where it is cheap to (Adam, batch 256, 256-unit FCN layers,
    synthesizers with zero-initialised output layers) and are small elsewhere so a run on a
    laptop CPU finishes in minutes. The paper trained 500k steps at lr 3e-5 (÷10 at 300k, 400k).
    ``update_prob`` overrides the method's per-stage update probability (``stochastic``: 0.2) and
    ``unlock_prob`` its probability of not waiting for the true gradient (``mixed``: 0.5).

    ``synth_loss`` is what trains the synthesizers (:mod:`sglab.dni.losses`): ``l2`` regression
    (the paper), ``sobolev`` (L2 plus ``sobolev_weight`` × the L2 error of directional
    derivatives along ``sobolev_directions`` random ``sobolev_distribution`` directions per T
    op) or ``critic`` (a learned loss whose gradient is the synthetic gradient, fitted in
    gradient and, with weight ``critic_value_weight``, in value). ``synth_loss_weight`` scales
    whichever loss before its step.

    ``validation`` (at most 0.9) moves that fraction of the training set (stratified, the last examples of each
    class) to a validation split, which every evaluation also scores (``val_error``): choose
    settings on it, never on the test set.

    ``fused_adam`` makes every optimizer ``torch.optim.Adam(fused=True)`` (one kernel per
    optimizer instead of a loop over its tensors; ``benchmarks/step_time.py`` times both). It
    changes the last bits of the updates, so runs with it are not bitwise those without.

    ``compile`` runs every stage and synthesizer through ``torch.compile`` with that mode
    (``Module.compile``, in place, so checkpoints keep their keys); ``reduce-overhead`` adds CUDA
    graphs on a GPU. It pays a compilation (tens of seconds) up front, needs a C++ compiler on CPU
    and Triton on CUDA, and changes the last bits of the arithmetic. On the 2-core CPU VM it did
    not make FCN-3 faster (docs/training.md); it exists for GPUs, where a step of small kernels is
    bound by launching them. Only the ``l2`` synthesizer objective runs compiled.
    """

    task: ClassVar[str] = "classify"
    runner: ClassVar[str] = "train"

    dataset: str = "embedded"
    data_dir: str | None = None
    download: bool = False
    limit_train: int | None = spec(None, ge=1)
    limit_test: int | None = spec(None, ge=1)
    validation: float = spec(0.0, ge=0, le=0.9)

    model: str = spec("fcn", choices=("fcn", "cnn"))
    layers: int = spec(3, ge=1)
    width: int = spec(256, ge=1)
    channels: int = spec(128, ge=1)

    method: str = "dni"
    update_prob: float | None = spec(None, gt=0, le=1)
    unlock_prob: float | None = spec(None, ge=0, le=1)
    synthesizer: str = spec("auto", choices=("auto", "linear", "mlp", "conv"))
    synth_hidden_layers: int = spec(1, ge=0)
    synth_width: int = spec(1024, ge=1)
    synth_loss_weight: float = spec(1.0, ge=0)
    synth_loss: str = spec("l2", choices=("l2", "sobolev", "critic"))
    # defaults chosen on MNIST's validation split (benchmarks/fidelity.py, docs/fidelity.md)
    sobolev_weight: float = spec(0.01, ge=0)
    sobolev_directions: int = spec(1, ge=1)
    sobolev_distribution: str = spec("rademacher", choices=("rademacher", "gaussian"))
    critic_value_weight: float = spec(1e-4, ge=0)
    input_model_hidden_layers: int = spec(1, ge=0)
    fused_adam: bool = False
    compile: str = spec("off", choices=COMPILE_MODES)

    batch_size: int = spec(256, ge=2)  # batch norm needs 2 examples
    eval_batch_size: int = spec(1000, ge=1)
    train_eval_examples: int = spec(1000, ge=1)

    def validate(self) -> "ClassifyConfig":
        """Raise :class:`ConfigError` naming the first field that cannot work; returns self."""
        check_fields(self)
        try:
            method = get_method(self.method, self.runner)
        except MethodError as err:
            raise ConfigError(f"config field 'method': {err}") from None
        for name in ("update_prob", "unlock_prob"):
            if getattr(self, name) is not None and not method.synthetic_gradients:
                raise ConfigError(f"config field {name!r} applies to methods with synthetic gradients "
                                  f"(dni, cdni, stochastic, mixed ...), not {self.method!r}")
        if self.synth_loss != "l2" and not method.synthetic_gradients:
            raise ConfigError(f"config field 'synth_loss' {self.synth_loss!r} applies to methods with synthetic "
                              f"gradients (dni, cdni, stochastic, mixed ...), not {self.method!r}")
        self._check_objective_fields()
        if self.compile != "off" and self.synth_loss != "l2":
            raise ConfigError(f"config field 'compile' {self.compile!r} runs only with synth_loss 'l2', "
                              f"not {self.synth_loss!r} (its targets call the modules functionally)")
        return super().validate()

    def _check_objective_fields(self) -> None:
        """A weight of an objective the run does not train with is refused rather than ignored."""
        defaults = {f.name: f.default for f in fields(self)}
        owners = {"sobolev_weight": "sobolev", "sobolev_directions": "sobolev", "sobolev_distribution": "sobolev",
                  "critic_value_weight": "critic"}
        for name, owner in owners.items():
            if getattr(self, name) != defaults[name] and self.synth_loss != owner:
                raise ConfigError(f"config field {name!r} applies to synth_loss {owner!r}, not {self.synth_loss!r}")

    def resolved_method(self) -> Method:
        """The registry's method with this config's update and unlock probabilities."""
        return get_method(self.method, self.runner, update_prob=self.update_prob, unlock_prob=self.unlock_prob)
