"""Measure the machine sglab runs on and write a hardware spec the simulator reads unchanged.

    result = probe_hardware(processes=4)        # K = 4 local processes, one torch thread each
    result.save("machine.yaml")                 # the spec + machine.probe.json (raw numbers, provenance)
    simulate(profile, "machine.yaml", "dni")

One :func:`~sglab.dist.launch.launch` of ``K`` ranks measures, in turn:

1. **link**: rank 0 and rank 1 ping-pong a tensor of each size (4 B … 16 MiB by default) through
   :class:`~sglab.dist.transport.Transport`, the way ``sglab.dist`` moves activations (gloo on
   CPU; NCCL on ``cuda:rank`` when there are two GPUs or more). A one-way time is half a round
   trip; after ``warmup`` untimed round trips the median of ``repeats`` is kept per size, and
   ``time = latency + bytes / bandwidth`` is fitted to the medians by least squares on relative
   errors (:func:`fit_latency_bandwidth`), so 4-byte and 16 MiB messages weigh alike.
2. **op overhead**: rank 0 alone times a tiny op (a 1x4 Linear(4, 4) forward with autograd on)
   in batches of calls: the fixed cost every op pays, written as the devices' ``op_overhead_ns``.
3. **contention**: ranks ``0..k-1`` run the same matmul (``256x1024 @ 1024x1024`` by default)
   at once, for k = 1..K (then K..1 again, so a drift in the machine's load cancels); the
   slowdown at k is the median time at k over the median at 1.

The spec has K devices of speed 1 (one process alone, what an in-run profile measured) and the
curve as ``contention: {slowdown: [1, slowdown(2), ..., slowdown(K)]}``: the simulator slows every
compute op by slowdown(n) while n devices compute at once (processor sharing), so a pipeline's
fill and drain, or a locked schedule where one rank computes at a time, are not charged the
all-busy factor. Links are ``fully_connected`` (each pair its own full-duplex link, as the
ping-pong measured one pair), with the sender's measured post time as ``link.sender``, and each
device gets ``MemTotal / K`` of memory. Provenance (host, CPU, torch, backend, date, the fit) is
in ``description`` and ``sources``; every raw median is in the ``.probe.json``.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sglab.dist.launch import launch
from sglab.dist.transport import BACKWARD, FORWARD, Transport
from sglab.errors import UsageError

#: Message sizes of the ping-pong, bytes: 4 B, 16 B, ... 16 MiB.
DEFAULT_SIZES = tuple(4 ** i for i in range(1, 13))
#: The contention kernel: an (m x k) @ (k x n) matmul.
DEFAULT_KERNEL = (256, 1024, 1024)


@dataclass(frozen=True)
class LinkFit:
    """``time = latency_s + bytes / bandwidth_bytes_per_s`` fitted to medians; residuals relative to the times."""

    latency_s: float
    bandwidth_bytes_per_s: float  # inf: no measurable growth with size
    rms_relative_residual: float
    max_relative_residual: float


def fit_latency_bandwidth(sizes_bytes, times_s) -> LinkFit:
    """Least squares of ``t = a + n / B`` on relative errors, with ``a >= 0`` and ``1 / B >= 0``.

    Minimises ``sum(((a + b n_i) - t_i) / t_i) ** 2`` over ``a, b``; if the unconstrained
    optimum has a negative coefficient, that one is fixed at 0 and the other refitted.
    Exact timings give the exact latency and bandwidth back.
    """
    n = np.asarray(sizes_bytes, dtype=np.float64)
    t = np.asarray(times_s, dtype=np.float64)
    if n.shape != t.shape or n.ndim != 1 or len(n) < 2:
        raise UsageError(f"fit needs two or more (size, time) pairs, got {len(n)} sizes and {len(t)} times")
    if not (np.all(np.isfinite(t)) and np.all(t > 0) and np.all(n >= 0)):
        raise UsageError("fit needs sizes >= 0 and finite times > 0")
    if len(np.unique(n)) < 2:
        raise UsageError("fit needs at least two different sizes")
    design = np.stack([1.0 / t, n / t], axis=1)  # rows (1/t, n/t) · (a, b) ≈ 1
    (a, b), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    if a < 0:
        a, b = 0.0, float(np.sum(n / t) / np.sum((n / t) ** 2))
    if b < 0:
        a, b = float(np.sum(1 / t) / np.sum(1 / t ** 2)), 0.0
    relative = (a + b * n - t) / t
    return LinkFit(float(a), math.inf if b == 0 else float(1.0 / b), float(np.sqrt(np.mean(relative ** 2))),
                   float(np.max(np.abs(relative))))


def _median_ns(samples: list[int]) -> float:
    return float(np.median(np.asarray(samples, dtype=np.float64)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pingpong(ctx, plan: dict, device: torch.device, group) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Rank 0's one-way times (ns, half a round trip) per size, and (gloo) its time to post each send; rank 1 echoes."""
    transport = Transport(ctx.rank, timeout=ctx.timeout, on_wait=lambda peer, op, step: ctx.waiting_for(peer))
    peer, step, out, posts = 1 - ctx.rank, 0, {}, {}
    for size in plan["sizes"]:
        payload = torch.zeros(size, dtype=torch.uint8, device=device)
        times, post = [], []
        for _ in range(plan["warmup"] + plan["repeats"]):
            step += 1
            if group is None:  # gloo: exactly the transport sglab.dist uses
                if ctx.rank == 0:
                    start = time.perf_counter_ns()
                    transport.send(payload, peer, FORWARD, step, "SEND_F")
                    post.append(time.perf_counter_ns() - start)
                    transport.recv((size,), torch.uint8, peer, BACKWARD, step, "RECV_B")
                    times.append((time.perf_counter_ns() - start) // 2)
                else:
                    echo = transport.recv((size,), torch.uint8, peer, FORWARD, step, "RECV_F")
                    transport.send(echo, peer, BACKWARD, step, "SEND_B")
            else:  # NCCL: the same exchange on this rank's GPU (Transport's buffers live on the CPU)
                buffer = torch.empty_like(payload)
                start = time.perf_counter_ns()
                if ctx.rank == 0:
                    dist.isend(payload, peer, group=group).wait()
                    dist.irecv(buffer, peer, group=group).wait()
                else:
                    dist.irecv(buffer, peer, group=group).wait()
                    dist.isend(buffer, peer, group=group).wait()
                _sync(device)
                times.append((time.perf_counter_ns() - start) // 2)
        if ctx.rank == 0:
            out[size] = times[plan["warmup"]:]
            if post:
                posts[size] = post[plan["warmup"]:]
    transport.flush()
    return out, posts


def _op_overhead(plan: dict, device: torch.device) -> dict[str, Any]:
    """Per-call times (ns) of a tiny Linear forward, each sample the mean of ``calls`` calls."""
    layer = torch.nn.Linear(4, 4).to(device)
    x = torch.randn(1, 4, device=device)
    calls, samples = plan["overhead_calls"], []
    for i in range(plan["warmup"] + plan["repeats"]):
        _sync(device)
        start = time.perf_counter_ns()
        for _ in range(calls):
            layer(x)
        _sync(device)
        if i >= plan["warmup"]:
            samples.append((time.perf_counter_ns() - start) // calls)
    return {"op": "Linear(4, 4) forward of a 1x4 input, autograd on", "calls_per_sample": calls,
            "samples_ns": samples, "median_ns": _median_ns(samples)}


def _contention(ctx, plan: dict, device: torch.device) -> dict[int, list[int]]:
    """This rank's kernel times (ns) for every k it took part in (ranks 0..k-1 run at once)."""
    m, k_dim, n = plan["kernel"]
    generator = torch.Generator().manual_seed(ctx.rank)
    a = torch.randn(m, k_dim, generator=generator).to(device)
    b = torch.randn(k_dim, n, generator=generator).to(device)
    c = torch.empty(m, n, device=device)
    out: dict[int, list[int]] = {}
    K = ctx.world_size
    for k in [*range(1, K + 1), *range(K, 0, -1)]:
        dist.barrier()
        if ctx.rank >= k:
            continue
        times = out.setdefault(k, [])
        for i in range(plan["kernel_warmup"] + plan["kernel_repeats"]):
            _sync(device)
            start = time.perf_counter_ns()
            torch.mm(a, b, out=c)
            _sync(device)
            if i >= plan["kernel_warmup"]:
                times.append(time.perf_counter_ns() - start)
    dist.barrier()
    return out


def probe_worker(ctx, plan: dict) -> dict[str, Any]:
    """One rank of :func:`probe_hardware` (module level, so ``spawn`` can pickle it by name)."""
    device, group = torch.device("cpu"), None
    if plan["backend"] == "nccl":
        device = torch.device("cuda", ctx.rank)
        torch.cuda.set_device(device)
        group = dist.new_group(backend="nccl")
    if plan.get("fail_rank") == ctx.rank:
        raise RuntimeError(f"injected failure on rank {ctx.rank} (fail_rank)")
    result: dict[str, Any] = {"rank": ctx.rank}
    if ctx.rank < 2:
        result["pingpong"], result["post"] = _pingpong(ctx, plan, device, group)
    dist.barrier()
    if ctx.rank == 0:
        result["op_overhead"] = _op_overhead(plan, device)
    dist.barrier()
    result["kernel"] = _contention(ctx, plan, device)
    return result


def choose_backend(backend: str = "auto") -> str:
    """``nccl`` for ``auto`` when two CUDA devices or more are visible, else ``gloo``."""
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() and torch.cuda.device_count() > 1 else "gloo"
    if backend not in ("gloo", "nccl"):
        raise UsageError(f"--backend must be auto, gloo or nccl, got {backend!r}")
    if backend == "nccl" and not (torch.cuda.is_available() and torch.cuda.device_count() >= 2):
        raise UsageError("--backend nccl needs two CUDA devices or more; use gloo")
    return backend


@dataclass
class ProbeResult:
    """What :func:`probe_hardware` measured: ``spec`` (a hardware spec mapping) and ``report`` (raw numbers)."""

    spec: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write the spec (YAML for ``.yaml``/``.yml``, else JSON) and ``<stem>.probe.json``; both paths."""
        from sglab.dist.probe_spec import write_probe

        return write_probe(self, path)


def probe_hardware(processes: int = 2, *, sizes=DEFAULT_SIZES, repeats: int = 20, warmup: int = 3,
                   kernel=DEFAULT_KERNEL, kernel_repeats: int = 10, kernel_warmup: int = 2, overhead_calls: int = 200,
                   backend: str = "auto", timeout: float = 60.0, run_timeout: float | None = 600.0,
                   name: str | None = None, op_overhead: bool = True, fail_rank: int | None = None) -> ProbeResult:
    """Measure link, per-op overhead and contention with ``processes`` local ranks; see the module docstring.

    ``op_overhead`` False writes ``op_overhead_ns`` 0 into the spec (the report keeps the measurement).
    Raises :class:`~sglab.errors.UsageError` for bad arguments (naming the option) and
    :class:`~sglab.dist.launch.RankFailed` when a rank fails (``fail_rank`` injects one, for tests).
    """
    from sglab.dist.probe_spec import build_spec, cpu_model, memory_total_bytes

    _check_int("--processes", processes, 2)
    for flag, value, least in (("--repeats", repeats, 1), ("--warmup", warmup, 0), ("--kernel-repeats", kernel_repeats, 1),
                               ("--kernel-warmup", kernel_warmup, 0), ("--overhead-calls", overhead_calls, 1)):
        _check_int(flag, value, least)
    sizes = tuple(sizes)
    if len(set(sizes)) < 2 or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise UsageError(f"--sizes must list two different sizes or more, each an integer >= 1 byte, got {list(sizes)}")
    kernel = tuple(kernel)
    if len(kernel) != 3 or not all(isinstance(d, int) and d >= 1 for d in kernel):
        raise UsageError(f"--kernel must be three integers >= 1 (m x k x n), got {kernel}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"--timeout must be a number of seconds > 0, got {timeout:g}")
    backend = choose_backend(backend)
    if backend == "nccl" and processes > torch.cuda.device_count():
        raise UsageError(f"--processes {processes} with nccl needs one GPU per process; {torch.cuda.device_count()} "
                         "are visible")
    plan = {"backend": backend, "sizes": sorted(sizes), "repeats": repeats, "warmup": warmup, "kernel": kernel,
            "kernel_repeats": kernel_repeats, "kernel_warmup": kernel_warmup, "overhead_calls": overhead_calls,
            "op_overhead": op_overhead, "fail_rank": fail_rank}
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    wall = time.monotonic()
    ranks = launch(probe_worker, processes, plan, timeout=timeout, run_timeout=run_timeout, threads=1)
    machine = {"host": socket.gethostname(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
               "memory_total_bytes": memory_total_bytes(), "platform": platform.platform(),
               "torch_version": torch.__version__, "backend": backend, "threads_per_process": 1,
               "created": started, "probe_wall_s": round(time.monotonic() - wall, 3)}
    if backend == "nccl":
        machine["gpu_model"] = torch.cuda.get_device_name(0)
    return build_spec(ranks, plan, machine, processes, name)


def _check_int(flag: str, value, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise UsageError(f"{flag} must be an integer >= {least}, got {value!r}")
