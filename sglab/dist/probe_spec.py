"""The numbers of :func:`sglab.dist.hardware_probe.probe_hardware` turned into a hardware spec, a sidecar and a summary.

``build_spec`` makes the spec mapping (checked by :func:`sglab.sim.spec.hardware_from_dict`, so
what is written is what ``sglab simulate --hardware`` accepts) and the report of raw medians;
``write_probe`` writes both; ``format_probe`` is the text ``sglab hardware probe`` prints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sglab.errors import SglabError
from sglab.io import atomic_write_json, atomic_write_text, strict_json
from sglab.profiling.inrun import device_name

if TYPE_CHECKING:
    from sglab.dist.hardware_probe import ProbeResult

REPORT_SCHEMA = "sglab.hardware_probe"
#: An rms relative residual above this says the medians do not follow latency + bytes / bandwidth.
RESIDUAL_WARNING = 0.2


def fit_warning(rms_relative_residual: float) -> str:
    """A warning when the link fit is poor (empty when it is not)."""
    if rms_relative_residual <= RESIDUAL_WARNING:
        return ""
    return (f"WARNING: the link fit's rms relative residual is {rms_relative_residual:.2f} (> {RESIDUAL_WARNING:g}): "
            "the medians do not follow latency + bytes / bandwidth (another load on the machine delaying the "
            "processes' wake-ups?); see the samples in the .probe.json and probe again on a quiet machine")


def _median(values) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def cpu_model() -> str:
    """The CPU's model name (the profiler's :func:`~sglab.profiling.inrun.device_name`)."""
    return device_name(torch.device("cpu"))


def memory_total_bytes() -> int | None:
    """MemTotal of /proc/meminfo in bytes (None where there is none)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def sidecar_path(path: str | Path) -> Path:
    """``machine.yaml`` → ``machine.probe.json``: where the raw numbers go."""
    path = Path(path)
    return path.with_name(f"{path.stem}.probe.json")


def build_spec(ranks: list[dict], plan: dict, machine: dict, processes: int, name: str | None) -> "ProbeResult":
    """The spec and the report from every rank's measurements (see :mod:`sglab.dist.hardware_probe`)."""
    from sglab.dist.hardware_probe import LinkFit, ProbeResult, fit_latency_bandwidth
    from sglab.sim.spec import hardware_from_dict

    pingpong = ranks[0]["pingpong"]
    sizes = sorted(pingpong)
    medians_ns = [_median(pingpong[s]) for s in sizes]
    fit: LinkFit = fit_latency_bandwidth(sizes, [t / 1e9 for t in medians_ns])
    posts = ranks[0].get("post") or {}
    post_medians_ns = [_median(posts[s]) for s in sizes] if posts else []
    post_fit = fit_latency_bandwidth(sizes, [t / 1e9 for t in post_medians_ns]) if posts else None
    overhead = ranks[0]["op_overhead"]
    rows = []
    for k in range(1, processes + 1):
        pooled = [t for r in ranks[:k] for t in r["kernel"][k]]
        rows.append({"processes": k, "median_ns": _median(pooled),
                     "per_rank_median_ns": [_median(r["kernel"][k]) for r in ranks[:k]], "samples": len(pooled)})
    for row in rows:
        row["slowdown"] = row["median_ns"] / rows[0]["median_ns"]
    link = _link_fields(fit)
    latency_ns, bandwidth = link["latency_ns"], link["bandwidth_bytes_per_s"]
    memory = machine.get("memory_total_bytes")
    m, kd, n = plan["kernel"]
    where = (f"{machine['host']} ({machine['cpu_model']}, {machine['cpu_count']} CPUs"
             + (f", {machine['gpu_model']}" if "gpu_model" in machine else "") + ")")
    # Speed 1 is one process alone (what an in-run profile measured); the slowdown applies only while
    # that many processes compute at once, which the simulator tracks op by op (processor sharing).
    device: dict[str, Any] = {"count": processes, "name": "proc", "speed": 1.0}
    if plan.get("op_overhead", True):
        device["op_overhead_ns"] = int(round(overhead["median_ns"]))
    if memory:
        device["memory_bytes"] = memory // processes
    bandwidth_text = _bandwidth_text(fit.bandwidth_bytes_per_s)
    spec = {
        "name": name or f"{machine['host']}-{processes}proc",
        "description": (f"MEASURED by sglab hardware probe on {where} at {machine['created']}: {processes} local "
                        f"processes, 1 torch thread each, torch {machine['torch_version']}, {machine['backend']}"),
        "hypothetical": False,
        "sources": [
            f"link: one-way time (half a {machine['backend']} round trip through sglab.dist.Transport) = latency + "
            f"bytes / bandwidth, least squares on relative errors over the medians of {plan['repeats']} round trips "
            f"({plan['warmup']} warm-up) at {len(sizes)} sizes {sizes[0]}..{sizes[-1]} B: latency "
            f"{latency_ns / 1e3:.4g} us, bandwidth {bandwidth_text}, rms relative residual "
            f"{fit.rms_relative_residual:.3g} (max {fit.max_relative_residual:.3g}); ASSUMED: every pair of "
            "processes has such a full-duplex link of its own",
            f"speed 1 = one process alone; contention.slowdown[k-1] = slowdown of a {m}x{kd} @ {kd}x{n} float32 "
            f"matmul while k processes run it at once (median over the median with one process): "
            + ", ".join(f"k={r['processes']}: {r['slowdown']:.3f}" for r in rows)
            + "; the simulator slows every compute op by it while k devices compute (processor sharing)",
            (f"op_overhead_ns: median per-call time of a {overhead['op']}, one process"
             if "op_overhead_ns" in device else "op_overhead_ns: 0 (asked for; the measurement is in the .probe.json)"),
            *([f"link.sender: the sending rank's own time to post a send (gloo copies into the socket in the "
               f"caller), latency + bytes / bandwidth fitted the same way to the medians of the posts: "
               f"{post_fit.latency_s * 1e6:.4g} us + bytes / {_bandwidth_text(post_fit.bandwidth_bytes_per_s)}"] if post_fit else []),
            "memory_bytes: MemTotal of /proc/meminfo / processes" if memory else "memory: not known (unlimited)",
            "raw medians, fit and machine: the .probe.json next to this spec",
        ] + ([warning] if (warning := fit_warning(fit.rms_relative_residual)) else []),
        "devices": device,
        "topology": "fully_connected",
        "link": {"latency_ns": latency_ns, "bandwidth_bytes_per_s": bandwidth, "duplex": True,
                 **({"sender": _link_fields(post_fit)} if post_fit else {})},
        "placement": "blocked",
        "contention": {"slowdown": [round(r["slowdown"], 6) for r in rows]},
    }
    hardware_from_dict(spec)  # what is written must load
    report = {
        "schema": REPORT_SCHEMA, "version": 1, "machine": machine,
        "plan": {k: v for k, v in plan.items() if k != "fail_rank"},
        "link": {"sizes_bytes": sizes, "one_way_median_ns": medians_ns,
                 "one_way_min_ns": [min(pingpong[s]) for s in sizes],
                 "one_way_samples_ns": [pingpong[s] for s in sizes],
                 "fit": {"latency_ns": fit.latency_s * 1e9, "bandwidth_bytes_per_s": fit.bandwidth_bytes_per_s,
                         "rms_relative_residual": fit.rms_relative_residual,
                         "max_relative_residual": fit.max_relative_residual,
                         "fitted_ns": [fit.latency_s * 1e9 + s * 1e9 / fit.bandwidth_bytes_per_s for s in sizes]},
                 "post_median_ns": post_medians_ns, "post_samples_ns": [posts[s] for s in sizes] if posts else [],
                 "post_fit": {"latency_ns": post_fit.latency_s * 1e9,
                              "bandwidth_bytes_per_s": post_fit.bandwidth_bytes_per_s} if post_fit else None},
        "op_overhead": overhead,
        "contention": {"kernel": list(plan["kernel"]), "rows": rows},
        "spec": spec,
    }
    return ProbeResult(spec=spec, report=report)


def _link_fields(fit) -> dict[str, Any]:
    bandwidth = "inf" if math.isinf(fit.bandwidth_bytes_per_s) else max(1, int(round(fit.bandwidth_bytes_per_s)))
    return {"latency_ns": max(0, int(round(fit.latency_s * 1e9))), "bandwidth_bytes_per_s": bandwidth}


def _bandwidth_text(bytes_per_s: float) -> str:
    return "inf" if math.isinf(bytes_per_s) else f"{bytes_per_s / 1e9:.4g} GB/s"


def write_probe(result: "ProbeResult", path: str | Path) -> tuple[Path, Path]:
    """The spec at ``path`` (YAML for ``.yaml``/``.yml``, else JSON) and the report next to it."""
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SglabError(f"{path}: writing YAML needs PyYAML (pip install pyyaml); or name a .json file") from None
        atomic_write_text(path, yaml.safe_dump(strict_json(result.spec), sort_keys=False, width=100))
    else:
        atomic_write_text(path, json.dumps(strict_json(result.spec), indent=2) + "\n")
    sidecar = atomic_write_json(sidecar_path(path), result.report)
    return path, sidecar


def format_probe(result: "ProbeResult") -> str:
    """A few lines: the link fit, the per-size medians, the op overhead and the slowdown per process count."""
    rep = result.report
    link, fit = rep["link"], rep["link"]["fit"]
    bw = fit["bandwidth_bytes_per_s"]
    lines = [f"{result.spec['description']}",
             f"link ({rep['machine']['backend']}): latency {fit['latency_ns'] / 1e3:.2f} us, bandwidth "
             + ("inf" if math.isinf(bw) else f"{bw / 1e9:.3f} GB/s")
             + f", rms relative residual {fit['rms_relative_residual']:.3f} (max {fit['max_relative_residual']:.3f})",
             f"{'bytes':>10} {'one-way us':>11} {'fit us':>9}"]
    for size, med, fitted in zip(link["sizes_bytes"], link["one_way_median_ns"], fit["fitted_ns"]):
        lines.append(f"{size:>10} {med / 1e3:>11.2f} {fitted / 1e3:>9.2f}")
    if warning := fit_warning(fit["rms_relative_residual"]):
        lines.append(warning)
    if link.get("post_fit"):
        post = link["post_fit"]
        lines.append(f"sender's post time: {post['latency_ns'] / 1e3:.2f} us + bytes / "
                     f"{_bandwidth_text(post['bandwidth_bytes_per_s'])} (the sending rank is busy that long; "
                     "written as link.sender)")
    lines.append(f"op overhead: {rep['op_overhead']['median_ns'] / 1e3:.2f} us per op ({rep['op_overhead']['op']})")
    m, k, n = rep["contention"]["kernel"]
    lines.append(f"contention ({m}x{k} @ {k}x{n} matmul, 1 thread per process):")
    for row in rep["contention"]["rows"]:
        lines.append(f"  {row['processes']} processes: median {row['median_ns'] / 1e6:.3f} ms, "
                     f"slowdown {row['slowdown']:.3f}")
    lines.append(f"spec: {result.spec['devices']['count']} devices of speed 1 sharing the cores: compute slowed by "
                 + ", ".join(f"{f:.3f}" for f in result.spec["contention"]["slowdown"]) + " while 1, 2, ... compute")
    return "\n".join(lines)
