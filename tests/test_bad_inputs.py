"""Every input gets either the right result or one clear error line: never a traceback, never silent acceptance.

Hypothesis generates command lines, config mappings, cost-profile JSON and hardware specs mixing
valid and invalid values. The expected outcome comes from ranges written here, independently
of the code's own checks, so an out-of-range value the code lets through fails the test.
"""

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sglab.config import ConfigError
from sglab.costprofile import CostProfile, ProfileError
from sglab.errors import SglabError, UsageError
from sglab.training import make_config

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Independent ranges: field -> (strategy of values, is the value acceptable).
NUMBERS = st.one_of(st.integers(-3, 5), st.sampled_from([0.0, -1.0, 0.5, 1.0, 1.5, 2.5, 1e9, math.nan, math.inf]),
                    st.sampled_from(["3", None, True, [1]]))


def _int_at_least(low):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _number_above(low, high=math.inf, closed_high=True):
    def ok(v):
        number = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        return number and v > low and (v <= high if closed_high else v < high)
    return ok


CLASSIFY_FIELDS = {
    "steps": _int_at_least(1), "layers": _int_at_least(1), "width": _int_at_least(1), "batch_size": _int_at_least(2),
    "synth_width": _int_at_least(1), "eval_every": _int_at_least(1), "eval_batch_size": _int_at_least(1),
    "lr": _number_above(0), "lr_gamma": _number_above(0), "divergence_loss": _number_above(0),
    "synth_loss_weight": lambda v: _number_above(-1e-300)(v) or v == 0,
    "probe_every": lambda v: v is None or _int_at_least(1)(v),  # None: never probe
}
SOBOLEV_FIELDS = {"sobolev_weight": lambda v: _number_above(-1e-300)(v) or v == 0, "sobolev_directions": _int_at_least(1)}
COPY_FIELDS = {"truncation": _int_at_least(1), "bits": _int_at_least(1), "hidden": _int_at_least(1),
               "synth_scale": lambda v: _number_above(-1e-300)(v) or v == 0, "steps": _int_at_least(1)}


def one_clear_line(message: str) -> bool:
    return bool(message) and "\n" not in message.strip() and "Traceback" not in message


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(CLASSIFY_FIELDS)), NUMBERS, min_size=1, max_size=3))
def test_classify_config_mappings(values):
    valid = all(CLASSIFY_FIELDS[k](v) for k, v in values.items())
    try:
        config = make_config("classify", values)
    except ConfigError as err:
        assert not valid, f"{values} refused: {err}"
        assert one_clear_line(str(err)) and "config field" in str(err)
        return
    assert valid, f"{values} accepted silently"
    assert all(getattr(config, k) == v for k, v in values.items())


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(SOBOLEV_FIELDS)), NUMBERS, min_size=1, max_size=2))
def test_sobolev_objective_fields(values):
    valid = all(SOBOLEV_FIELDS[k](v) for k, v in values.items())
    try:
        make_config("classify", {"method": "cdni", "synth_loss": "sobolev", **values})
    except ConfigError as err:
        assert not valid and one_clear_line(str(err)), f"{values}: {err}"
        return
    assert valid, f"{values} accepted silently"


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(COPY_FIELDS)), NUMBERS, min_size=1, max_size=3))
def test_copy_config_mappings(values):
    valid = all(COPY_FIELDS[k](v) for k, v in values.items())
    try:
        make_config("copy", values)
    except ConfigError as err:
        assert not valid and one_clear_line(str(err)), f"{values}: {err}"
        return
    assert valid, f"{values} accepted silently"


FLAGS = {"--steps": _int_at_least(1), "--layers": _int_at_least(1), "--batch-size": _int_at_least(2),
         "--lr": _number_above(0), "--threads": _int_at_least(1), "--synth-width": _int_at_least(1),
         "--update-prob": _number_above(0, 1)}
TEXT = st.sampled_from(["0", "1", "-1", "2", "0.5", "1e-3", "abc", "", "1.5", "nan", "inf"])


def _parse(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@SETTINGS
@given(flags=st.dictionaries(st.sampled_from(sorted(FLAGS)), TEXT, min_size=1, max_size=3),
       method=st.sampled_from(["dni", "bprop", "stochastic", "magic"]))
def test_train_command_lines(flags, method, capsys, monkeypatch):
    import sglab.training.loop
    from sglab.cli import main

    ran = []
    monkeypatch.setattr(sglab.training.loop, "train", lambda config, out, **kw: ran.append(config) or _fake_result(config))
    argv = ["train", "--method", method, "--out", "/nonexistent-dir/run", "--no-progress"]
    for flag, text in flags.items():
        argv += [flag, text]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse: usage and one error line
        code = exit_.code
    err = capsys.readouterr().err
    valid = method != "magic" and all(FLAGS[f](_parse(t)) for f, t in flags.items())
    if "--update-prob" in flags and method in ("dni", "bprop"):
        valid = valid and method != "bprop"  # only methods with synthetic gradients take an update probability
    assert "Traceback" not in err
    if valid:
        assert code == 0 and len(ran) == 1, f"{argv} refused: {err}"
    else:
        assert code == 2 and not ran, f"{argv} accepted: code {code}"
        assert err.strip().splitlines()[-1].startswith("sglab") and "error:" in err.strip().splitlines()[-1]


def _fake_result(config):
    from sglab.training import TrainResult

    return TrainResult(None, {"task": "classify", "method": config.method, "model": "fcn", "layers": config.layers,
                              "dataset": "embedded", "final_test_error": 0.5, "steps": config.steps, "train_time_s": 0.0},
                       [])


def minimal_profile():
    stage = {"index": 0, "name": "s0", "times_ns": {"F": 10, "B": 20, "U": 5}, "activation_bytes": 4,
             "gradient_bytes": 4, "parameter_bytes": 8}
    return {"schema": "sglab.cost_profile", "version": 1, "model": {"name": "m", "num_stages": 2}, "method": "dni",
            "measurement": {"source": "microbenchmark", "device": "cpu", "device_name": "x", "torch_version": "2",
                            "dtype": "float32", "batch_size": 8, "repeats": 3, "warmup": 1, "statistic": "median",
                            "timer": "perf_counter", "host": "h", "created": "now"},
            "stages": [stage, {**copy.deepcopy(stage), "index": 1}]}


PROFILE_FIELDS = {
    ("stages", 0, "times_ns", "F"): lambda v: _number_above(-1e-300)(v) or v == 0,
    ("stages", 1, "activation_bytes"): _int_at_least(0),
    ("measurement", "batch_size"): _int_at_least(1),
    ("measurement", "repeats"): _int_at_least(0),
    ("model", "num_stages"): lambda v: v == 2 and not isinstance(v, bool),
}


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(PROFILE_FIELDS)), NUMBERS, min_size=1, max_size=2))
def test_cost_profile_json(changes):
    data = minimal_profile()
    for path, value in changes.items():
        where = data
        for key in path[:-1]:
            where = where[key]
        where[path[-1]] = value
    valid = all(PROFILE_FIELDS[p](v) for p, v in changes.items())
    try:
        CostProfile.from_dict(json.loads(json.dumps(data)))
    except ProfileError as err:
        assert not valid and one_clear_line(str(err)) and "field" in str(err), f"{changes}: {err}"
        return
    assert valid, f"{changes} accepted silently"


HARDWARE_FIELDS = {
    ("link", "bandwidth_GB_per_s"): _number_above(0),
    ("link", "latency_us"): lambda v: _number_above(-1e-300)(v) or v == 0,
    ("devices", "count"): _int_at_least(1),
    ("devices", "speed"): _number_above(0),
}


@SETTINGS
@given(st.dictionaries(st.sampled_from(sorted(HARDWARE_FIELDS)), NUMBERS, min_size=1, max_size=2))
def test_hardware_specs(changes):
    from sglab.sim import hardware_from_dict

    spec = {"name": "h", "devices": {"count": 2, "name": "n", "speed": 1.0}, "topology": "switch",
            "link": {"latency_us": 1, "bandwidth_GB_per_s": 1}}
    for (part, key), value in changes.items():
        spec[part][key] = value
    valid = all(HARDWARE_FIELDS[p](v) for p, v in changes.items())
    try:
        hardware_from_dict(json.loads(json.dumps(spec)))
    except SglabError as err:
        assert not valid and one_clear_line(str(err)), f"{changes}: {err}"
        return
    assert valid, f"{changes} accepted silently"


@pytest.mark.parametrize("task, values, message", [
    ("classify", {"update_prob": 0.5, "method": "bprop"}, "applies to methods with synthetic gradients"),
    ("copy", {"max_length": 2, "min_length": 5}, "'max_length' must be >= min_length"),
    ("charlm", {}, "needs a text file"),
    ("two-rnn", {"method": "dni-aux"}, "cannot run method 'dni-aux'"),
])
def test_settings_that_cannot_work_together_are_named(task, values, message):
    with pytest.raises(UsageError, match=message):
        make_config(task, values)
