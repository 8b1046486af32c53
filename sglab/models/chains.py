"""The paper's models as chains of stages: one stage per layer, so DNI can sit between every pair.

FCN-L: ``L-1`` hidden stages of (Linear 256, BatchNorm, ReLU) and a Linear classifier stage.
CNN-L: ``L-1`` stages of (Conv 5×5 with 128 filters, BatchNorm, ReLU, 3×3 max-pool stride 2 on
the first ``pool_layers`` of them) and a Linear classifier stage, as the paper's CIFAR CNN.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def fcn(input_shape: tuple[int, ...], num_classes: int, layers: int = 3, width: int = 256) -> nn.ModuleList:
    """A fully connected chain of ``layers`` stages (the last one is the classifier)."""
    _check_layers(layers)
    stages = nn.ModuleList()
    fan_in = math.prod(input_shape)
    for _ in range(layers - 1):
        stages.append(nn.Sequential(nn.Flatten(), nn.Linear(fan_in, width), nn.BatchNorm1d(width), nn.ReLU()))
        fan_in = width
    stages.append(nn.Sequential(nn.Flatten(), nn.Linear(fan_in, num_classes)))
    return stages


def cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    layers: int = 3,
    channels: int = 128,
    kernel_size: int = 5,
    pool_layers: int = 2,
) -> nn.ModuleList:
    """A convolutional chain of ``layers`` stages (the last one is the classifier)."""
    _check_layers(layers)
    if len(input_shape) != 3:
        raise ValueError(f"a CNN needs (C, H, W) inputs, got shape {input_shape}")
    stages = nn.ModuleList()
    fan_in = input_shape[0]
    for index in range(layers - 1):
        block = [
            nn.Conv2d(fan_in, channels, kernel_size, padding=kernel_size // 2),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        ]
        if index < pool_layers:
            block.append(nn.MaxPool2d(3, stride=2, padding=1))
        stages.append(nn.Sequential(*block))
        fan_in = channels
    features = math.prod(output_shapes(stages, input_shape)[-1]) if len(stages) else math.prod(input_shape)
    stages.append(nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes)))
    return stages


def output_shapes(stages: nn.ModuleList, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Per-example output shape of every stage, found by running a 2-example dummy batch."""
    was_training = [m.training for m in stages]
    shapes = []
    with torch.no_grad():
        h = torch.zeros(2, *input_shape)
        for stage in stages:
            stage.eval()
            h = stage(h)
            shapes.append(tuple(h.shape[1:]))
    for stage, mode in zip(stages, was_training):
        stage.train(mode)
    return shapes


MODELS = {"fcn": fcn, "cnn": cnn}


def _check_layers(layers: int) -> None:
    if layers < 1:
        raise ValueError(f"a chain needs at least 1 layer, got {layers}")
