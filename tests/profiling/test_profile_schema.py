"""CostProfile JSON: round trip, compatibility within version 1, and every malformed input rejected by name."""

import copy
import json
import math

import pytest

from sglab.costprofile import CostProfile, ProfileError


def test_round_trip_keeps_every_field(dni_profile, tmp_path):
    path = dni_profile.save(tmp_path / "p.json")
    loaded = CostProfile.load(path)
    assert loaded == dni_profile
    assert loaded.to_dict() == json.loads(path.read_text())


def minimal() -> dict:
    """A version-1 profile as first written, before the optional fields existed."""
    return {
        "schema": "sglab.cost_profile", "version": 1,
        "model": {"name": "fcn", "num_stages": 2}, "method": "dni",
        "measurement": {"source": "microbenchmark", "device": "cpu", "device_name": "x", "torch_version": "2",
                        "dtype": "float32", "batch_size": 8, "repeats": 3, "warmup": 1, "statistic": "median",
                        "timer": "perf_counter", "host": "h", "created": "2026-01-01T00:00:00+00:00"},
        "stages": [
            {"index": 0, "name": "a", "times_ns": {"F": 10, "B": 20, "U": 5, "S": 3, "T": 7},
             "activation_bytes": 64, "gradient_bytes": 64, "parameter_bytes": 128},
            {"index": 1, "name": "b", "times_ns": {"F": 10, "B": 20.4, "U": 5},
             "activation_bytes": 8, "gradient_bytes": 8, "parameter_bytes": 32, "peak_memory_bytes": None},
        ],
    }


def test_files_without_the_optional_fields_still_load():
    profile = CostProfile.from_dict(minimal())
    assert profile.measurement.spread == "iqr" and profile.measurement.threads is None
    assert profile.stages[1].times_ns["B"] == 20  # floats are rounded to integer ns
    assert profile.stages[0].synthesizer_parameter_bytes == 0 and profile.totals == {}


def _set(path, value):
    def mutate(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        if value is _DELETE:
            del data[last]
        else:
            data[last] = value
    return mutate


_DELETE = object()

MALFORMED = [
    (_set(["version"], 2), r"'version'.*unknown version 2"),
    (_set(["version"], _DELETE), r"'version'.*unknown version None"),
    (_set(["schema"], "other"), r"'schema' must be 'sglab.cost_profile'"),
    (_set(["stages", 1, "times_ns", "F"], _DELETE), r"'stages\[1\].times_ns.F' is missing"),
    (_set(["stages", 0, "times_ns", "U"], _DELETE), r"'stages\[0\].times_ns.U' is missing"),
    (_set(["stages", 0, "times_ns", "B"], -5), r"'stages\[0\].times_ns.B' must be >= 0 ns"),
    (_set(["stages", 0, "times_ns", "F"], "fast"), r"'stages\[0\].times_ns.F' must be a finite number"),
    (_set(["stages", 0, "times_ns", "F"], None), r"'stages\[0\].times_ns.F' must be a finite number"),
    (_set(["stages", 0, "times_ns", "F"], True), r"'stages\[0\].times_ns.F' must be a finite number"),
    (_set(["stages", 0, "times_ns", "F"], math.nan), r"'stages\[0\].times_ns.F' must be a finite number"),
    (_set(["stages", 0, "times_ns", "F"], math.inf), r"'stages\[0\].times_ns.F' must be a finite number"),
    (_set(["stages", 0, "times_ns", "X"], 1), r"'stages\[0\].times_ns.X' is not a compute op"),
    (_set(["stages", 0, "spread_ns"], {"F": -1}), r"'stages\[0\].spread_ns.F' must be >= 0"),
    (_set(["stages", 0, "times_ns"], [1, 2]), r"'stages\[0\].times_ns' must be dict"),
    (_set(["stages", 1, "index"], 5), r"'stages\[1\].index' must be 1"),
    (_set(["stages", 0, "activation_bytes"], -1), r"'stages\[0\].activation_bytes' must be >= 0"),
    (_set(["stages", 0, "parameter_bytes"], 1.5), r"'stages\[0\].parameter_bytes' must be int"),
    (_set(["stages", 0, "gradient_bytes"], _DELETE), r"'stages\[0\].gradient_bytes' is missing"),
    (_set(["stages", 0, "peak_memory_bytes"], -3), r"'stages\[0\].peak_memory_bytes' must be null"),
    (_set(["stages", 0, "samples"], {"F": -1}), r"'stages\[0\].samples.F' must be an integer >= 0"),
    (_set(["stages", 0, "synthesizer_parameter_bytes"], -1), r"'stages\[0\].synthesizer_parameter_bytes' must be >= 0"),
    (_set(["stages"], []), r"'stages' must list at least one stage"),
    (_set(["stages", 0], "F=1"), r"'stages\[0\]' must be an object"),
    (_set(["measurement", "device"], _DELETE), r"'measurement.device' is missing"),
    (_set(["measurement", "batch_size"], "64"), r"'measurement.batch_size' must be int"),
    (_set(["measurement", "batch_size"], 0), r"'measurement.batch_size' must be >= 1"),
    (_set(["measurement", "repeats"], -1), r"'measurement.repeats' must be >= 0"),
    (_set(["measurement", "threads"], "two"), r"'measurement.threads' must be int or null"),
    (_set(["method"], 3), r"'method' must be str"),
    (_set(["totals"], {"forward_ns": "slow"}), r"'totals.forward_ns' must be a finite number"),
    (_set(["model", "num_stages"], 5), r"'model.num_stages' is 5 but the profile lists 2 stages"),
]


@pytest.mark.parametrize("mutate, message", MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_profiles_are_rejected_naming_the_field(mutate, message):
    data = copy.deepcopy(minimal())
    mutate(data)
    with pytest.raises(ProfileError, match=message):
        CostProfile.from_dict(data)


def test_not_an_object_is_rejected():
    with pytest.raises(ProfileError, match="'<root>' must be a JSON object"):
        CostProfile.from_dict([1, 2])


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ProfileError, match="no such profile file"):
        CostProfile.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match="bad.json: not valid JSON"):
        CostProfile.load(bad)
    data = minimal()
    data["stages"][0]["times_ns"]["F"] = -1
    bad.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"bad.json: field 'stages\[0\].times_ns.F'"):
        CostProfile.load(bad)


def test_asking_for_an_unmeasured_op_names_it():
    stage = CostProfile.from_dict(minimal()).stages[1]
    with pytest.raises(ProfileError, match=r"stages\[1\].times_ns has no 'S'"):
        stage.time("S")
