"""Image classification: seeded minibatches and the loss and error of a chain of stages on a split."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from sglab.config import ConfigError


class BatchStream:
    """Seeded minibatches: a fresh permutation each epoch, resumable from its state dict."""

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        if num_examples < batch_size:
            raise ConfigError(f"batch_size {batch_size} is larger than the {num_examples} training examples")
        self.num_examples, self.batch_size = num_examples, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = 0, 0
        self.order = torch.randperm(num_examples, generator=self.generator)

    def next(self) -> torch.Tensor:
        """Indices of the next batch (incomplete final batches are dropped, as BatchNorm prefers)."""
        if self.position + self.batch_size > self.num_examples:
            self.epoch, self.position = self.epoch + 1, 0
            self.order = torch.randperm(self.num_examples, generator=self.generator)
        batch = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the same sequence of batches."""
        return {"epoch": self.epoch, "position": self.position, "order": self.order, "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.epoch, self.position, self.order = state["epoch"], state["position"], state["order"]
        self.generator.set_state(state["rng"])


@torch.no_grad()
def evaluate(stages: torch.nn.ModuleList, x: torch.Tensor, y: torch.Tensor, batch_size: int, device) -> dict[str, float]:
    """Loss and error of the real forward chain (eval mode) on ``(x, y)``."""
    stages.eval()
    wrong, loss_sum = 0, 0.0
    for start in range(0, len(x), batch_size):
        h = x[start : start + batch_size].to(device)
        target = y[start : start + batch_size].to(device)
        for stage in stages:
            h = stage(h)
        loss_sum += float(F.cross_entropy(h, target, reduction="sum"))
        wrong += int((h.argmax(1) != target).sum())
    stages.train()
    return {"loss": loss_sum / len(x), "error": wrong / len(x)}
