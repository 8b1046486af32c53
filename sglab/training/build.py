"""Build each task's runner from its config: modules, synthesizers and optimizers, seeded by ``config.seed``.

The order in which modules are made is the order in which they draw their initial weights
from torch's generator, so it is part of what a seed means: keep it.
"""

from __future__ import annotations

import torch
from torch import nn

from sglab.config import ConfigError
from sglab.dni.interface import Interface
from sglab.dni.losses import SynthObjective
from sglab.dni.synthesizers import InputSynthesizer, MLPSynthesizer, StateSynthesizer, make_critic, make_synthesizer
from sglab.exec.chain import ChainRunner
from sglab.exec.recurrent import RecurrentRunner
from sglab.exec.rnn_chain import RNNChainRunner
from sglab.exec.two_rnn import TwoRNNRunner
from sglab.methods import Method
from sglab.models.chains import MODELS, output_shapes
from sglab.models.recurrent import RecurrentNet
from sglab.models.rnn_chain import chain_networks
from sglab.models.two_rnn import NetworkA, NetworkB
from sglab.tasks.rnn_chain import window
from sglab.training.config import ClassifyConfig, RecurrentConfig, RNNChainConfig, TwoRNNConfig


def build_stages(config: ClassifyConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.ModuleList:
    """The model of ``config`` as a chain of stages."""
    if config.model == "fcn":
        return MODELS["fcn"](input_shape, num_classes, config.layers, config.width)
    return MODELS["cnn"](input_shape, num_classes, config.layers, config.channels)


def synthesizer_kind(config: ClassifyConfig, shape: tuple[int, ...]) -> str:
    """``auto`` resolves to ``conv`` for feature maps and ``mlp`` for vectors."""
    if config.synthesizer != "auto":
        if config.synthesizer == "conv" and len(shape) != 3:
            raise ConfigError(f"config field 'synthesizer' is 'conv' but interface activations have shape {shape}")
        return config.synthesizer
    return "conv" if len(shape) == 3 else "mlp"


def build_interfaces(
    config: ClassifyConfig,
    method: Method,
    stages: nn.ModuleList,
    input_shape: tuple[int, ...],
    num_classes: int,
) -> list[Interface]:
    """One interface per pair of stages with the synthesizers ``method`` needs (none for bprop).

    The gradient synthesizers are critics (learned losses) when ``config.synth_loss`` is ``critic``.
    """
    if not (method.synthetic_gradients or method.synthetic_inputs):
        return []
    context_dim = num_classes if method.context else 0
    synth_lr = config.synth_lr or config.lr
    make = make_critic if config.synth_loss == "critic" else make_synthesizer
    interfaces = []
    for shape in output_shapes(stages, input_shape)[:-1]:
        interface = Interface()
        if method.synthetic_gradients:
            kind = synthesizer_kind(config, shape)
            width = config.synth_width if kind != "conv" else config.channels
            interface.synthesizer = make(kind, shape, config.synth_hidden_layers, width, context_dim)
            interface.synthesizer_optimizer = adam(interface.synthesizer.parameters(), synth_lr, config.fused_adam)
        if method.synthetic_inputs:
            width = config.synth_width if len(shape) != 3 else config.channels
            model = InputSynthesizer(input_shape, shape, config.input_model_hidden_layers, width, context_dim)
            interface.input_model = model
            interface.input_optimizer = adam(model.parameters(), synth_lr, config.fused_adam)
        interfaces.append(interface)
    return interfaces


def build_chain(config: ClassifyConfig, input_shape: tuple[int, ...], num_classes: int,
                device: torch.device | str = "cpu") -> ChainRunner:
    """Stages, interfaces, optimizers and chain runner for ``config``."""
    torch.manual_seed(config.seed)
    method = config.resolved_method()
    stages = build_stages(config, input_shape, num_classes)
    interfaces = build_interfaces(config, method, stages, input_shape, num_classes)
    stages.to(device)
    for interface in interfaces:
        for module in interface.modules().values():
            module.to(device)
    optimizers = [adam(stage.parameters(), config.lr, config.fused_adam) for stage in stages]
    if config.compile != "off":
        compile_modules(config.compile, [*stages, *(m for i in interfaces for m in i.modules().values())])
    generator = torch.Generator().manual_seed(config.seed + 1)
    return ChainRunner(stages, method, optimizers, interfaces, num_classes, config.synth_loss_weight, generator,
                       objective=synth_objective(config))


def compile_modules(mode: str, modules) -> None:
    """``torch.compile`` each of ``modules`` in place (their ``state_dict`` keys stay)."""
    for module in modules:
        module.compile(mode=mode)


def synth_objective(config: ClassifyConfig) -> SynthObjective:
    """The synthesizers' training objective that ``config`` names, with its weights."""
    return SynthObjective(config.synth_loss, config.sobolev_weight, config.sobolev_directions,
                          config.sobolev_distribution, config.critic_value_weight)


def adam(params, lr: float, fused: bool) -> torch.optim.Optimizer:
    """torch's Adam: fused where asked and this torch and device have the kernel, else its default."""
    return make_adam(params, lr) if fused else torch.optim.Adam(params, lr=lr)


def make_adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam, fused where this torch supports it: recurrent training updates every few ticks, so
    the optimizer's per-step overhead is a large share of the time on small cores."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without a fused kernel
        return torch.optim.Adam(params, lr=lr)


def build_recurrent(config: RecurrentConfig, input_size: int, output_size: int,
                    device: torch.device | str = "cpu") -> RecurrentRunner:
    """The network, its state synthesizer (for synthetic gradients) and their optimizers."""
    torch.manual_seed(config.seed)
    method = config.resolved_method()
    model = RecurrentNet(input_size, config.hidden, output_size, config.core, aux=method.aux).to(device)
    optimizer = make_adam(model.parameters(), config.lr)
    synthesizer = synth_optimizer = None
    if method.synthetic_gradients:
        synthesizer = StateSynthesizer(model.state_sizes, config.synth_hidden_layers, config.synth_width).to(device)
        synth_optimizer = make_adam(synthesizer.parameters(), config.synth_lr or config.lr)
    return RecurrentRunner(model, method, optimizer, synthesizer, synth_optimizer, truncation=config.truncation,
                           synth_scale=config.synth_scale, aux_weight=config.aux_weight, clip=config.clip)


def build_two_rnn(config: TwoRNNConfig, pixels: int, device: torch.device | str = "cpu") -> TwoRNNRunner:
    """Networks A and B, A's message synthesizer (for synthetic gradients) and their optimizers."""
    torch.manual_seed(config.seed)
    method = config.resolved_method()
    a = NetworkA(pixels, config.encoder_hidden, config.hidden_a, config.episode_ticks + 1, config.message_size).to(device)
    b = NetworkB(config.message_size, config.hidden_b, config.tick_ratio + 1).to(device)
    opt_a, opt_b = make_adam(a.parameters(), config.lr), make_adam(b.parameters(), config.lr)
    synthesizer = synth_optimizer = None
    if method.synthetic_gradients:
        context = config.tick_ratio + 1 if method.context else 0
        synthesizer = MLPSynthesizer((config.message_size,), context_dim=context).to(device)
        synth_optimizer = make_adam(synthesizer.parameters(), config.synth_lr or config.lr)
    return TwoRNNRunner(a, b, method, opt_a, opt_b, synthesizer, synth_optimizer, tick_ratio=config.tick_ratio,
                        synth_scale=config.synth_scale)


def build_rnn_chain(config: RNNChainConfig, device: torch.device | str = "cpu") -> RNNChainRunner:
    """The chain's networks, a message synthesizer per open link and their optimizers."""
    torch.manual_seed(config.seed)
    method = config.resolved_method()
    classes = window_classes(config.ratios)
    k = config.num_networks
    networks = chain_networks(config.symbols, (config.hidden,) * k, config.message_size, classes).to(device)
    optimizers = [make_adam(n.parameters(), config.lr) for n in networks]
    synthesizers, synth_optimizers = [], []
    for link in range(k - 1):
        synthesizer = optimizer = None
        if method.synthetic_gradients and link not in config.cut_links:
            context = classes if method.context else 0
            synthesizer = MLPSynthesizer((config.message_size,), context_dim=context).to(device)
            optimizer = make_adam(synthesizer.parameters(), config.synth_lr or config.lr)
        synthesizers.append(synthesizer)
        synth_optimizers.append(optimizer)
    return RNNChainRunner(networks, method, optimizers, synthesizers, synth_optimizers, ratios=tuple(config.ratios),
                          classes=classes, cut=frozenset(config.cut_links), synth_scale=config.synth_scale)


def window_classes(ratios) -> int:
    """The last network's classes: 0..window marked symbols."""
    return window(tuple(ratios)) + 1
