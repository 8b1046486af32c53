"""Builders of the simulator tests' small cost profiles and machines (imported by conftest and tests).

The profile numbers are measured-looking but made up: they are test fixtures, never results.
"""

from __future__ import annotations

from sglab.profile.schema import CostProfile, Measurement, StageCost
from sglab.sim import hardware_from_dict


def build_profile(num_stages: int = 3, F: int = 1000, B: int = 2000, U: int = 300, S: int | None = 200,
                  T: int | None = 400, act: int = 4096, params: int = 65536, batch: int = 32,
                  times: list[dict] | None = None) -> CostProfile:
    """A profile with the same costs on every stage, or per-stage ``times``; S/T None: not measured."""
    stages = []
    for i in range(num_stages):
        if times is not None:
            t = dict(times[i])
        else:
            t = {"F": F, "B": B, "U": U}
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
