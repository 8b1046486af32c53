"""The CostProfile: measured per-stage op costs, the simulator's only source of time.

JSON layout (``version`` 1)::

    {
      "schema": "sglab.cost_profile", "version": 1,
      "model": {"name": "fcn", "num_stages": 3, "config": {...}},
      "method": "dni",
      "measurement": {"source": "microbenchmark", "device": "cpu", "device_name": "...",
                      "torch_version": "2.13.0", "dtype": "float32", "batch_size": 256,
                      "repeats": 20, "warmup": 5, "statistic": "median", "timer": "perf_counter",
                      "host": "...", "created": "2026-11-24T08:00:00+00:00"},
      "stages": [
        {"index": 0, "name": "fc0", "times_ns": {"F": 1200, "B": 2500, "U": 300, "S": 400, "T": 900},
         "spread_ns": {"F": 40, ...}, "activation_bytes": 262144, "gradient_bytes": 262144,
         "parameter_bytes": 803840, "peak_memory_bytes": null},
        ...
      ]
    }

Times are integer nanoseconds of one minibatch of ``batch_size``. ``F``, ``B`` and ``U`` are
required for every stage; ``S``, ``T``, ``SI``, ``TI``, ``I`` and ``W`` are present when measured.
``activation_bytes``/``gradient_bytes`` are those of the stage's *output* interface (``h_i``, ``δ_i``).

Optional fields added compatibly within version 1 (a reader that does not know them ignores
them; a file without them loads with the defaults): ``measurement.spread`` (what ``spread_ns``
is, ``"iqr"``), ``measurement.threads``, ``measurement.sglab_version``, ``measurement.notes``;
per stage ``samples`` (timings behind each median), ``synthesizer_parameter_bytes`` (the gradient
synthesizer the stage runs in S/T) and ``input_model_parameter_bytes`` (the input synthesizer it
runs in SI/TI), ``chunks`` (the stage's clock: how many times it runs its ops per step, 1 by
default; an RNN chain's network ``k`` runs one chunk per message it sends, its times and bytes
are per chunk, see :mod:`sglab.sim.clocks`); and top-level ``totals`` (whole-model timings from the same run, e.g.
``forward_ns`` for all stages' forwards as one call, ``step_ns`` for a whole training step,
``host_ns_per_step`` for the part of an in-run step outside the timed ops).
``docs/profiler.md`` documents every field.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sglab.errors import SglabError
from sglab.io import atomic_write_text
from sglab.ops import COMPUTE_OPS

SCHEMA_NAME = "sglab.cost_profile"
SCHEMA_VERSION = 1
REQUIRED_OPS = ("F", "B", "U")


class ProfileError(SglabError, ValueError):
    """A cost profile that cannot be used; the message names the offending field."""


@dataclass
class Measurement:
    """How a profile was measured, so a number can always be traced to its conditions."""

    source: str
    device: str
    device_name: str
    torch_version: str
    dtype: str
    batch_size: int
    repeats: int
    warmup: int
    statistic: str = "median"
    timer: str = "perf_counter"
    host: str = ""
    created: str = ""
    spread: str = "iqr"
    threads: int | None = None
    sglab_version: str = ""
    notes: str = ""


@dataclass
class StageCost:
    """Measured costs of one stage; ``times_ns`` maps op name to integer nanoseconds (per chunk where
    ``chunks``, the times the stage runs its ops per step, is above 1)."""

    index: int
    name: str
    times_ns: dict[str, int]
    activation_bytes: int
    gradient_bytes: int
    parameter_bytes: int
    spread_ns: dict[str, int] = field(default_factory=dict)
    peak_memory_bytes: int | None = None
    samples: dict[str, int] = field(default_factory=dict)
    synthesizer_parameter_bytes: int = 0
    input_model_parameter_bytes: int = 0
    chunks: int = 1

    def time(self, op: str) -> int:
        """The cost of ``op`` in ns; a clear error if the profile did not measure it."""
        try:
            return self.times_ns[op]
        except KeyError:
            raise ProfileError(
                f"stages[{self.index}].times_ns has no {op!r}: the profile did not measure it "
                f"(measured: {', '.join(self.times_ns)})"
            ) from None


@dataclass
class CostProfile:
    """Per-stage costs of a model trained with a method, and how they were measured."""

    model: dict[str, Any]
    method: str
    measurement: Measurement
    stages: list[StageCost]
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def num_stages(self) -> int:
        """Number of stages K."""
        return len(self.stages)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict, with schema name and version."""
        return {"schema": SCHEMA_NAME, "version": SCHEMA_VERSION, **asdict(self)}

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON atomically; returns the path."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: Any) -> "CostProfile":
        """Validate and build a profile; :class:`ProfileError` names the first bad field."""
        _require(isinstance(data, dict), "<root>", "must be a JSON object")
        _require(data.get("schema") == SCHEMA_NAME, "schema", f"must be {SCHEMA_NAME!r}, got {data.get('schema')!r}")
        _require(
            data.get("version") == SCHEMA_VERSION,
            "version",
            f"unknown version {data.get('version')!r}; this sglab reads version {SCHEMA_VERSION}",
        )
        model = _get(data, "model", dict, "")
        method = _get(data, "method", str, "")
        meas = _get(data, "measurement", dict, "")
        measurement = Measurement(
            **{k: _get(meas, k, t, "measurement.") for k, t in _MEASUREMENT_FIELDS.items()},
            **{k: _optional(meas, k, t, "measurement.") for k, t in _OPTIONAL_MEASUREMENT_FIELDS.items() if k in meas},
        )
        _require(measurement.batch_size >= 1, "measurement.batch_size", f"must be >= 1, got {measurement.batch_size}")
        for key in ("repeats", "warmup"):
            _require(getattr(measurement, key) >= 0, f"measurement.{key}", f"must be >= 0, got {getattr(measurement, key)}")
        stages_raw = _get(data, "stages", list, "")
        _require(len(stages_raw) > 0, "stages", "must list at least one stage")
        stages = [_stage_from_dict(raw, i) for i, raw in enumerate(stages_raw)]
        declared = model.get("num_stages", len(stages))
        _require(declared == len(stages), "model.num_stages",
                 f"is {declared!r} but the profile lists {len(stages)} stages; the two must agree")
        totals = _times(data.get("totals", {}), "totals", ops=None)
        return cls(model=model, method=method, measurement=measurement, stages=stages, totals=totals)

    @classmethod
    def load(cls, path: str | Path) -> "CostProfile":
        """Read and validate a profile file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ProfileError(f"{path}: no such profile file") from None
        except json.JSONDecodeError as err:
            raise ProfileError(f"{path}: not valid JSON ({err})") from None
        try:
            return cls.from_dict(data)
        except ProfileError as err:
            raise ProfileError(f"{path}: {err}") from None


_MEASUREMENT_FIELDS = {
    "source": str,
    "device": str,
    "device_name": str,
    "torch_version": str,
    "dtype": str,
    "batch_size": int,
    "repeats": int,
    "warmup": int,
    "statistic": str,
    "timer": str,
    "host": str,
    "created": str,
}


#: Fields added within version 1; absent ones take the dataclass defaults. ``threads`` may be null.
_OPTIONAL_MEASUREMENT_FIELDS = {"spread": str, "threads": (int, type(None)), "sglab_version": str, "notes": str}


def _require(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ProfileError(f"field {field_name!r} {message}")


def _get(obj: dict, key: str, kind: type, prefix: str) -> Any:
    _require(key in obj, prefix + key, "is missing")
    value = obj[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    _require(ok, prefix + key, f"must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _optional(obj: dict, key: str, kind: type | tuple, prefix: str) -> Any:
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(value, kinds) and not isinstance(value, bool)
    names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
    _require(ok, prefix + key, f"must be {names}, got {type(value).__name__} {value!r}")
    return value


def _times(raw: Any, where: str, ops: tuple[str, ...] | None = COMPUTE_OPS) -> dict[str, int]:
    """Validate a mapping of name to ns; ``ops`` restricts the names (None: any name)."""
    _require(isinstance(raw, dict), where, "must be an object mapping op name to nanoseconds")
    times = {}
    for op, value in raw.items():
        name = f"{where}.{op}"
        _require(ops is None or op in ops, name, f"is not a compute op (known: {', '.join(COMPUTE_OPS)})")
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        _require(numeric and math.isfinite(value), name, f"must be a finite number of ns, got {value!r}")
        _require(value >= 0, name, f"must be >= 0 ns, got {value!r}")
        times[op] = int(round(value))
    return times


def _stage_from_dict(raw: Any, position: int) -> StageCost:
    where = f"stages[{position}]"
    _require(isinstance(raw, dict), where, "must be an object")
    prefix = where + "."
    index = _get(raw, "index", int, prefix)
    _require(index == position, prefix + "index", f"must be {position} (stages are listed in order), got {index}")
    times = _times(_get(raw, "times_ns", dict, prefix), prefix + "times_ns")
    for op in REQUIRED_OPS:
        _require(op in times, f"{prefix}times_ns.{op}", "is missing (F, B and U are required for every stage)")
    sizes = {}
    for key in ("activation_bytes", "gradient_bytes", "parameter_bytes"):
        sizes[key] = _get(raw, key, int, prefix)
        _require(sizes[key] >= 0, prefix + key, f"must be >= 0, got {sizes[key]}")
    for key in ("synthesizer_parameter_bytes", "input_model_parameter_bytes"):
        if key in raw:
            sizes[key] = _get(raw, key, int, prefix)
            _require(sizes[key] >= 0, prefix + key, f"must be >= 0, got {sizes[key]}")
    if "chunks" in raw:
        sizes["chunks"] = _get(raw, "chunks", int, prefix)
        _require(sizes["chunks"] >= 1, prefix + "chunks", f"must be >= 1 (runs of the stage per step), got {sizes['chunks']}")
    peak = raw.get("peak_memory_bytes")
    peak_ok = peak is None or (isinstance(peak, int) and not isinstance(peak, bool) and peak >= 0)
    _require(peak_ok, prefix + "peak_memory_bytes", f"must be null or an integer >= 0, got {peak!r}")
    samples = raw.get("samples", {})
    _require(isinstance(samples, dict), prefix + "samples", "must be an object mapping op name to a count")
    for op, count in samples.items():
        count_ok = isinstance(count, int) and not isinstance(count, bool) and count >= 0
        _require(count_ok, f"{prefix}samples.{op}", f"must be an integer >= 0, got {count!r}")
    return StageCost(
        index=index,
        name=str(raw.get("name", f"stage{index}")),
        times_ns=times,
        spread_ns=_times(raw.get("spread_ns", {}), prefix + "spread_ns"),
        peak_memory_bytes=peak,
        samples=dict(samples),
        **sizes,
    )
