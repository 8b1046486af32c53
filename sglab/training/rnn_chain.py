"""The RNN-chain task's session: network 0 reads symbols, the last network must count them, messages in between."""

from __future__ import annotations

from typing import Any

import torch

from sglab.config import ConfigError
from sglab.exec.observe import Observer
from sglab.tasks.rnn_chain import majority_rate, make_chain_episodes
from sglab.training.build import build_rnn_chain
from sglab.training.config import RNNChainConfig
from sglab.training.session import EpisodeSession


class RNNChainSession(EpisodeSession):
    """A batch of fresh episodes per step; the last network's held-out loss and accuracy at each evaluation."""

    def __init__(self, config: RNNChainConfig, device: torch.device):
        super().__init__(config, device)
        self.runner = build_rnn_chain(config, device)
        self.held_out = self._episodes(config.eval_episodes, torch.Generator().manual_seed(config.seed + 2))

    def _episodes(self, batch: int, generator: torch.Generator):
        c = self.config
        return make_chain_episodes(c.symbols, tuple(c.ratios), c.last_ticks, batch, generator, self.device)

    def step(self, step: int, observer: Observer | None) -> dict[str, Any]:
        """Every network on a fresh batch of episodes."""
        return self.runner.train_step(self._episodes(self.config.batch_size, self.generator), observer)

    def probe(self):
        """No fidelity probe for the chain yet (the config refuses ``probe_every``)."""
        raise ConfigError("rnn-chain has no fidelity probe yet; drop probe_every")

    def evaluate(self, step: int) -> list[dict[str, Any]]:
        """The last network's held-out loss and accuracy."""
        scores = self.runner.evaluate(self.held_out)
        return [{"test_loss": scores["loss"], "test_accuracy": scores["accuracy"]}]

    def judge_loss(self, evaluation: list[dict[str, Any]]) -> float:
        """The last network's held-out loss, computed with the current weights of every network."""
        return evaluation[-1]["test_loss"]

    def summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Held-out loss and accuracy at the end, and the majority-guess rate to read them against."""
        evals = [row for row in rows if row["kind"] == "eval"]
        final = evals[-1] if evals else {}
        c = self.config
        return {"ratios": list(c.ratios), "cut_links": list(c.cut_links), "test_loss": final.get("test_loss"),
                "test_accuracy": final.get("test_accuracy"), "chance": majority_rate(c.symbols, tuple(c.ratios))}

    def postfix(self, row: dict[str, Any]) -> dict[str, str]:
        """The last network's training accuracy."""
        return {"acc": f"{row['accuracy']:.2f}"}
