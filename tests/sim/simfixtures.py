"""Builders of the simulator tests' small cost profiles and machines (imported by conftest and tests).

The profile numbers are measured-looking but made up: they are test fixtures, never results.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from sglab.costprofile import CostProfile, Measurement, StageCost
from sglab.methods import get_method
from sglab.sim import hardware_from_dict


def build_profile(num_stages: int = 3, F: int = 1000, B: int = 2000, U: int = 300, S: int | None = 200,
                  T: int | None = 400, act: int = 4096, params: int = 65536, batch: int = 32,
                  times: list[dict] | None = None, split: bool = True) -> CostProfile:
    """A profile with the same costs on every stage, or per-stage ``times``; S/T None: not measured;
    ``split``: with the backward's halves ``I = B // 2`` and ``W = B - I``."""
    stages = []
    for i in range(num_stages):
        if times is not None:
            t = dict(times[i])
        else:
            t = {"F": F, "B": B, "U": U}
            if split:
                t.update(I=B // 2, W=B - B // 2)
            if S is not None:
                t.update(S=S, SI=S)
            if T is not None:
                t.update(T=T, TI=T)
        stages.append(StageCost(index=i, name=f"fc{i}", times_ns=t, activation_bytes=act, gradient_bytes=act,
                                parameter_bytes=params))
    measurement = Measurement(source="test fixture", device="cpu", device_name="fixture", torch_version="n/a",
                              dtype="float32", batch_size=batch, repeats=1, warmup=0)
    return CostProfile(model={"name": "fixture", "num_stages": num_stages}, method="dni",
                       measurement=measurement, stages=stages)


def build_hardware(num_devices: int = 3, latency_ns: int = 0, bandwidth="inf", topology: str = "fully_connected",
                   speed: float = 1.0, **extra):
    """Identical devices joined by identical links (free links by default)."""
    spec = {"name": f"test{num_devices}", "devices": {"count": num_devices, "name": "dev", "speed": speed},
            "topology": topology, "link": {"latency_ns": latency_ns, "bandwidth_bytes_per_s": bandwidth}, **extra}
    return hardware_from_dict(spec)


def expected_ops(name: str, num_stages: int, steps: int, seed: int = 0, microbatches: int = 1) -> Counter:
    """``(step, stage, op, microbatch)`` of every compute op the registry says ``name`` runs, written from the
    spec: stochastic draws ``rng([seed, 1]).random(K) < update_prob``, unlocking ``rng([seed, 2]).random(K-1)``;
    a pipeline runs its step graph's F and B per microbatch and one U per stage (one with several stages per
    rank: its rank lists' ops, as DualPipe-V splits only some backwards)."""
    method = get_method(name, "sim")
    updates, unlocks = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    out: Counter = Counter()
    for step in range(steps):
        if method.pipelined and method.stages_per_rank > 1:  # its rank lists say which backwards are split
            for actions in method.rank_actions(num_stages // method.stages_per_rank, microbatches).values():
                for action in actions:
                    out[step, action.stage, action.op, action.microbatch] += 1
            continue
        if method.pipelined:
            for action in method.step_graph(num_stages):
                for j in range(1 if action.op == "U" else microbatches):
                    out[step, action.stage, action.op, j] += 1
            continue
        active = method.active(updates.random(num_stages)) if method.update_prob < 1 else None
        locked = method.locked(unlocks.random(num_stages - 1)) if method.unlock_prob < 1 else None
        for action in method.step_graph(num_stages, active, locked):
            out[step, action.stage, action.op, 0] += 1
    return out


def compute_ops(trace) -> Counter:
    """The same count, read from a trace's device rows."""
    rows = trace[trace["kind"].astype(str) == "device"]
    return Counter(zip(rows["step"].tolist(), rows["stage"].tolist(), rows["op"].astype(str).tolist(),
                       rows["microbatch"].tolist()))
