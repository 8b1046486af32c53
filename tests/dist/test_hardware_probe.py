"""``sglab hardware probe``: the fit, a real two-process probe whose spec the simulator loads, and its errors."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

from sglab.cli import main
from sglab.costprofile import CostProfile, Measurement, StageCost
from sglab.dist import RankFailed
from sglab.dist.hardware_probe import DEFAULT_SIZES, fit_latency_bandwidth, probe_hardware
from sglab.errors import UsageError
from sglab.sim import HardwareError, hardware_from_dict, hardware_to_dict, load_hardware

TINY = ["--sizes", "4,1K,64K", "--repeats", "3", "--warmup", "1", "--kernel", "32x64x64", "--kernel-repeats", "3",
        "--overhead-calls", "10", "--timeout", "20"]


def test_the_fit_recovers_latency_and_bandwidth_from_exact_timings():
    latency, bandwidth = 37e-6, 2.5e9
    times = [latency + n / bandwidth for n in DEFAULT_SIZES]
    fit = fit_latency_bandwidth(DEFAULT_SIZES, times)
    assert fit.latency_s == pytest.approx(latency, rel=1e-9)
    assert fit.bandwidth_bytes_per_s == pytest.approx(bandwidth, rel=1e-9)
    assert fit.rms_relative_residual < 1e-9 and fit.max_relative_residual < 1e-9


def test_the_fit_keeps_latency_and_inverse_bandwidth_non_negative():
    sizes = [4, 1024, 1 << 20]
    fit = fit_latency_bandwidth(sizes, [n / 1e9 for n in sizes])  # no latency at all
    assert fit.latency_s == 0 and fit.bandwidth_bytes_per_s == pytest.approx(1e9)
    flat = fit_latency_bandwidth(sizes, [3e-5, 2e-5, 1e-5])  # time falls with size: no finite bandwidth fits
    assert math.isinf(flat.bandwidth_bytes_per_s) and flat.latency_s > 0
    with pytest.raises(UsageError, match="two different sizes"):
        fit_latency_bandwidth([8, 8], [1e-5, 2e-5])


def test_op_overhead_is_an_optional_device_field_the_engine_adds():
    spec = {"devices": {"count": 2, "speed": 2.0, "op_overhead_us": 5}, "link": {"latency_ns": 0,
                                                                                 "bandwidth_bytes_per_s": "inf"}}
    hw = hardware_from_dict(spec)
    assert hw.devices[1].compute_ns(10_000) == 5_000 + 5_000
    assert hardware_from_dict(hardware_to_dict(hw)) == hw
    with pytest.raises(HardwareError, match=r"devices\[0\].op_overhead_ns must be >= 0"):
        hardware_from_dict({"devices": [{"speed": 1, "op_overhead_ns": -1}]})


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """One real two-process probe through the CLI, tiny sizes and repeats: (exit code, stdout, spec path)."""
    out = tmp_path_factory.mktemp("probe") / "machine.yaml"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["hardware", "probe", "--processes", "2", "--out", str(out), *TINY])
    return code, stdout.getvalue(), out


def test_the_cli_writes_the_spec_and_its_sidecar(probed):
    code, text, out = probed
    assert code == 0
    assert out.is_file() and out.with_name("machine.probe.json").is_file()
    assert "slowdown" in text and "latency" in text and f"wrote {out}" in text


def test_the_spec_loads_with_a_positive_finite_link_and_round_trips(probed):
    _, _, out = probed
    hw = load_hardware(out)
    assert hw.num_devices == 2 and not hw.hypothetical and hw.topology == "fully_connected"
    assert 0 < hw.link.latency_ns < 1e9
    # sizes of at most 64 KiB on a busy machine may show no growth with size: an infinite bandwidth
    assert hw.link.bandwidth_bytes_per_s is None or 0 < hw.link.bandwidth_bytes_per_s < 1e15
    assert all(d.speed == 1.0 and d.op_overhead_ns > 0 for d in hw.devices)
    assert hardware_from_dict(hardware_to_dict(hw)) == hw
    report = json.loads(out.with_name("machine.probe.json").read_text())
    assert hardware_from_dict(report["spec"]) == hw
    assert report["machine"]["backend"] == "gloo" and report["machine"]["torch_version"]
    assert report["link"]["sizes_bytes"] == [4, 1024, 65536] and len(report["link"]["one_way_median_ns"]) == 3
    assert [row["processes"] for row in report["contention"]["rows"]] == [1, 2]
    assert hw.contention[0] == 1.0
    assert hw.contention[1] == pytest.approx(report["contention"]["rows"][1]["slowdown"], rel=1e-5)


def test_sglab_simulate_accepts_the_spec(probed, tmp_path, capsys):
    _, _, out = probed
    stages = [StageCost(index=i, name=f"fc{i}", times_ns={"F": 100_000, "B": 200_000, "U": 30_000, "S": 20_000,
                                                           "T": 40_000}, activation_bytes=4096, gradient_bytes=4096,
                        parameter_bytes=65536) for i in range(2)]
    measurement = Measurement(source="test fixture", device="cpu", device_name="fixture", torch_version="n/a",
                              dtype="float32", batch_size=32, repeats=1, warmup=0)
    profile = CostProfile(model={"name": "fixture", "num_stages": 2}, method="dni", measurement=measurement,
                          stages=stages).save(tmp_path / "p.json")
    assert main(["simulate", "--profile", str(profile), "--hardware", str(out), "--method", "dni", "--steps", "3"]) == 0
    assert "dni" in capsys.readouterr().out


def test_fewer_than_two_processes_exits_2_with_one_line(tmp_path, capsys):
    assert main(["hardware", "probe", "--processes", "1", "--out", str(tmp_path / "m.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("sglab hardware: error: --processes must be >= 2"), err
    with pytest.raises(UsageError, match="--processes"):
        probe_hardware(1)


def test_a_failed_rank_raises_rank_failed():
    with pytest.raises(RankFailed) as caught:
        probe_hardware(2, sizes=(4, 64), repeats=1, warmup=0, kernel=(8, 8, 8), kernel_repeats=1, timeout=10,
                       run_timeout=30, fail_rank=1)
    assert caught.value.rank == 1 and "injected failure" in str(caught.value)


def test_the_probe_times_the_senders_post_and_writes_it_as_link_sender(probed):
    _, _, out = probed
    hw = load_hardware(out)
    report = json.loads(out.with_name("machine.probe.json").read_text())
    assert len(report["link"]["post_median_ns"]) == 3 and report["link"]["post_fit"]["latency_ns"] >= 0
    assert hw.link.sender is not None and hw.link.sender.latency_ns == round(report["link"]["post_fit"]["latency_ns"])
    assert 0 <= hw.link.sender_ns(65536) <= hw.link.transfer_ns(65536)
