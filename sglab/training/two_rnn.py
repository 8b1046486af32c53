"""The two-RNN task's session: A reads digits and talks, B learns to count from what A says."""

from __future__ import annotations

from typing import Any

import torch

from sglab.exec.observe import Observer
from sglab.probes import TwoRNNProbe
from sglab.tasks.two_rnn import digit_arrays, majority_rate_b, make_episodes
from sglab.training.build import build_two_rnn
from sglab.training.config import TwoRNNConfig
from sglab.training.session import EpisodeSession


def embedded_digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The embedded MNIST digits: train digits for training episodes, test digits for evaluation."""
    from sglab.data import load_dataset

    data = load_dataset("embedded")
    return {"train": digit_arrays(data.x_train, data.y_train), "test": digit_arrays(data.x_test, data.y_test)}


class TwoRNNSession(EpisodeSession):
    """A batch of episodes per step; held-out accuracy of both networks at each evaluation.

    ``digits`` maps ``train`` / ``test`` to ``(images (n, pixels), labels)``; by default the
    embedded MNIST digits.
    """

    def __init__(self, config: TwoRNNConfig, device: torch.device,
                 digits: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None):
        super().__init__(config, device)
        digits = digits or embedded_digits()
        (x_train, self.y_train), (x_test, y_test) = digits["train"], digits["test"]
        self.x_train = x_train.to(device)
        self.runner = build_two_rnn(config, x_train.shape[1], device)
        self.held_out = make_episodes(x_test.to(device), y_test, config.tick_ratio, config.b_ticks, config.eval_episodes,
                                      torch.Generator().manual_seed(config.seed + 2))

    def step(self, step: int, observer: Observer | None) -> dict[str, Any]:
        """Both networks on a fresh batch of episodes."""
        c = self.config
        episodes = make_episodes(self.x_train, self.y_train, c.tick_ratio, c.b_ticks, c.batch_size, self.generator)
        result = self.runner.train_step(episodes, observer)
        return {"loss": result["loss_a"] + result["loss_b"], **result}

    def probe(self) -> TwoRNNProbe:
        """The two-RNN probe."""
        return TwoRNNProbe(self.runner)

    def evaluate(self, step: int) -> list[dict[str, Any]]:
        """Held-out accuracy of A and B, and B's held-out loss."""
        scores = self.runner.evaluate(self.held_out)
        return [{"test_accuracy_a": scores["accuracy_a"], "test_accuracy_b": scores["accuracy_b"],
                 "test_loss_b": scores["loss_b"]}]

    def judge_loss(self, evaluation: list[dict[str, Any]]) -> float:
        """B's held-out loss, computed with the current weights of both networks."""
        return evaluation[-1]["test_loss_b"]

    def summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Held-out accuracies at the end, and B's majority-guess rate to read them against."""
        evals = [row for row in rows if row["kind"] == "eval"]
        final = evals[-1] if evals else {}
        return {"tick_ratio": self.config.tick_ratio, "test_accuracy_a": final.get("test_accuracy_a"),
                "test_accuracy_b": final.get("test_accuracy_b"), "chance_b": majority_rate_b(self.config.tick_ratio)}

    def postfix(self, row: dict[str, Any]) -> dict[str, str]:
        """Training accuracies of both networks."""
        return {"acc_a": f"{row['accuracy_a']:.2f}", "acc_b": f"{row['accuracy_b']:.2f}"}
