"""Time sglab's training step against a hand-written PyTorch loop of the same model, and against its arithmetic.

    python benchmarks/step_time.py --out docs/results/step_time-cpu                 # CPU, 1 thread
    python benchmarks/step_time.py --device cuda --out docs/results/gpu/step_time   # CUDA

For each model (the paper's FCN-3 on MNIST-shaped batches of 256 by default) and optimizer
(torch's default Adam, and ``fused=True`` Adam), four variants of one step on one fixed batch:

- ``sglab bprop`` / ``sglab dni``: :class:`~sglab.exec.chain.ChainRunner.step` as training runs it.
- ``plain bprop`` / ``plain dni``: the loop a user would write by hand (below, twenty lines each)
  over copies of the very same modules and synthesizers, with the same per-stage optimizers.

The variants run interleaved, round by round in a shuffled order, so that drift and the
machine's neighbours hit all alike; each round times ``--steps`` steps of one variant. Reported:
the median step per variant, and per round the ratio sglab / plain (median and quartiles).
**Arithmetic**: the multiply-adds of every matrix product a step does (forward, input and
weight gradients, synthesizers included), and the time of those very products, each shape
timed alone with :mod:`torch.utils.benchmark`; ``step / arithmetic`` says how much of a step
is something else (optimizer, autograd bookkeeping, small ops, Python).

Both run in one process with glibc's malloc thresholds fixed, as ``sglab train`` runs
(:func:`sglab.allocator.steady_allocator`); ``SGLAB_MALLOC=default`` keeps glibc's defaults, under
which large tensors are page-faulted in afresh every step and the variants' times depend on
which tensors each keeps alive.

Writes ``step_time.json`` (provenance, settings, medians, every sample) and ``step_time.csv``.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
import torch.utils.benchmark as tbench
from torch import nn
from torch.nn import functional as F

from sglab.allocator import steady_allocator
from sglab.config import resolve_device
from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.profiling.backward_split import fixed_batch
from sglab.training.build import build_chain, compile_modules
from sglab.training.config import COMPILE_MODES, ClassifyConfig

MODELS = {"fcn3": dict(model="fcn", layers=3)}
OPTIMIZERS = ("adam", "adam-fused")


def plain_bprop_step(stages: nn.ModuleList, optimizers: list, x: torch.Tensor, y: torch.Tensor) -> None:
    """Backprop as written by hand: forward, loss, backward, one step per optimizer."""
    h = x
    for stage in stages:
        h = stage(h)
    loss = F.cross_entropy(h, y)
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()


def plain_dni_step(stages: nn.ModuleList, optimizers: list, synthesizers: list, synth_optimizers: list,
                   x: torch.Tensor, y: torch.Tensor) -> None:
    """DNI as written by hand (Jaderberg et al. 2016): each stage updates from its synthesizer's
    gradient, and each synthesizer regresses onto the next stage's input gradient."""
    h, inputs, predictions = x, [], []
    for i, stage in enumerate(stages):
        inp = h.detach().requires_grad_(i > 0)
        out = stage(inp)
        optimizers[i].zero_grad(set_to_none=True)
        if i < len(stages) - 1:
            predictions.append(synthesizers[i](out.detach()))
            out.backward(predictions[i].detach())
        else:
            F.cross_entropy(out, y).backward()
        optimizers[i].step()
        inputs.append(inp)
        h = out
    for i, prediction in enumerate(predictions):
        synth_optimizers[i].zero_grad(set_to_none=True)
        F.mse_loss(prediction, inputs[i + 1].grad).backward()
        synth_optimizers[i].step()


def adam(params, lr: float, fused: bool) -> torch.optim.Optimizer:
    """torch's Adam, with its default implementation or ``fused=True``."""
    return torch.optim.Adam(params, lr=lr, fused=True) if fused else torch.optim.Adam(params, lr=lr)


def setting_name(optimizer: str, compile_mode: str) -> str:
    """A setting's label: the optimizer, and ``+compile-MODE`` where both sides run compiled."""
    return optimizer if compile_mode == "off" else f"{optimizer}+compile-{compile_mode}"


def variants(name: str, optimizer: str, device: torch.device, batch: tuple, compile_mode: str = "off") -> dict:
    """The four step functions of one model and optimizer, each on its own copy of the weights; with
    ``compile_mode``, sglab's modules and the plain loop's copies are all ``torch.compile``'d alike."""
    fused = optimizer == "adam-fused"
    x, y = batch
    made = {}
    for method in ("bprop", "dni"):
        config = ClassifyConfig(method=method, device=str(device), fused_adam=fused, **MODELS[name])
        runner = build_chain(config, tuple(x.shape[1:]), 10, device)
        made[f"sglab {method}"] = lambda runner=runner: runner.step(x, y)
        # The plain loop's copies are taken before anything is compiled, then both sides compile alike.
        stages = copy.deepcopy(runner.stages)
        synths = [copy.deepcopy(interface.synthesizer) for interface in runner.interfaces]
        if compile_mode != "off":
            originals = [*runner.stages, *(interface.synthesizer for interface in runner.interfaces)]
            compile_modules(compile_mode, [*originals, *stages, *synths])
        optimizers = [adam(stage.parameters(), config.lr, fused) for stage in stages]
        if method == "bprop":
            made["plain bprop"] = lambda s=stages, o=optimizers: plain_bprop_step(s, o, x, y)
        else:
            synth_optimizers = [adam(s.parameters(), config.lr, fused) for s in synths]
            made["plain dni"] = lambda s=stages, o=optimizers, m=synths, mo=synth_optimizers: plain_dni_step(
                s, o, m, mo, x, y)
    return made


def matmuls(runner, x: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """``(m, k, n, count)`` of each matrix product of one step: per Linear layer its forward and
    weight gradient, and its input gradient unless its input is the batch or a detached output."""
    shapes: list[tuple[int, int, int, int]] = []
    modules = [(stage, i > 0) for i, stage in enumerate(runner.stages)]
    modules += [(interface.synthesizer, False) for interface in runner.interfaces if interface.synthesizer]
    for module, input_grad in modules:
        for n, layer in enumerate(m for m in module.modules() if isinstance(m, nn.Linear)):
            needs_input_grad = input_grad or n > 0
            shapes.append((x.shape[0], layer.in_features, layer.out_features, 2 + needs_input_grad))
    return shapes


def arithmetic(shapes: list[tuple[int, int, int, int]], device: torch.device) -> dict:
    """Multiply-adds of ``shapes`` and the time of those products, each timed alone."""
    seconds, macs = 0.0, 0
    for m, k, n, count in shapes:
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        timer = tbench.Timer("torch.mm(a, b)", globals={"a": a, "b": b, "torch": torch})
        seconds += count * timer.blocked_autorange(min_run_time=0.2).median
        macs += count * m * k * n
    return {"macs": macs, "seconds": seconds}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(steps: dict, rounds: int, per_round: int, warmup: int, device: torch.device, seed: int) -> dict:
    """Per variant, the seconds per step of each round (rounds in a shuffled order of the variants)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    sync(device)
    order, samples = list(steps), {name: [] for name in steps}
    shuffle = random.Random(seed)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            start = time.perf_counter()
            for _ in range(per_round):
                steps[name]()
            sync(device)
            samples[name].append((time.perf_counter() - start) / per_round)
    return samples


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """First quartile, median and third quartile."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return q[0], statistics.median(values), q[2]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default="fcn3", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20, help="steps per variant per round")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", nargs="*", default=[], choices=[m for m in COMPILE_MODES if m != "off"],
                        help="also time these torch.compile modes (default Adam; sglab and the plain loop both "
                             "compiled), e.g. default reduce-overhead (CUDA graphs on a GPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steadied = steady_allocator()  # as sglab train does; SGLAB_MALLOC=default measures glibc's defaults
    device = resolve_device(args.device)
    rows, samples = [], {}
    for name in args.models.split(","):
        batch = fixed_batch(None, (1, 28, 28), 10, 256, device, args.seed)
        maths = {method: arithmetic(matmuls(build_chain(ClassifyConfig(method=method, **MODELS[name]), (1, 28, 28), 10,
                                                        device), batch[0]), device) for method in ("bprop", "dni")}
        settings = [(optimizer, "off") for optimizer in OPTIMIZERS] + [("adam", mode) for mode in args.compile]
        for optimizer, compile_mode in settings:
            steps = variants(name, optimizer, device, batch, compile_mode)
            timed = interleaved(steps, args.rounds, args.steps, args.warmup, device, args.seed)
            label = setting_name(optimizer, compile_mode)
            samples[f"{name}/{label}"] = timed
            for method in ("bprop", "dni"):
                math = maths[method]
                ratios = [s / p for s, p in zip(timed[f"sglab {method}"], timed[f"plain {method}"], strict=True)]
                low, mid, high = quartiles(ratios)
                row = {"model": name, "optimizer": label, "method": method, "device": str(device),
                       "sglab_step_ms": 1e3 * statistics.median(timed[f"sglab {method}"]),
                       "plain_step_ms": 1e3 * statistics.median(timed[f"plain {method}"]),
                       "sglab_vs_plain": mid, "sglab_vs_plain_q1": low, "sglab_vs_plain_q3": high,
                       "macs": math["macs"], "arithmetic_ms": 1e3 * math["seconds"]}
                row["sglab_vs_arithmetic"] = row["sglab_step_ms"] / row["arithmetic_ms"]
                row["plain_vs_arithmetic"] = row["plain_step_ms"] / row["arithmetic_ms"]
                rows.append(row)
                print(f"{name} {method:5} {label:10}: sglab {row['sglab_step_ms']:.2f} ms, plain "
                      f"{row['plain_step_ms']:.2f} ms, sglab/plain {mid:.3f} [{low:.3f}, {high:.3f}], "
                      f"arithmetic {row['arithmetic_ms']:.2f} ms ({row['macs'] / 1e6:.0f} M MACs): "
                      f"sglab {row['sglab_vs_arithmetic']:.2f}x of it", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "step_time.csv", pd.DataFrame(rows).to_csv(index=False))
    atomic_write_json(args.out / "step_time.json", {
        "provenance": provenance(), "settings": vars(args) | {"out": str(args.out)},
        "torch_threads": torch.get_num_threads(), "steady_allocator": steadied, "results": rows, "samples": samples,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
