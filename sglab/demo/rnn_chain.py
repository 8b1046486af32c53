"""Demo stage 6: three recurrent networks on their own clocks, trained briefly, profiled, simulated.

The chain of ``sglab train --task rnn-chain`` (network ``k+1`` ticks once per message of
network ``k``, each link a cDNI) trains for a few steps with every op timed; its profile gives
each network its chunks per episode (:mod:`sglab.profiling.rnn_chain`), and the simulator runs
each network on its own clock (:mod:`sglab.sim.clocks`) on a hypothetical cluster, one network
per node, unlocked (``cdni``) and locked (``bprop``: each chunk's backward waits for the
gradient of the chunk above that read its message).
"""

from __future__ import annotations

from pathlib import Path

HARDWARE = "cluster-10gbe"
METHODS = ("cdni", "bprop")


def demo_rnn_chain(steps: int, seed: int, out: Path, progress: bool = False) -> dict:
    """Train, profile and simulate the chain; what the report's section shows."""
    import torch

    from sglab.profiling.rnn_chain import profile_from_run
    from sglab.profiling.timer import OpTimer
    from sglab.sim import simulate
    from sglab.training import RNNChainConfig
    from sglab.training.loop import train

    config = RNNChainConfig(steps=steps, seed=seed, eval_every=steps, device="cpu")
    timer = OpTimer(torch.device("cpu"))
    result = train(config, out / "runs" / "rnn-chain", progress=progress, observer=timer)
    profile = profile_from_run(timer, config, skip_steps=min(5, steps - 1))
    profile.save(out / "rnn_chain_profile.json")
    rows = []
    for method in METHODS:
        summary = simulate(profile, HARDWARE, method, steps=20).summary
        rows.append({"method": method, "steady_step_ms": summary["steady_step_ns"] / 1e6,
                     "steady_speedup": summary["steady_speedup"]})
    networks = [{"network": s.index, "chunks_per_episode": s.chunks,
                 **{f"{op}_ms": t / 1e6 for op, t in s.times_ns.items()}} for s in profile.stages]
    return {"ratios": list(config.ratios), "steps": steps, "test_accuracy": result.summary["test_accuracy"],
            "hardware": HARDWARE, "networks": networks, "simulation": rows}


def render_section(section: dict) -> str:
    """The report's section 6."""
    import pandas as pd

    return "\n".join([
        f"Three LSTMs in a chain (ratios {section['ratios']}: network k+1 ticks once per message of network k), "
        f"trained {section['steps']} steps with every op timed (`rnn_chain_profile.json`, per chunk, ms):",
        "",
        pd.DataFrame(section["networks"]).to_markdown(index=False, floatfmt=".3g"),
        "",
        f"Simulated on {section['hardware']}, one network per node, each on its own clock, against every network "
        "in turn on one node (`steady_speedup`):",
        "",
        pd.DataFrame(section["simulation"]).to_markdown(index=False, floatfmt=".3g"),
    ])
