"""The classification task's session: a chain of stages learning images, batch by batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sglab.exec.observe import Observer
from sglab.probes import ChainProbe
from sglab.tasks.classify import BatchStream, evaluate
from sglab.training.build import build_chain
from sglab.training.config import ClassifyConfig
from sglab.training.session import Session

if TYPE_CHECKING:
    from sglab.data import Dataset


class ClassifySession(Session):
    """Seeded minibatches through a :class:`~sglab.exec.chain.ChainRunner`; train and test error at each evaluation."""

    def __init__(self, config: ClassifyConfig, device: torch.device, dataset: Dataset | None = None):
        super().__init__(config, device)
        if dataset is None:
            from sglab.data import load_dataset  # data loading pulls in heavier modules

            dataset = load_dataset(config.dataset, config.data_dir, config.download, config.limit_train, config.limit_test,
                                   validation=config.validation)
        self.data = dataset
        self.x_train, self.y_train = torch.from_numpy(dataset.x_train), torch.from_numpy(dataset.y_train)
        self.x_test, self.y_test = torch.from_numpy(dataset.x_test), torch.from_numpy(dataset.y_test)
        self.x_val = None if dataset.x_val is None else torch.from_numpy(dataset.x_val)
        self.y_val = None if dataset.y_val is None else torch.from_numpy(dataset.y_val)
        self.runner = build_chain(config, dataset.input_shape, dataset.num_classes, device)
        self.batches = BatchStream(len(self.x_train), config.batch_size, config.seed)
        n = config.train_eval_examples
        self.eval_x, self.eval_y = self.x_train[:n], self.y_train[:n]

    def step(self, step: int, observer: Observer | None) -> dict[str, Any]:
        """One batch through the runner."""
        index = self.batches.next()
        result = self.runner.step(self.x_train[index].to(self.device), self.y_train[index].to(self.device), observer)
        row = {"epoch": self.batches.epoch, "loss": result.loss, "train_error": result.error}
        row.update({f"synth_loss_{i}": v for i, v in sorted(result.synth_loss.items())})
        row.update({f"input_loss_{i}": v for i, v in sorted(result.input_loss.items())})
        return row

    def evaluate(self, step: int) -> list[dict[str, Any]]:
        """Loss and error of the real forward chain on training examples and on the test set."""
        config, stages = self.config, self.runner.stages
        train = evaluate(stages, self.eval_x, self.eval_y, config.eval_batch_size, self.device)
        test = evaluate(stages, self.x_test, self.y_test, config.eval_batch_size, self.device)
        row = {"epoch": self.batches.epoch, "loss": train["loss"], "train_error": train["error"],
               "test_loss": test["loss"], "test_error": test["error"]}
        if self.x_val is not None:
            val = evaluate(stages, self.x_val, self.y_val, config.eval_batch_size, self.device)
            row.update(val_loss=val["loss"], val_error=val["error"])
        return [row]

    def judge_loss(self, evaluation: list[dict[str, Any]]) -> float:
        """The evaluation's training loss: computed with the weights a checkpoint would hold."""
        return evaluation[-1]["loss"]

    def modules(self) -> dict[str, torch.nn.Module]:
        """Stages, synthesizers and input models by name."""
        found = {f"stage{i}": stage for i, stage in enumerate(self.runner.stages)}
        for i, interface in enumerate(self.runner.interfaces):
            found.update({f"{role}{i}": module for role, module in interface.modules().items()})
        return found

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per stage and per synthesizer, by name."""
        found = {f"stage{i}": opt for i, opt in enumerate(self.runner.optimizers)}
        for i, interface in enumerate(self.runner.interfaces):
            found.update({f"{role}{i}": opt for role, opt in interface.optimizers().items()})
        return found

    def extra_state(self) -> dict[str, Any]:
        """The batch order and the runner's generator (stochastic updates)."""
        return {"batches": self.batches.state_dict(), "runner_rng": self.runner.generator.get_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state`."""
        self.batches.load_state_dict(state["batches"])
        self.runner.generator.set_state(state["runner_rng"])

    def probe(self) -> ChainProbe:
        """The chain's probe."""
        return ChainProbe(self.runner)

    def describe(self) -> dict[str, Any]:
        """The dataset."""
        return {"data": self.data.describe()}

    def summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Final and best errors, and what was trained."""
        evals = [row for row in rows if row["kind"] == "eval"]
        final = evals[-1] if evals else {}
        config = self.config
        summary = {"model": config.model, "layers": config.layers, "dataset": config.dataset,
                   "final_test_error": final.get("test_error"), "final_train_error": final.get("train_error"),
                   "best_test_error": min((row["test_error"] for row in evals), default=None)}
        if "val_error" in final:  # from the rows only: sglab.dist's launcher summarises without a session
            summary.update(final_val_error=final.get("val_error"),
                           best_val_error=min((row["val_error"] for row in evals), default=None))
        return summary

    def postfix(self, row: dict[str, Any]) -> dict[str, str]:
        """Loss, and the test error once evaluated."""
        return {"loss": f"{row['loss']:.3f}"}
