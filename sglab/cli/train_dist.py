"""``sglab train --processes K`` (and ``--method gpipe|1f1b --microbatches M``): the multi-process part of ``train``.

A pipeline schedule is not a method the in-process trainer (or :class:`~sglab.training.config.ClassifyConfig`)
knows: it is backprop over microbatches. So ``--method gpipe`` sets the config's method to ``bprop``
and passes the schedule to :class:`sglab.dist.DistRun` as ``method``, with ``--microbatches``;
the run records it as ``pipeline`` (``{"method": "gpipe", "microbatches": 8}``) in ``config.json``,
the checkpoint manifest and ``summary.json``, and ``--resume`` reads it back from there.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sglab.cli.run_summary import describe
from sglab.errors import UsageError


def split_schedule(args: argparse.Namespace) -> tuple[argparse.Namespace, str | None]:
    """``args`` with a pipeline ``--method`` replaced by ``bprop``, and the schedule's name (None: not a pipeline)."""
    from sglab.methods import MethodError, get_method

    try:
        schedule = None if args.method is None else get_method(args.method)
    except MethodError:
        schedule = None  # not a registry name: the config says so, with the task's choices
    schedule = schedule.name if schedule is not None and schedule.pipelined else None
    if schedule is None:
        if args.microbatches is not None:
            raise UsageError("--microbatches applies to a pipeline schedule (--method gpipe or 1f1b) only")
        return args, None
    if (args.task or "classify") != "classify":
        raise UsageError(f"--method {args.method} (a pipeline schedule) applies to --task classify, not {args.task}")
    if args.processes is None and not args.resume:
        raise UsageError(f"--method {args.method} is a pipeline schedule, which runs with --processes "
                         "(one per stage): the in-process trainer has no pipelines")
    return argparse.Namespace(**{**vars(args), "method": "bprop"}), schedule


def distributed_plan(args: argparse.Namespace, config, schedule: str | None) -> tuple[int | None, dict[str, Any] | None]:
    """The processes to train with (None: in process) and the pipeline (``{"method", "microbatches"}``, or None).

    Both are the flags', or on ``--resume`` the checkpoint's: a distributed run continues distributed,
    a pipeline as the same pipeline unless the flags ask for another (which the resume then refuses).
    """
    pipeline = None if schedule is None else {"method": schedule, "microbatches": args.microbatches}
    if args.resume:
        from sglab.training.run_dir import RunDir

        checkpoint = RunDir(args.out).load_checkpoint()
        saved = checkpoint.get("processes")
        if saved is not None and args.processes not in (None, saved):
            raise UsageError(f"the run in {args.out} was trained with --processes {saved}; resume it with that")
        if saved is None and (args.processes is not None or schedule is not None):
            raise UsageError(f"the run in {args.out} was trained in process; resume it without --processes or a "
                             "pipeline --method")
        saved_pipeline = checkpoint.get("pipeline")
        if pipeline is None and args.method is None:
            pipeline = saved_pipeline
        elif pipeline is not None and pipeline["microbatches"] is None and saved_pipeline is not None:
            pipeline["microbatches"] = saved_pipeline["microbatches"]
        return saved, pipeline
    if args.processes is not None and config.task != "classify":
        raise UsageError(f"--processes applies to --task classify (a feed-forward chain), not {config.task_name}")
    if args.processes is not None and getattr(config, "validation", 0):
        raise UsageError("--validation is not scored by --processes runs yet; choose settings in process (drop "
                         "--processes)")
    if pipeline is not None and pipeline["microbatches"] is None:
        from sglab.methods import get_method

        pipeline["microbatches"] = get_method(schedule).default_microbatches(config.layers)
    return args.processes, pipeline


def run_distributed(args: argparse.Namespace, config, out: Path, processes: int, pipeline: dict[str, Any] | None) -> int:
    """Train ``config`` with ``processes`` local processes (a pipeline if given) into ``out``; print the result."""
    from sglab.data import load_dataset
    from sglab.dist.run import DistRun, check_supported, train_distributed

    if args.profile:
        raise UsageError("--processes always writes the measured trace (trace.csv, trace.json); drop --profile")
    method, microbatches = (None, None) if pipeline is None else (pipeline["method"], pipeline["microbatches"])
    check_supported(config, processes, method, microbatches)  # before the data loads: what cannot work says so at once
    dataset = load_dataset(config.dataset, config.data_dir, config.download, config.limit_train, config.limit_test)
    result = train_distributed(DistRun(config, dataset, processes=processes, method=method, microbatches=microbatches),
                               out, resume=args.resume, threads=args.threads or 1, progress=not args.no_progress)
    print(f"{describe(result.summary)}; {processes} process{'es' if processes > 1 else ''}; run directory {out} "
          f"(trace.json opens in Perfetto)")
    return 0
