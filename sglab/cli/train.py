"""``sglab train``: train a feed-forward chain (``--task classify``) or a recurrent task with a method."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from sglab.methods import METHODS
from sglab.train.config import TrainConfig

CLASSIFY = "classify"


def _rnn_cli():
    """The recurrent tasks' CLI, when that part of sglab is installed."""
    try:
        from sglab.rnn import cli
    except ImportError:
        return None
    return cli


def register(subparsers) -> None:
    """Add the ``train`` subcommand."""
    rnn = _rnn_cli()
    tasks = [CLASSIFY, *(rnn.RNN_TASKS if rnn else ())]
    parser = subparsers.add_parser(
        "train",
        help="train a model with a method (bprop, dni, cdni, ...) and write a run directory",
        description="Train with backprop or DNI and write config.json, metrics.csv, summary.json and "
        "checkpoint.pt into --out. Feed-forward methods: " + ", ".join(METHODS) + ".",
    )
    common = parser.add_argument_group("common")
    common.add_argument("--task", choices=tasks, default=CLASSIFY, help="what to learn (default: classify)")
    common.add_argument("--method", default=None, help="training method (default: dni)")
    common.add_argument("--steps", type=int, default=None, help="training steps (minibatches)")
    common.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    common.add_argument("--batch-size", type=int, default=None)
    common.add_argument("--seed", type=int, default=None)
    common.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<task>-<method>)")
    common.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 is often fastest for small models)"
    )
    common.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt (its config)")
    common.add_argument(
        "--profile", action="store_true", help="time every op of the run: writes --out/profile.json and trace.json"
    )

    ff = parser.add_argument_group("classify (feed-forward FCN / CNN)")
    ff.add_argument("--dataset", default=None, help="embedded (default, offline), mnist, cifar10 or a .npz path")
    ff.add_argument("--data-dir", default=None, help="where mnist/cifar10 files live (or $SGLAB_DATA_DIR)")
    ff.add_argument("--download", action="store_true", help="download the dataset if missing (sha256-checked)")
    ff.add_argument("--model", choices=["fcn", "cnn"], default=None)
    ff.add_argument("--layers", type=int, default=None, help="number of layers (= stages)")
    ff.add_argument("--update-prob", type=float, default=None, help="per-stage update probability (stochastic)")
    ff.add_argument("--synthesizer", choices=["auto", "linear", "mlp", "conv"], default=None)
    ff.add_argument("--synth-hidden-layers", type=int, default=None)
    ff.add_argument("--synth-width", type=int, default=None)
    ff.add_argument("--synth-loss-weight", type=float, default=None)
    ff.add_argument("--eval-every", type=int, default=None)
    ff.add_argument("--limit-train", type=int, default=None, help="use only this many training examples")
    ff.add_argument("--config", type=Path, default=None, help="JSON file of TrainConfig fields (flags override it)")
    if rnn:
        rnn.add_arguments(parser.add_argument_group("recurrent tasks"))
    parser.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """A TrainConfig from ``--config`` (if given) overridden by every flag that was set."""
    values = json.loads(args.config.read_text()) if args.config else {}
    names = {f.name for f in fields(TrainConfig)}
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value is not False:
            values[name] = value
    if "method" not in values:
        values["method"] = "dni"
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    """Run ``sglab train``."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.task != CLASSIFY:
        return _rnn_cli().run(args)
    from sglab.train.loop import train
    from sglab.train.run_dir import RunDir

    if args.resume and args.out and RunDir(args.out).config.exists():
        saved = RunDir(args.out).read_config()["config"]
        config = TrainConfig.from_dict({**saved, **({"steps": args.steps} if args.steps else {})})
    else:
        config = config_from_args(args)
    out = args.out or Path("runs") / f"{config.model}{config.layers}-{config.method}-seed{config.seed}"
    if args.profile:
        summary = _train_profiled(config, out, progress=not args.no_progress)
    else:
        summary = train(config, out, progress=not args.no_progress, resume=args.resume).summary
    print(
        f"{summary['method']} {summary['model']}-{summary['layers']} on {summary['dataset']}: "
        f"test error {summary['final_test_error']:.4f} after {summary['steps']} steps "
        f"({summary['train_time_s']:.1f} s training); run directory {out}"
    )
    return 0


def _train_profiled(config: TrainConfig, out: Path, progress: bool) -> dict:
    """Train with the in-run op timer and save its CostProfile and Chrome trace next to the run."""
    from sglab.profile import profile_training, write_chrome_trace

    profile, timer = profile_training(config, out, progress=progress)
    profile.save(out / "profile.json")
    write_chrome_trace(out / "trace.json", timer)
    print(f"op costs of {profile.num_stages} stages: {out / 'profile.json'}; timeline: {out / 'trace.json'} (Perfetto)")
    return json.loads((out / "summary.json").read_text())
