"""Stage 5 of ``sglab demo``: DNI run for real on this machine, one process per stage, against its prediction.

The model is the demo's FCN cut to two layers (:meth:`~sglab.demo.DemoConfig.real_config`), so
that two local processes run it, one stage each. In turn:

1. **profile** it in-run (:func:`sglab.profiling.profile_training`: a real 1-process ``train``
   with every op timed, in a fresh process of one torch thread as each rank is) under ``dni``, and
   under ``bprop`` for the sequential baseline;
2. **probe** this machine with two processes (:func:`sglab.dist.probe_hardware`: link and
   contention, a few repeats) and keep its spec, as ``sglab hardware probe`` writes it;
3. **predict** the steady step of DNI on two devices and of sequential backprop on one from that
   profile and spec (:func:`sglab.sim.simulate`, the measured host time per batch included);
4. **run** both for real with :func:`sglab.dist.train_distributed` and read their measured traces
   the way the simulated ones are read (:func:`sglab.trace.steady_step_ns`).

Writes under ``real_run/``: the spec (``machine.yaml`` and ``machine.probe.json``), the profiles,
the real runs' directories (``runs/dni``, ``runs/sequential``), both traces of every run
(``traces/<run>-measured.csv``, ``-simulated.csv``) and ``gantt-dni.png``/``.pdf`` (a few steady
steps, measured above simulated). One short run on a shared CPU is a single noisy sample;
``benchmarks/sim_vs_real.py`` repeats the runs and measures the noise floor.

A failure in any step (no processes can be spawned here, a rank fails or times out) is warned
about and recorded, with the step it happened in, instead of raised: the demo's other results
do not depend on it.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from sglab.io import atomic_write_text

if TYPE_CHECKING:
    from sglab.costprofile import CostProfile
    from sglab.demo import DemoConfig
    from sglab.training.config import ClassifyConfig

#: Where the stage's files go, under the demo's output folder.
REAL_RUN_DIR = "real_run"
#: What runs: label -> (method, processes); "sequential" (every stage in one process) is the speedup baseline.
RUNS = {"dni": ("dni", 2), "sequential": ("bprop", 1)}
#: First steps of each profile left out (allocator warm-up, lazy initialisation).
PROFILE_SKIP_STEPS = 3
#: Ping-pongs per message size and matmuls per process count of the probe: a few seconds, not a measurement.
PROBE_REPEATS = 5
#: Bound of each real run (seconds); a hung rank cannot stall the demo for longer.
RUN_TIMEOUT_S = 300.0
#: Steady steps shown in the Gantt figure.
GANTT_STEPS = 3


def demo_real_run(config: DemoConfig, dataset, out_dir: str | Path) -> dict[str, Any]:
    """Profile, probe, predict and run the FCN-2 of ``config`` (see the module docstring); what the report shows.

    The dict's ``status`` is ``ok``, ``skipped`` (``config.real_run`` off) or ``failed`` (with
    ``failed_while``, ``error`` and the tracebacks, and whatever was done before the failure).
    ``runs[label]`` holds each run's predicted and measured step (ms) and the error (%).
    Paths in it are relative to ``out_dir``.
    """
    if not config.real_run:
        return {"status": "skipped", "reason": "real_run is off (sglab demo --no-real-run)"}
    out = Path(out_dir)
    started = time.perf_counter()
    dni = config.real_config("dni")
    section: dict[str, Any] = {"status": "ok", "steps": dni.steps, "model": _model_text(dni), "runs": {}}
    try:
        doing = _say(config, "profiling the model in one process")
        profiles = _profiles(config, dataset, out)
        doing = _say(config, "probing this machine with two processes")
        spec = _probe(out, section)
        doing = "predicting the step times with the simulator"
        simulated = _predictions(section["runs"], profiles, spec, dni.steps, config.seed)
        measured = {}
        for label, (method, processes) in RUNS.items():
            doing = _say(config, f"running {method} on {processes} process{'es' if processes > 1 else ''} for real")
            measured[label] = _measure(config.real_config(method), dataset, processes, out / REAL_RUN_DIR / "runs" / label)
            _compare(section["runs"][label], _step_ms(measured[label]))
        doing = "writing the traces and the figure"
        section.update(_speedups(section["runs"]), **_outputs(out, measured, simulated, dni))
    except Exception as err:  # a platform that cannot run it fails in many ways: OSError, RuntimeError, RankFailed ...
        section.update(_failure(doing, err))
    section["wall_s"] = round(time.perf_counter() - started, 1)
    return section


def _say(config: DemoConfig, doing: str) -> str:
    """``doing``, named on stderr first when the demo shows progress (the stage has no progress bar of its own)."""
    if config.progress:
        print(f"sglab demo, real run: {doing} ...", file=sys.stderr, flush=True)
    return doing


def _model_text(config: ClassifyConfig) -> str:
    """One line naming the model, batch and synthesizer of the real runs."""
    from sglab.training.build import synthesizer_kind

    kind = synthesizer_kind(config, (config.width,))  # an FCN's interfaces are vectors
    return (f"FCN-2 of width {config.width}, batch {config.batch_size}, {kind} synthesizers of "
            f"{config.synth_hidden_layers} hidden layer(s) of {config.synth_width}, seed {config.seed}")


def _profile_rank(ctx, config: ClassifyConfig, dataset) -> dict[str, Any]:
    """A rank's in-run profile of ``config``, as a dict (run by :func:`sglab.dist.launch.launch` in a fresh process)."""
    from sglab.profiling import profile_training

    with tempfile.TemporaryDirectory() as tmp:  # the profiling run's own directory says nothing the profile does not
        profile, _ = profile_training(config, tmp, dataset=dataset, skip_steps=PROFILE_SKIP_STEPS)
    return profile.to_dict()


def _profiles(config: DemoConfig, dataset, out: Path) -> dict[str, CostProfile]:
    """The in-run profile each run is predicted from (label -> profile), also saved as ``real_run/profile-<method>.json``.

    Each is measured in a fresh process of one torch thread, as a rank is: a process that has run
    with more threads (the demo's own, after training) stays faster after ``set_num_threads(1)``
    (the FCN-2's forward of stage 0 took 0.68 ms there, 1.1-1.2 ms in a fresh one-thread process
    and in the ranks), which made the prediction 28-48 % low.
    """
    from sglab.costprofile import CostProfile
    from sglab.dist.launch import launch

    profiles: dict[str, CostProfile] = {}
    by_method: dict[str, CostProfile] = {}
    for label, (method, _) in RUNS.items():
        if method not in by_method:
            raw = launch(_profile_rank, 1, config.real_config(method), dataset, threads=1, run_timeout=RUN_TIMEOUT_S)[0]
            by_method[method] = CostProfile.from_dict(raw)
            by_method[method].save(out / REAL_RUN_DIR / f"profile-{method}.json")
        profiles[label] = by_method[method]
    return profiles


def _probe(out: Path, section: dict[str, Any]) -> dict[str, Any]:
    """The probed spec of this machine, written where ``sglab hardware probe`` would; the machine goes into ``section``."""
    from sglab.dist import probe_hardware

    # op_overhead=False: an in-run profile already holds each op's launch cost, adding it again would count it twice
    result = probe_hardware(processes=2, repeats=PROBE_REPEATS, warmup=2, kernel_repeats=PROBE_REPEATS, op_overhead=False)
    spec_path, sidecar = result.save(out / REAL_RUN_DIR / "machine.yaml")
    machine = result.report["machine"]
    link = result.spec["link"]
    section["machine"] = {"cpu_model": machine["cpu_model"], "cpu_count": machine["cpu_count"], "host": machine["host"],
                          "torch_version": machine["torch_version"], "backend": machine["backend"]}
    section["probe"] = {"spec": str(spec_path.relative_to(out)), "report": str(sidecar.relative_to(out)),
                        "latency_us": link["latency_ns"] / 1e3, "bandwidth_gb_per_s": _gb_per_s(link["bandwidth_bytes_per_s"]),
                        "slowdown": result.spec["contention"]["slowdown"]}
    return result.spec


def _gb_per_s(bandwidth) -> float:
    return math.inf if bandwidth == "inf" else bandwidth / 1e9


def _predictions(runs: dict[str, dict[str, Any]], profiles: dict[str, CostProfile], spec: dict[str, Any], steps: int,
                 seed: int) -> dict[str, pd.DataFrame]:
    """Every run's simulated trace; its predicted step goes into ``runs[label]`` (kept should the real run fail)."""
    from analysis.sim_vs_real import predicted_trace

    simulated = {}
    for label, (method, processes) in RUNS.items():
        simulated[label] = predicted_trace(profiles[label], spec, method, steps, seed, sequential=processes == 1)
        runs[label] = {"method": method, "processes": processes, "predicted_step_ms": _step_ms(simulated[label])}
    return simulated


def _measure(config: ClassifyConfig, dataset, processes: int, run_dir: Path) -> pd.DataFrame:
    """The measured trace of a real run of ``config`` on ``processes`` local processes, its run directory in ``run_dir``."""
    from sglab.dist import DistRun, train_distributed

    result = train_distributed(DistRun(config, dataset, processes=processes), run_dir, threads=1,
                               run_timeout=RUN_TIMEOUT_S)
    return result.trace()


def _step_ms(trace: pd.DataFrame) -> float:
    """The steady step of ``trace`` in ms (``DemoConfig.real_steps`` >= 8 leaves enough steps for one)."""
    from sglab.trace import steady_step_ns

    return steady_step_ns(trace) / 1e6


def _compare(run: dict[str, Any], measured_ms: float) -> None:
    """Put the measured step beside the predicted one in ``run``, and the prediction's error."""
    run["measured_step_ms"] = measured_ms
    run["error_pct"] = 100 * (run["predicted_step_ms"] - measured_ms) / measured_ms


def _speedups(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """DNI's speedup over sequential backprop, predicted over predicted and measured over measured."""
    base, dni = runs["sequential"], runs["dni"]
    return {"speedup": {"predicted": base["predicted_step_ms"] / dni["predicted_step_ms"],
                        "measured": base["measured_step_ms"] / dni["measured_step_ms"]}}


def _outputs(out: Path, measured: dict[str, pd.DataFrame], simulated: dict[str, pd.DataFrame],
             config: ClassifyConfig) -> dict[str, Any]:
    """Every run's two traces as CSV and DNI's side-by-side Gantt figure; their paths relative to ``out``."""
    from analysis.sim_vs_real import save_side_by_side

    folder = out / REAL_RUN_DIR
    files = []
    for label in measured:
        files.append(atomic_write_text(folder / "traces" / f"{label}-measured.csv", measured[label].to_csv(index=False)))
        files.append(atomic_write_text(folder / "traces" / f"{label}-simulated.csv", simulated[label].to_csv(index=False)))
    first = max(1, config.steps // 2 - 1)  # the middle of the run: steady, as the step times are read
    figures = save_side_by_side(measured["dni"], simulated["dni"], range(first, first + GANTT_STEPS), folder / "gantt-dni",
                                title=f"dni on 2 processes: measured (top), simulated (bottom); FCN-2 of width {config.width}, "
                                      f"batch {config.batch_size}")
    return {"figures": [str(Path(f).relative_to(out)) for f in figures],
            "files": [str(Path(f).relative_to(out)) for f in files]}


def _failure(doing: str, err: Exception) -> dict[str, Any]:
    """The record of a failed real run, warned about so that it is never silent."""
    error = f"{type(err).__name__}: {err}{_hint(err)}"
    warnings.warn(f"sglab demo: the real 2-process run failed while {doing}: {error} (the rest of the demo goes on; "
                  "recorded in demo.json and report.md)", RuntimeWarning, stacklevel=3)
    failure = {"status": "failed", "failed_while": doing, "error": error, "traceback": traceback.format_exc()}
    if getattr(err, "traceback", ""):  # RankFailed carries the failed rank's own traceback
        failure["rank_traceback"] = err.traceback
    return failure


def _hint(err: Exception) -> str:
    """What to try when a rank died while starting up, the usual cause of which is spawn re-importing the caller."""
    if "while starting up" not in str(err):
        return ""
    return (" (ranks are started with spawn, which imports the main module again: a script calling run_demo must "
            "do so under `if __name__ == '__main__':`)")


def render_section(section: dict[str, Any]) -> str:
    """Section 5 of ``report.md``: the table, the figure and what a single short run can say."""
    if section["status"] == "skipped":
        return f"Skipped: {section['reason']}."
    lines = [_intro(section), ""]
    if section["runs"]:
        lines += [_table(section["runs"]), ""]
    if section["status"] == "failed":
        lines += [f"**The real run did not complete**: it failed while {section['failed_while']}: "
                  f"`{section['error']}`. The other sections do not depend on it; `demo.json` holds the traceback, "
                  "and `sglab demo --no-real-run` skips this step.", ""]
        return "\n".join(lines)
    speedup = section["speedup"]
    lines += [f"DNI over sequential backprop: predicted speedup {speedup['predicted']:.2f}, measured "
              f"{speedup['measured']:.2f}.", "",
              *[f"![real vs simulated]({p})" for p in section["figures"] if p.endswith(".png")], "",
              "This is **one short run on a shared CPU**: other processes, the scheduler and the clock move a "
              "measured step by several to tens of percent from one identical run to the next, so the error above "
              "is one noisy sample, not the simulator's accuracy. `benchmarks/sim_vs_real.py` repeats every run, "
              "measures that noise floor and judges the prediction against it; docs/distributed.md "
              "(\"Simulator against reality\") has its results. The traces are in "
              f"`{REAL_RUN_DIR}/traces/`, the real runs' directories in `{REAL_RUN_DIR}/runs/`."]
    return "\n".join(lines)


def _intro(section: dict[str, Any]) -> str:
    """What was run and predicted, on which machine."""
    text = (f"{section['model']}, {section['steps']} steps on the embedded digits, trained by `sglab.dist` with DNI on "
            "2 local processes (gloo, one torch thread each; one stage per process) and as sequential backprop in "
            "1 process. Each step time was predicted beforehand by the simulator from an in-run profile of the same "
            "model (1 process, 1 thread, its host time per batch included) on this machine as probed")
    if "machine" not in section:
        return text + "."
    machine, probe = section["machine"], section["probe"]
    bandwidth = "inf" if math.isinf(probe["bandwidth_gb_per_s"]) else f"{probe['bandwidth_gb_per_s']:.3g} GB/s"
    return (text + f": {machine['cpu_model']} ({machine['cpu_count']} CPUs, `{machine['host']}`), link "
            f"{probe['latency_us']:.0f} us + {bandwidth}, compute slowed {probe['slowdown'][-1]:.3f}x while both "
            f"processes compute (`{probe['spec']}`). Steady step (mean interval between step completions over the "
            "middle half of the run) of the measured and of the simulated trace, in ms:")


def _table(runs: dict[str, dict[str, Any]]) -> str:
    """The runs' predicted and measured steps as a Markdown table ("not run" where a run did not finish)."""
    def ms(value: float | None, fmt: str = ".2f") -> str:
        return "not run" if value is None else format(value, fmt)

    rows = [{"run": label, "method": run["method"], "processes": run["processes"],
             "predicted step ms": ms(run["predicted_step_ms"]), "measured step ms": ms(run.get("measured_step_ms")),
             "error": ms(run.get("error_pct"), "+.1f") + (" %" if "error_pct" in run else "")}
            for label, run in runs.items()]
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def summary_line(section: dict[str, Any]) -> str:
    """One line for the terminal: the DNI run's predicted and measured step, or why there is none."""
    if section["status"] == "skipped":
        return "real 2-process DNI run: skipped"
    if section["status"] == "failed":
        return f"real 2-process DNI run FAILED while {section['failed_while']}: {section['error']} (see report.md, section 5)"
    dni, base = section["runs"]["dni"], section["runs"]["sequential"]
    return (f"real 2-process DNI run on {section['machine']['cpu_model']}: predicted {dni['predicted_step_ms']:.2f} ms "
            f"per step, measured {dni['measured_step_ms']:.2f} ms (error {dni['error_pct']:+.1f} %); sequential backprop "
            f"predicted {base['predicted_step_ms']:.2f} ms, measured {base['measured_step_ms']:.2f} ms; speedup "
            f"predicted {section['speedup']['predicted']:.2f}, measured {section['speedup']['measured']:.2f}")
