"""``sglab train``: train a task (classify, copy, repeat-copy, charlm, two-rnn, rnn-chain) with a method into a run directory.

    sglab train --method dni --layers 4 --steps 2000 --out runs/dni4
    sglab train --task copy --method dni -T 3 --steps 1500 --out runs/copy-dni-T3
    sglab train --resume --out runs/dni4 --steps 4000          # continue: the checkpoint's config, more steps
    sglab train --method dni --layers 4 --processes 4 --out runs/dni4-dist   # one process per stage (gloo)
    sglab train --method gpipe --microbatches 8 --layers 4 --processes 4      # a pipeline of bprop, 8 microbatches
    sglab train --task rnn-chain --ratios 2 2 --cut-links 1 --steps 300      # three RNNs, link 1's DNI cut

Every flag sets the config field of the same name (see ``sglab.training.config``); a flag the
task has no field for is an error. With ``--resume`` the config is the checkpoint's, and a flag
that would change anything but ``--steps``, ``--eval-every`` or ``--log-every`` is an error
naming it.

``--processes K`` trains a classify run with K local processes through :mod:`sglab.dist`: K
equal to ``--layers`` puts one stage on each process, K = 1 runs the whole chain in one
process; the run directory is the same, plus a checkpoint per rank and the measured trace
(``trace.csv``, ``trace.json``). A resumed distributed run continues distributed.
``--method gpipe`` or ``1f1b`` (with ``--processes``, one per stage) trains the chain by backprop
over ``--microbatches`` per step on that pipeline schedule: the config's method is ``bprop``, and
``config.json`` and ``summary.json`` record the schedule as ``pipeline`` (:mod:`sglab.cli.train_dist`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sglab.cli import positive_int, read_config_file
from sglab.cli.run_summary import describe
from sglab.config import ConfigError
from sglab.methods import method_names
from sglab.training.config import COMPILE_MODES, TASKS, config_fields

#: Flags that do not set a config field of the same name.
_NOT_FIELDS = {"task", "out", "no_progress", "threads", "resume", "profile", "config", "aux", "no_b_gradient",
               "no_synth_context", "func", "command", "debug", "processes", "microbatches"}


def register(subparsers) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train", help="train a task with a method (bprop, dni, cdni, ...) and write a run directory",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = parser.add_argument_group("every task")
    common.add_argument("--task", choices=list(TASKS), default=None, help="what to learn (default: classify, or the "
                                                                           "checkpoint's with --resume)")
    methods = {r: ", ".join(method_names(r)) for r in ("train", "recurrent", "two-rnn", "rnn-chain")}
    common.add_argument("--method", default=None, help=f"classify: {methods['train']}, or with --processes the "
                                                       f"pipelines gpipe, 1f1b; copy/charlm: {methods['recurrent']}; "
                                                       f"two-rnn: {methods['two-rnn']}; rnn-chain: {methods['rnn-chain']}")
    common.add_argument("--steps", type=positive_int, default=None, help="training steps (minibatches)")
    common.add_argument("--lr", type=float, default=None, help="Adam learning rate")
    common.add_argument("--synth-lr", type=float, default=None, help="synthesizer learning rate (default: --lr)")
    common.add_argument("--batch-size", type=positive_int, default=None)
    common.add_argument("--seed", type=int, default=None)
    common.add_argument("--eval-every", type=positive_int, default=None, help="steps between evaluations and checkpoints")
    common.add_argument("--log-every", type=positive_int, default=None, help="steps between training-metric rows")
    common.add_argument("--probe-every", type=positive_int, default=None,
                        help="every N steps compare each interface's synthetic gradient with the true one: "
                             "--out/fidelity.csv (changes nothing the run computes)")
    common.add_argument("--synth-hidden-layers", type=int, default=None)
    common.add_argument("--synth-width", type=int, default=None)
    common.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<task>-<method>-...)")
    common.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    common.add_argument("--config", type=Path, default=None, help="JSON file of config fields (flags override it)")
    common.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    common.add_argument("--profile", action="store_true", help="time every op: --out/trace.csv and trace.json "
                                                               "(Perfetto); classify and rnn-chain also write profile.json")
    common.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (1 is often fastest "
                                                                           "for small models)")
    common.add_argument("--no-progress", action="store_true", help="no progress bar")
    common.add_argument("--processes", type=positive_int, default=None,
                        help="classify: train with this many local processes (gloo): --layers (one stage each) or 1; "
                             "writes the measured trace.csv/trace.json too")
    common.add_argument("--microbatches", type=positive_int, default=None,
                        help="--method gpipe/1f1b: microbatches per step (default 4 per process)")
    _add_classify(parser.add_argument_group("classify (feed-forward FCN / CNN)"))
    _add_recurrent(parser.add_argument_group("copy, repeat-copy, charlm (one recurrent network)"))
    _add_two_rnn(parser.add_argument_group("two-rnn"))
    _add_rnn_chain(parser.add_argument_group("rnn-chain (also --hidden, --message-size, --synth-scale, --eval-episodes)"))
    parser.set_defaults(func=run)


def _add_classify(group) -> None:
    group.add_argument("--dataset", default=None, help="embedded (default, offline), mnist, cifar10 or a .npz path")
    group.add_argument("--data-dir", default=None, help="where mnist/cifar10 files live (or $SGLAB_DATA_DIR)")
    group.add_argument("--download", action="store_true", default=None, help="download the dataset if missing")
    group.add_argument("--model", choices=["fcn", "cnn"], default=None)
    group.add_argument("--layers", type=int, default=None, help="number of layers (= stages)")
    group.add_argument("--width", type=int, default=None, help="FCN hidden width")
    group.add_argument("--channels", type=int, default=None, help="CNN channels")
    group.add_argument("--update-prob", type=float, default=None, help="per-stage update probability (stochastic)")
    group.add_argument("--unlock-prob", type=float, default=None, help="probability of not waiting for the true "
                                                                       "gradient (mixed)")
    group.add_argument("--synthesizer", choices=["auto", "linear", "mlp", "conv"], default=None)
    group.add_argument("--synth-loss-weight", type=float, default=None, help="factor on the synthesizer's loss")
    group.add_argument("--synth-loss", choices=["l2", "sobolev", "critic"], default=None,
                       help="what trains the synthesizers: l2 regression (default, the paper), sobolev (also match "
                            "directional derivatives) or critic (a learned loss whose gradient is the synthetic one)")
    group.add_argument("--sobolev-weight", type=float, default=None, help="sobolev: weight of the derivative term (0.01)")
    group.add_argument("--sobolev-directions", type=int, default=None, help="sobolev: random directions per step (1)")
    group.add_argument("--sobolev-distribution", choices=["rademacher", "gaussian"], default=None,
                       help="sobolev: the directions' distribution (rademacher)")
    group.add_argument("--critic-value-weight", type=float, default=None, help="critic: weight of the value term (1e-4)")
    group.add_argument("--fused-adam", action="store_true", default=None,
                       help="fused Adam for every optimizer (faster; not bitwise the default's updates)")
    group.add_argument("--compile", choices=list(COMPILE_MODES), default=None,
                       help="torch.compile every stage and synthesizer in this mode (for GPUs; reduce-overhead "
                            "adds CUDA graphs; compiles for tens of seconds first)")
    group.add_argument("--limit-train", type=int, default=None, help="use only this many training examples")
    group.add_argument("--validation", type=float, default=None,
                       help="fraction of the training set held out and scored as val_error (choose settings on it)")


def _add_recurrent(group) -> None:
    group.add_argument("-T", "--truncation", type=int, default=None, help="ticks per chunk (default 5)")
    group.add_argument("--hidden", type=int, default=None, help="recurrent core width")
    group.add_argument("--core", choices=["lstm", "gru", "rnn"], default=None, help="recurrent cell (default lstm)")
    group.add_argument("--synth-scale", type=float, default=None, help="factor on the synthetic gradient "
                                                                       "(default 0.1; two-rnn 1.0)")
    group.add_argument("--aux", action="store_true", help="DNI+Aux: the same as --method dni-aux")
    group.add_argument("--aux-weight", type=float, default=None, help="weight of the DNI+Aux loss (default 1)")
    group.add_argument("--clip", type=float, default=None, help="gradient-norm clip per update, 0 for none (default 1)")
    group.add_argument("--bits", type=int, default=None, help="copy: bits per vector (default 8)")
    group.add_argument("--min-length", type=int, default=None, help="copy: first sequence length N (default 1)")
    group.add_argument("--max-length", type=int, default=None, help="copy: stop once this length is solved (default 64)")
    group.add_argument("--max-repeats", type=int, default=None, help="repeat-copy: largest repeat count (default 3)")
    group.add_argument("--solved-threshold", dest="threshold", type=float, default=None,
                       help="copy: bits wrong per sequence under which N is solved (default 0.15)")
    group.add_argument("--solved-window", dest="window", type=int, default=None,
                       help="copy: batches averaged for the solved test (default 10)")
    group.add_argument("--text", default=None, help="charlm: text file to model")
    group.add_argument("--valid-text", default=None, help="charlm: validation file (default: last 10%% of --text)")
    group.add_argument("--text-format", choices=["raw", "ptb"], default=None, help="charlm: raw text or ptb files")
    group.add_argument("--seq-len", type=int, default=None, help="charlm: characters per step and stream (default 64)")
    group.add_argument("--eval-chars", type=int, default=None, help="charlm: validate on at most this many characters")


def _add_two_rnn(group) -> None:
    group.add_argument("--tick-ratio", type=int, default=None, help="B ticks once every N ticks of A (default 4)")
    group.add_argument("--b-ticks", type=int, default=None, help="B's ticks per episode (default 3)")
    group.add_argument("--hidden-a", type=int, default=None, help="A's core width (default 64)")
    group.add_argument("--hidden-b", type=int, default=None, help="B's core width (default 32)")
    group.add_argument("--message-size", type=int, default=None, help="width of A's message (default 16); "
                                                                      "rnn-chain: of every message (default 8)")
    group.add_argument("--eval-episodes", type=int, default=None, help="held-out episodes per evaluation (default 512)")
    group.add_argument("--no-b-gradient", action="store_true", help="the ablation: the same as --method nobprop")
    group.add_argument("--no-synth-context", action="store_true", help="the synthesizer sees only the message: "
                                                                       "the same as --method dni")


def _add_rnn_chain(group) -> None:
    group.add_argument("--ratios", type=positive_int, nargs="+", default=None,
                       help="network k ticks once every RATIOS[k-1] ticks of network k-1; K = len + 1 (default 2 2)")
    group.add_argument("--last-ticks", type=positive_int, default=None, help="the last network's ticks per episode (3)")
    group.add_argument("--symbols", type=positive_int, default=None, help="network 0's alphabet; odd ones count (6)")
    group.add_argument("--cut-links", type=int, nargs="+", default=None,
                       help="links (k: network k to k+1) whose synthetic gradient is cut: the ablations")


def given_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the command line sets: every flag given, the shorthand flags as methods."""
    values = {k: v for k, v in vars(args).items() if k not in _NOT_FIELDS and v is not None}
    task = args.task or "classify"
    for flag, method, tasks in (("aux", "dni-aux", ("copy", "repeat-copy", "charlm")),
                                ("no_b_gradient", "nobprop", ("two-rnn",)), ("no_synth_context", "dni", ("two-rnn",))):
        if getattr(args, flag, False):
            if args.task is not None and task not in tasks:
                raise ConfigError(f"--{flag.replace('_', '-')} applies to --task {' or '.join(tasks)}, not {task}")
            if values.get("method", method) != method:
                raise ConfigError(f"--{flag.replace('_', '-')} asks for method {method} but --method is {values['method']!r}")
            values["method"] = method
    if values.get("clip") == 0:
        values["clip"] = None
    return values


def build_config(args: argparse.Namespace):
    """The task's config: the checkpoint's (``--resume``) or ``--config``'s, overridden by the flags given."""
    flags = given_fields(args)
    task, base = _base(args)
    cls = TASKS[task][0]
    foreign = sorted(set(flags) - set(config_fields(cls)))
    if foreign:
        names = ", ".join("--" + f.replace("_", "-") for f in foreign)
        raise ConfigError(f"{names} do{'es' if len(foreign) == 1 else ''} not apply to --task {task}")
    from sglab.training.config import make_config

    values = {**base, **flags}
    if task == "classify" and "method" not in values:
        values["method"] = "dni"
    return make_config(task, values)


def _base(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if args.resume:
        if args.out is None:
            raise ConfigError("--resume needs --out: the run directory to continue")
        if args.config is not None:
            raise ConfigError("--resume reads the config from the checkpoint; drop --config")
        from sglab.training.run_dir import RunDir

        checkpoint = RunDir(args.out).load_checkpoint()
        if args.task and args.task != checkpoint["task"] and not (args.task == "copy" and checkpoint["task"] == "repeat-copy"):
            raise ConfigError(f"--task {args.task} but the checkpoint in {args.out} is of task {checkpoint['task']}")
        return checkpoint["task"], dict(checkpoint["config"])
    task = args.task or "classify"
    return task, read_config_file(args.config) if args.config else {}


def run(args: argparse.Namespace) -> int:
    """Run ``sglab train``."""
    import torch

    from sglab.cli.train_dist import distributed_plan, run_distributed, split_schedule
    from sglab.training.loop import train

    if args.threads:
        torch.set_num_threads(args.threads)
    args, schedule = split_schedule(args)  # a pipeline --method trains bprop on a schedule (sglab.cli.train_dist)
    config = build_config(args)
    processes, pipeline = distributed_plan(args, config, schedule)
    out = args.out or Path("runs") / _default_name(config, pipeline)
    if processes is not None:
        return run_distributed(args, config, out, processes, pipeline)
    timer = None
    if args.profile:
        from sglab.config import resolve_device
        from sglab.profiling.timer import OpTimer

        timer = OpTimer(resolve_device(config.device))
    result = train(config, out, resume=args.resume, progress=not args.no_progress, observer=timer)
    if timer is not None:
        _write_profile(config, out, timer)
    print(f"{describe(result.summary)}; run directory {out}")
    return 0


def _default_name(config, pipeline: dict[str, Any] | None = None) -> str:
    if config.task == "classify":
        method = config.method if pipeline is None else f"{pipeline['method']}-m{pipeline['microbatches']}"
        return f"{config.model}{config.layers}-{method}-seed{config.seed}"
    if config.task == "two-rnn":
        return f"two-rnn-{config.method}-N{config.tick_ratio}-seed{config.seed}"
    if config.task == "rnn-chain":
        cut = "".join(f"-cut{k}" for k in config.cut_links)
        return f"rnn-chain-{config.method}-r{'x'.join(map(str, config.ratios))}{cut}-seed{config.seed}"
    return f"{config.task_name}-{config.method}-T{config.truncation}-seed{config.seed}"


def _write_profile(config, out: Path, timer) -> None:
    from sglab.io import atomic_write_text
    from sglab.trace import write_chrome_trace

    trace = timer.trace()
    atomic_write_text(out / "trace.csv", trace.to_csv(index=False))
    write_chrome_trace(out / "trace.json", trace, f"sglab train {config.task_name} {config.method}")
    written = [out / "trace.csv", out / "trace.json"]
    profile = None
    if config.task == "classify":
        from sglab.profiling.inrun import profile_from_timer
        from sglab.training.run_dir import RunDir

        data = RunDir(out).read_config()["data"]  # what the run trained on: its shapes size the profile
        skip = min(5, max(timer.num_steps - 1, 0))
        profile = profile_from_timer(timer, config, tuple(data["input_shape"]), data["num_classes"], skip_steps=skip,
                                     notes=f"timed inside sglab train, first {skip} of {timer.num_steps} steps left out")
    elif config.task == "rnn-chain":
        from sglab.costprofile import ProfileError
        from sglab.profiling.rnn_chain import profile_from_run

        try:
            profile = profile_from_run(timer, config, skip_steps=min(5, max(timer.num_steps - 1, 0)))
        except ProfileError as err:  # a cut link leaves a network with nothing but F to time
            print(f"no profile.json: {err}")
    if profile is not None:
        profile.save(out / "profile.json")
        written.insert(0, out / "profile.json")
    print("op timings: " + ", ".join(map(str, written)) + " (trace.json opens in Perfetto)")
