"""Where a trained classifier's synthetic gradients fail: on the examples it gets right or on those it gets wrong.

Plain DNI's synthesizer sees a layer's activation ``h`` but not the label, so the best it can
predict is ``E[∂ℓ/∂h | h]``. On an example the network already classifies confidently the true
gradient is small and that guess can be close; on one it gets wrong, the gradient points toward a
label the activation does not reveal, and the guess cannot know which. :func:`agreement_by_outcome`
splits a set of examples by outcome and reports, per interface, how much of the true gradient's
squared norm lies on each group and how well the synthetic gradient agrees with it there::

    python -m analysis.gradient_by_outcome docs/results/table1_selection/.../runs/fcn3-dni

Gradients are per example with every stage and synthesizer in eval mode (batch norm on its
running statistics), so no example's gradient depends on the others in its batch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

from sglab.exec.chain import ChainRunner, label_context
from sglab.probes.metrics import per_sample_cosine


def per_example_gradients(runner: ChainRunner, x: torch.Tensor, y: torch.Tensor
                          ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Whether each example is classified right, and per interface the true and the synthetic gradient at ``h``."""
    outputs, h = [], x
    for stage in runner.stages:
        h = stage(h)
        outputs.append(h)
    logits, outputs = outputs[-1], outputs[:-1]
    loss = F.cross_entropy(logits, y, reduction="sum")  # a sum: each row's gradient is its own example's
    true = list(torch.autograd.grad(loss, outputs))
    context = label_context(y, runner.num_classes) if runner.method.context else None
    with torch.no_grad():
        synthetic = [interface.synthesizer(h.detach(), context) for interface, h in zip(runner.interfaces, outputs)]
    return logits.argmax(1) == y, true, synthetic


def agreement_by_outcome(runner: ChainRunner, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> pd.DataFrame:
    """Per interface and outcome (``right``/``wrong``): examples, share of the true gradient's squared norm,
    share of the synthetic one's, and the per-example cosine between them (mean and median)."""
    modules = [*runner.stages] + [m for i in runner.interfaces for m in i.modules().values()]
    modes = [m.training for m in modules]
    for module in modules:
        module.eval()
    try:
        parts = [per_example_gradients(runner, x[i:i + batch_size], y[i:i + batch_size])
                 for i in range(0, len(x), batch_size)]
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
    right = torch.cat([p[0] for p in parts])
    rows = []
    for k in range(len(runner.interfaces)):
        true = torch.cat([p[1][k] for p in parts]).flatten(1)
        synthetic = torch.cat([p[2][k] for p in parts]).flatten(1)
        true_energy, synthetic_energy = true.pow(2).sum(1), synthetic.pow(2).sum(1)
        cosines = per_sample_cosine(synthetic, true)
        for outcome, mask in (("right", right), ("wrong", ~right)):
            if not mask.any():
                continue
            rows.append({"interface": k, "outcome": outcome, "examples": int(mask.sum()),
                         "true_norm2_share": float(true_energy[mask].sum() / true_energy.sum()),
                         "synthetic_norm2_share": float(synthetic_energy[mask].sum() / synthetic_energy.sum()),
                         "cosine_mean": float(cosines[mask].nanmean()),
                         "cosine_median": float(cosines[mask].nanmedian())})
    return pd.DataFrame(rows)


def load_session(run_dir: str | Path):
    """The classification session of a run directory, with its checkpoint's weights, on the CPU."""
    from sglab.training.config import make_config
    from sglab.training.loop import make_session
    from sglab.training.run_dir import RunDir

    checkpoint = RunDir(run_dir).load_checkpoint("cpu")
    config = make_config(checkpoint["task"], checkpoint["config"])
    session = make_session(config, torch.device("cpu"))
    session.load_state_dict(checkpoint["session"])
    return session


def main(argv: list[str] | None = None) -> None:
    """Print the table for one run directory's checkpoint."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--examples", type=int, default=10_000, help="the first this many of the split")
    parser.add_argument("--csv", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    session = load_session(args.run_dir)
    if session.config.task_name != "classify":
        sys.exit(f"{args.run_dir}: a {session.config.task_name} run; this compares a classifier's chain of stages")
    if not session.runner.interfaces or session.runner.interfaces[0].synthesizer is None:
        sys.exit(f"{args.run_dir}: the run's method ({session.config.method}) has no gradient synthesizers")
    x, y = (session.x_train, session.y_train) if args.split == "train" else (session.x_test, session.y_test)
    table = agreement_by_outcome(session.runner, x[:args.examples], y[:args.examples])
    if args.csv:
        from sglab.io import atomic_write_text

        atomic_write_text(args.csv, table.to_csv(index=False))
    print(table.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
