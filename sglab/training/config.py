"""The configuration of a training run: one dataclass per task, saved with every checkpoint and result.

Every task's config is a :class:`RunConfig` (method, steps, learning rate, logging, seed ...)
plus the task's own fields. Each checks its fields when it is made (types and ranges, naming
the field) and which methods its runner can run (:mod:`sglab.methods`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from sglab.config import ConfigError, check_fields, from_dict, spec
from sglab.methods import Method, MethodError, get_method

DEVICES = "auto, cpu, cuda or cuda:N"
#: ``ClassifyConfig.compile``: off, or a ``torch.compile`` mode.
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


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


@dataclass
class RecurrentConfig(RunConfig):
    """A recurrent network trained in chunks of ``truncation`` ticks.

    Attributes:
        truncation: ``T``, ticks per chunk (one update per chunk).
        hidden, core: the network's width and cell (lstm, gru, rnn).
        synth_scale: factor on the synthetic gradient entering each chunk (the paper uses 0.1).
        synth_hidden_layers, synth_width: 0 for a linear synthesizer, else an MLP.
        aux_weight: weight of the DNI+Aux regression loss (``dni-aux`` only).
        clip: clip the network's gradient norm per update to this value (None: no clipping).
    """

    runner: ClassVar[str] = "recurrent"

    method: str = "dni"
    steps: int = spec(2000, ge=1)
    batch_size: int = spec(32, ge=1)
    lr: float = spec(1e-3, gt=0)
    log_every: int = spec(1, ge=1)
    eval_every: int = spec(100, ge=1)
    truncation: int = spec(5, ge=1)
    hidden: int = spec(64, ge=1)
    core: str = spec("lstm", choices=("lstm", "gru", "rnn"))
    synth_scale: float = spec(0.1, ge=0)
    synth_hidden_layers: int = spec(0, ge=0)
    synth_width: int = spec(256, ge=1)
    aux_weight: float = spec(1.0, ge=0)
    clip: float | None = spec(1.0, gt=0)


@dataclass
class CopyConfig(RecurrentConfig):
    """Copy or Repeat Copy with a length curriculum.

    Attributes:
        repeat: Repeat Copy instead of Copy.
        bits: bits per vector (the paper uses 8; small budgets learn faster with fewer).
        max_repeats: Repeat Copy's largest repeat count.
        min_length, max_length: the curriculum's first and last sequence length ``N``.
        threshold: bits wrong per sequence under which a length is solved (paper: 0.15).
        window: batches averaged for the solved test.
    """

    task: ClassVar[str] = "copy"

    repeat: bool = False
    bits: int = spec(8, ge=1)
    max_repeats: int = spec(3, ge=1)
    min_length: int = spec(1, ge=1)
    max_length: int = spec(64, ge=1)
    threshold: float = spec(0.15, gt=0)
    window: int = spec(10, ge=1)

    def validate(self) -> "CopyConfig":
        """Also: the curriculum's lengths must be in order."""
        super().validate()
        if self.max_length < self.min_length:
            raise ConfigError(f"config field 'max_length' must be >= min_length ({self.min_length}), got {self.max_length}")
        return self

    @property
    def task_name(self) -> str:
        """``copy`` or ``repeat-copy``."""
        return "repeat-copy" if self.repeat else "copy"


@dataclass
class CharLMConfig(RecurrentConfig):
    """Character-level language modelling over parallel streams whose state carries on.

    Attributes:
        text: the corpus file; ``valid_text``: a separate validation file (else the last
            ``valid_fraction`` of ``text`` validates).
        text_format: ``raw`` text or ``ptb`` (Penn Treebank character files).
        seq_len: ticks per step and stream.
        eval_chars: validate on at most this many validation characters (None: all).
    """

    task: ClassVar[str] = "charlm"

    text: str = ""
    valid_text: str | None = None
    text_format: str = spec("raw", choices=("raw", "ptb"))
    valid_fraction: float = spec(0.1, gt=0, le=0.9)
    seq_len: int = spec(64, ge=1)
    eval_every: int = spec(250, ge=1)
    eval_chars: int | None = spec(None, ge=1)
    hidden: int = spec(128, ge=1)
    steps: int = spec(1000, ge=1)

    def validate(self) -> "CharLMConfig":
        """Also: a text file is needed."""
        super().validate()
        if not self.text:
            raise ConfigError("charlm needs a text file: pass --text PATH (e.g. tinyshakespeare.txt)")
        return self


@dataclass
class TwoRNNConfig(RunConfig):
    """Two recurrent networks: A reads digits and sends a message, B must count from the message alone.

    Attributes:
        method: how B's gradient reaches A: ``cdni`` (a synthesizer conditioned on B's target,
            the default), ``dni`` (sees only the message), ``bprop`` (the true gradient, locked)
            or ``nobprop`` (no gradient from B: the ablation).
        tick_ratio: ``N``: B ticks once every ``N`` ticks of A.
        b_ticks: B's ticks per episode (an episode is ``N · b_ticks`` digits).
        hidden_a, hidden_b, message_size, encoder_hidden: network sizes.
        synth_scale: factor on the synthetic gradient A uses.
        eval_episodes: held-out episodes scored at each evaluation.
    """

    task: ClassVar[str] = "two-rnn"
    runner: ClassVar[str] = "two-rnn"

    method: str = "cdni"
    tick_ratio: int = spec(4, ge=1)
    b_ticks: int = spec(3, ge=1)
    hidden_a: int = spec(64, ge=1)
    hidden_b: int = spec(32, ge=1)
    message_size: int = spec(16, ge=1)
    encoder_hidden: int = spec(64, ge=1)
    lr: float = spec(1e-3, gt=0)
    synth_scale: float = spec(1.0, ge=0)
    batch_size: int = spec(32, ge=1)
    steps: int = spec(2000, ge=1)
    eval_every: int = spec(100, ge=1)
    log_every: int = spec(1, ge=1)
    eval_episodes: int = spec(512, ge=1)

    @property
    def episode_ticks(self) -> int:
        """A's ticks per episode."""
        return self.tick_ratio * self.b_ticks


@dataclass
class RNNChainConfig(RunConfig):
    """``K = len(ratios) + 1`` recurrent networks in a chain, each on its own clock (:mod:`sglab.exec.rnn_chain`).

    Attributes:
        method: ``cdni`` (each link's synthesizer also sees the last network's target, the
            default), ``dni`` (the message alone) or ``nobprop`` (every link cut).
        ratios: network ``k`` ticks once every ``ratios[k-1]`` ticks of network ``k-1``.
        last_ticks: the last network's ticks per episode (an episode is ``prod(ratios) · last_ticks`` symbols).
        symbols: network 0's alphabet; the odd symbols are the ones the last network counts.
        hidden, message_size: every network's core width, and the width of every message.
        cut_links: links (``k``: network ``k`` → ``k+1``) whose synthetic gradient is cut: the
            ablations. The networks upstream of a cut link get no gradient.
        synth_scale: factor on every synthetic gradient.
        eval_episodes: held-out episodes scored at each evaluation.
    """

    task: ClassVar[str] = "rnn-chain"
    runner: ClassVar[str] = "rnn-chain"

    method: str = "cdni"
    ratios: list[int] = spec(factory=lambda: [2, 2], ge=1)
    last_ticks: int = spec(3, ge=1)
    symbols: int = spec(6, ge=2)
    hidden: int = spec(32, ge=1)
    message_size: int = spec(8, ge=1)
    cut_links: list[int] = spec(factory=list, ge=0)
    lr: float = spec(3e-3, gt=0)
    synth_scale: float = spec(1.0, ge=0)
    batch_size: int = spec(32, ge=1)
    steps: int = spec(500, ge=1)
    eval_every: int = spec(100, ge=1)
    log_every: int = spec(1, ge=1)
    eval_episodes: int = spec(512, ge=1)

    def validate(self) -> "RNNChainConfig":
        """Also: at least one link, and cut links that exist, each named once, under a method with synthetic gradients."""
        super().validate()
        if not self.ratios:
            raise ConfigError("config field 'ratios' must list at least one ratio (two networks)")
        links = len(self.ratios)
        bad = [k for k in self.cut_links if k >= links]
        if bad or len(set(self.cut_links)) != len(self.cut_links):
            raise ConfigError(f"config field 'cut_links' must name distinct links 0..{links - 1}, got {self.cut_links}")
        if self.probe_every is not None:
            raise ConfigError("config field 'probe_every': rnn-chain has no fidelity probe yet")
        if self.cut_links and not self.resolved_method().synthetic_gradients:
            raise ConfigError(f"config field 'cut_links' applies to methods with synthetic gradients (dni, cdni), "
                              f"not {self.method!r}, which cuts every link")
        return self

    @property
    def num_networks(self) -> int:
        """K."""
        return len(self.ratios) + 1


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
