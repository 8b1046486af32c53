"""Build a chain of stages, its DNI interfaces and optimizers from a :class:`TrainConfig`."""

from __future__ import annotations

import torch
from torch import nn

from sglab.dni.interface import Interface
from sglab.dni.synthesizers import InputSynthesizer, make_synthesizer
from sglab.methods import Method, get_method
from sglab.models.chains import MODELS, output_shapes
from sglab.train.config import ConfigError, TrainConfig
from sglab.train.step import StepRunner


def build_stages(config: TrainConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.ModuleList:
    """The model of ``config`` as a chain of stages."""
    if config.model == "fcn":
        return MODELS["fcn"](input_shape, num_classes, config.layers, config.width)
    return MODELS["cnn"](input_shape, num_classes, config.layers, config.channels)


def synthesizer_kind(config: TrainConfig, shape: tuple[int, ...]) -> str:
    """``auto`` resolves to ``conv`` for feature maps and ``mlp`` for vectors."""
    if config.synthesizer != "auto":
        if config.synthesizer == "conv" and len(shape) != 3:
            raise ConfigError(f"config field 'synthesizer' is 'conv' but interface activations have shape {shape}")
        return config.synthesizer
    return "conv" if len(shape) == 3 else "mlp"


def build_interfaces(
    config: TrainConfig,
    method: Method,
    stages: nn.ModuleList,
    input_shape: tuple[int, ...],
    num_classes: int,
) -> list[Interface]:
    """One interface per pair of stages with the synthesizers ``method`` needs (none for bprop)."""
    if not (method.synthetic_gradients or method.synthetic_inputs):
        return []
    context_dim = num_classes if method.context else 0
    synth_lr = config.synth_lr or config.lr
    interfaces = []
    for shape in output_shapes(stages, input_shape)[:-1]:
        interface = Interface()
        if method.synthetic_gradients:
            kind = synthesizer_kind(config, shape)
            width = config.synth_width if kind != "conv" else config.channels
            interface.synthesizer = make_synthesizer(kind, shape, config.synth_hidden_layers, width, context_dim)
            interface.synthesizer_optimizer = torch.optim.Adam(interface.synthesizer.parameters(), lr=synth_lr)
        if method.synthetic_inputs:
            width = config.synth_width if len(shape) != 3 else config.channels
            model = InputSynthesizer(input_shape, shape, config.input_model_hidden_layers, width, context_dim)
            interface.input_model = model
            interface.input_optimizer = torch.optim.Adam(model.parameters(), lr=synth_lr)
        interfaces.append(interface)
    return interfaces


def build_runner(
    config: TrainConfig, input_shape: tuple[int, ...], num_classes: int, device: torch.device | str = "cpu"
) -> StepRunner:
    """Stages, interfaces, optimizers and step runner for ``config``, seeded by ``config.seed``."""
    config.validate()
    torch.manual_seed(config.seed)
    method = get_method(config.method, config.update_prob)
    stages = build_stages(config, input_shape, num_classes)
    interfaces = build_interfaces(config, method, stages, input_shape, num_classes)
    stages.to(device)
    for interface in interfaces:
        for module in interface.modules().values():
            module.to(device)
    optimizers = [torch.optim.Adam(stage.parameters(), lr=config.lr) for stage in stages]
    generator = torch.Generator().manual_seed(config.seed + 1)
    return StepRunner(stages, method, optimizers, interfaces, num_classes, config.synth_loss_weight, generator)
