"""The recurrent tasks of ``sglab train``: ``--task copy | repeat-copy | charlm | two-rnn``.

``sglab.train.cli`` owns the ``train`` subcommand and its common options (``--method``,
``--steps``, ``--lr``, ``--batch-size``, ``--seed``, ``--out``, ``--device``, ``--no-progress``,
and ``--eval-every``, ``--synth-hidden-layers``, ``--synth-width`` which are shared with the
feed-forward task); this module adds the options only recurrent tasks have and runs them.

    sglab train --task copy --method dni -T 3 --steps 1500 --out runs/copy-dni-T3
    sglab train --task charlm --text ../shared/data/tinyshakespeare.txt --method bptt -T 5
    sglab train --task two-rnn --method dni --tick-ratio 4
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sglab.io import provenance
from sglab.rnn.bptt import METHODS, BPTTConfig
from sglab.rnn.model import CORES
from sglab.rnn.runs import CharLMRunConfig, CopyRunConfig, RunOutput, train_charlm, train_copy
from sglab.rnn.tasks import TEXT_FORMATS, TaskError
from sglab.rnn.two_rnn import TWO_RNN_METHODS, TwoRNNConfig, train_two_rnn

#: The ``--task`` values this module runs.
RNN_TASKS = ("copy", "repeat-copy", "charlm", "two-rnn")


def add_arguments(parser) -> None:
    """Add the recurrent-only options to ``parser`` (a parser or an argument group)."""
    parser.add_argument("-T", "--truncation", type=int, default=None, help="ticks per chunk / truncation length T (default 5; two-rnn: use --tick-ratio)")
    parser.add_argument("--hidden", type=int, default=None, help="recurrent core width")
    parser.add_argument("--core", choices=CORES, default=None, help="recurrent cell (default lstm)")
    parser.add_argument("--synth-scale", type=float, default=None, help="factor on the synthetic gradient (default 0.1; two-rnn 1.0)")
    parser.add_argument("--synth-lr", type=float, default=None, help="synthesizer learning rate (default: --lr)")
    parser.add_argument("--aux", action="store_true", help="DNI+Aux: same as --method dni-aux")
    parser.add_argument("--aux-weight", type=float, default=None, help="weight of the DNI+Aux loss (default 1)")
    parser.add_argument("--clip", type=float, default=None, help="gradient-norm clip per update, 0 for none (default 1)")
    copy = "copy / repeat-copy: "
    parser.add_argument("--bits", type=int, default=None, help=copy + "bits per vector (default 8)")
    parser.add_argument("--min-length", type=int, default=None, help=copy + "first sequence length N (default 1)")
    parser.add_argument("--max-length", type=int, default=None, help=copy + "stop once this length is solved (default 64)")
    parser.add_argument("--max-repeats", type=int, default=None, help="repeat-copy: largest repeat count (default 3)")
    parser.add_argument("--solved-threshold", type=float, default=None, help=copy + "bits wrong per sequence under which N is solved (default 0.15)")
    parser.add_argument("--solved-window", type=int, default=None, help=copy + "batches averaged for the solved test (default 10)")
    parser.add_argument("--text", type=Path, default=None, help="charlm: text file to model")
    parser.add_argument("--valid-text", type=Path, default=None, help="charlm: separate validation file (default: last 10%% of --text)")
    parser.add_argument("--text-format", choices=TEXT_FORMATS, default=None, help="charlm: raw text or ptb character files (default raw)")
    parser.add_argument("--seq-len", type=int, default=None, help="charlm: characters per step and stream (default 64)")
    parser.add_argument("--eval-chars", type=int, default=None, help="charlm: validate on at most this many characters")
    parser.add_argument("--tick-ratio", type=int, default=None, help="two-rnn: B ticks once every N ticks of A (default 4)")
    parser.add_argument("--no-b-gradient", action="store_true", help="two-rnn ablation: A gets no gradient from B (method none)")
    parser.add_argument("--no-synth-context", action="store_true", help="two-rnn: synthesizer sees only the message, not B's target")


def _given(args: argparse.Namespace, **names: str) -> dict[str, Any]:
    """``{field: args.<attr>}`` for each ``field=attr`` whose value was given on the command line."""
    found = {}
    for field_name, attr in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            found[field_name] = value
    return found


def _method(args: argparse.Namespace, allowed: tuple[str, ...]) -> str:
    method = args.method or "dni"
    if getattr(args, "aux", False):
        if method not in ("dni", "dni-aux"):
            raise TaskError(f"--aux asks for dni-aux but --method is {method!r}")
        method = "dni-aux"
    if method not in allowed:
        raise TaskError(f"task {args.task} has no method {method!r}; choose one of: {', '.join(allowed)}")
    return method


def _training(args: argparse.Namespace) -> BPTTConfig:
    values = _given(
        args,
        truncation="truncation",
        lr="lr",
        synth_lr="synth_lr",
        synth_scale="synth_scale",
        synth_hidden_layers="synth_hidden_layers",
        synth_width="synth_width",
        aux_weight="aux_weight",
    )
    if getattr(args, "clip", None) is not None:
        values["clip"] = args.clip or None
    return BPTTConfig(method=_method(args, METHODS), **values).validate()


def _common(args: argparse.Namespace, device: str) -> dict[str, Any]:
    return {**_given(args, steps="steps", batch_size="batch_size", seed="seed", hidden="hidden", core="core"), "device": device}


def build_config(args: argparse.Namespace, device: str = "cpu") -> CopyRunConfig | CharLMRunConfig | TwoRNNConfig:
    """The validated dataclass config a ``sglab train --task <recurrent task>`` command line asks for."""
    if args.task in ("copy", "repeat-copy"):
        task = _given(
            args,
            bits="bits",
            min_length="min_length",
            max_length="max_length",
            max_repeats="max_repeats",
            threshold="solved_threshold",
            window="solved_window",
        )
        return CopyRunConfig(repeat=args.task == "repeat-copy", training=_training(args), **task, **_common(args, device)).validate()
    if args.task == "charlm":
        task = _given(args, valid_text="valid_text", text_format="text_format", seq_len="seq_len", eval_every="eval_every", eval_chars="eval_chars")
        text = str(args.text) if getattr(args, "text", None) else ""
        if task.get("valid_text") is not None:
            task["valid_text"] = str(task["valid_text"])
        return CharLMRunConfig(text=text, training=_training(args), **task, **_common(args, device)).validate()
    if args.task == "two-rnn":
        if getattr(args, "truncation", None) is not None:
            raise TaskError("two-rnn has no -T/--truncation: network A's chunk is B's tick, set it with --tick-ratio")
        method = "none" if getattr(args, "no_b_gradient", False) else _method(args, TWO_RNN_METHODS)
        common = _common(args, device)
        hidden = common.pop("hidden", None)
        common.pop("core", None)
        values = _given(args, lr="lr", synth_lr="synth_lr", synth_scale="synth_scale", tick_ratio="tick_ratio", eval_every="eval_every")
        if hidden is not None:
            values["hidden_a"] = hidden
        config = TwoRNNConfig(method=method, synth_context=not getattr(args, "no_synth_context", False), **values, **common)
        return config.validate()
    raise TaskError(f"unknown recurrent task {args.task!r}; choose one of: {', '.join(RNN_TASKS)}")


def _train(config, progress: bool) -> RunOutput:
    if isinstance(config, CopyRunConfig):
        return train_copy(config, progress)
    if isinstance(config, CharLMRunConfig):
        return train_charlm(config, progress)
    return train_two_rnn(config, progress)


def _default_out(args: argparse.Namespace, config) -> Path:
    if isinstance(config, TwoRNNConfig):
        label = f"{config.method}-N{config.tick_ratio}"
    else:
        label = f"{config.training.method}-T{config.training.truncation}"
    return Path("runs") / f"{args.task}-{label}-seed{config.seed}"


def run(args: argparse.Namespace) -> int:
    """Train the recurrent task ``args.task`` and write its run directory into ``args.out``."""
    from sglab.train.loop import resolve_device
    from sglab.train.run_dir import RunDir

    if getattr(args, "resume", False):
        raise TaskError(f"--resume is not supported for --task {args.task}; start a new run")
    device = resolve_device(args.device or "auto")
    config = build_config(args, str(device))
    run_dir = RunDir(args.out or _default_out(args, config))
    run_dir.write_config({"task": args.task, "config": config.to_dict(), "seed": config.seed, "device": str(device), "provenance": provenance()})
    output = _train(config, progress=not args.no_progress)
    run_dir.write_metrics(output.metrics)
    run_dir.write_summary({**output.summary, "device": str(device)})
    print(_describe(output.summary) + f"; run directory {run_dir.path}")
    return 0


def _describe(summary: dict[str, Any]) -> str:
    task = summary["task"]
    if task in ("copy", "repeat-copy"):
        return f"{task} {summary['method']} T={summary['truncation']}: longest length solved {summary['longest_solved']} in {summary['steps']} steps"
    if task == "charlm":
        return f"charlm {summary['method']} T={summary['truncation']}: validation {summary['valid_bpc']:.3f} bits per character"
    return (
        f"two-rnn {summary['method']} N={summary['tick_ratio']}: test accuracy A {summary['test_accuracy_a']:.3f}, "
        f"B {summary['test_accuracy_b']:.3f} (B's majority guess {summary['chance_b']:.3f})"
    )

