"""Hardware specs: presets, validation messages naming the field, routes, placement, units."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from sglab.sim import PRESETS, HardwareError, LinkSpec, hardware_from_dict, hardware_to_dict, load_hardware

BASE = {
    "name": "spec",
    "devices": [{"name": "a", "speed": 1.0}, {"name": "b", "speed": 2.0, "memory_GB": 16}],
    "topology": "fully_connected",
    "link": {"latency_us": 1, "bandwidth_GB_per_s": 10},
}


def spec(**changes):
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_load_and_cite_sources(name):
    hw = load_hardware(name, reference_flops=1e12)
    assert hw.hypothetical and "HYPOTHETICAL" in hw.description
    assert hw.sources and all(isinstance(s, str) and s for s in hw.sources)
    assert hw.num_devices >= 4


def test_flops_presets_need_reference_flops():
    with pytest.raises(HardwareError, match=r"devices\.flops needs reference_flops"):
        load_hardware("dgx-a100")
    hw = load_hardware("dgx-a100", reference_flops=1.95e12)
    assert hw.devices[0].speed == pytest.approx(10.0)


@pytest.mark.parametrize("data, message", [
    (spec(devices=[{"name": "a", "speed": 1.0}, {"name": "b", "speed": -1}]),
     r"devices\[1\]\.speed must be > 0, got -1"),
    (spec(devices=[{"name": "a", "speed": 1.0}, {"name": "a", "speed": 1.0}]), r"devices\[1\]\.name repeats 'a'"),
    (spec(devices=[{"name": "a"}]), r"devices\[0\] needs exactly one of speed .* or flops"),
    (spec(devices={"count": 0, "speed": 1}), r"devices\.count must be an integer >= 1"),
    (spec(devices=[]), r"devices must be a non-empty list"),
    (spec(topology="mesh"), r"topology must be one of .*got 'mesh'"),
    (spec(link={"latency_us": 1}), r"link needs one of bandwidth_bytes_per_s"),
    (spec(link={"latency_us": 1, "bandwidth_GB_per_s": 0}), r"link\.bandwidth_GB_per_s must be > 0"),
    (spec(link={"latency_us": -1, "bandwidth_GB_per_s": 1}), r"link\.latency_us must be >= 0"),
    (spec(link={"latency_us": 1, "latency_ns": 5, "bandwidth_GB_per_s": 1}),
     r"link\.latency_us conflicts with link\.latency_ns"),
    (spec(link={"latency_us": 1, "bandwidth_GB_per_s": 1, "duplex": "yes"}), r"link\.duplex must be true or false"),
    (spec(colour="red"), r"<root>\.colour is not a known field"),
    (spec(placement="random"), r"placement must be one of blocked, round_robin"),
    (spec(placement=["a", "c"]), r"placement\[1\] must name a device"),
    (spec(topology="custom"), r"links must be a non-empty list when topology is custom"),
    (spec(topology="custom", links=[{"between": ["a", "z"], "latency_ns": 0, "bandwidth_GB_per_s": 1}]),
     r"links\[0\]\.between must name a device"),
    (spec(devices=[{"name": "a", "speed": 1, "slowdown": {"distribution": "pareto"}}, {"name": "b", "speed": 1}]),
     r"devices\[0\]\.slowdown\.distribution must be one of constant, uniform, lognormal, bernoulli"),
    (spec(devices=[{"name": "a", "speed": 1, "slowdown": {"distribution": "bernoulli", "p": 2, "factor": 3}},
                   {"name": "b", "speed": 1}]), r"devices\[0\]\.slowdown\.p must be a probability"),
    (spec(devices=[{"name": "a", "speed": 1, "slowdown": {"distribution": "uniform", "low": 2, "high": 1}},
                   {"name": "b", "speed": 1}]), r"devices\[0\]\.slowdown\.high must be >= low"),
    (spec(devices=[{"name": "a", "speed": 1, "memory_GB": "lots"}, {"name": "b", "speed": 1}]),
     r"devices\[0\]\.memory_GB must be a finite number"),
    ([1, 2], r"<root> must be a mapping"),
])
def test_malformed_specs_name_the_field(data, message):
    with pytest.raises(HardwareError, match=message):
        hardware_from_dict(data)


def test_spec_files_json_and_yaml(tmp_path):
    json_path = tmp_path / "hw.json"
    json_path.write_text(json.dumps(BASE))
    yaml_path = tmp_path / "hw.yaml"
    yaml_path.write_text("name: spec\ndevices: [{name: a, speed: 1.0}, {name: b, speed: 2.0, memory_GB: 16}]\n"
                         "topology: fully_connected\nlink: {latency_us: 1, bandwidth_GB_per_s: 10}\n")
    assert load_hardware(json_path) == load_hardware(yaml_path) == hardware_from_dict(BASE)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec(topology="mesh")))
    with pytest.raises(HardwareError, match=r"bad\.json: topology must be one of"):
        load_hardware(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(HardwareError, match="not valid JSON"):
        load_hardware(broken)
    with pytest.raises(HardwareError, match="neither a preset .*cluster-10gbe.* nor a spec file"):
        load_hardware(tmp_path / "missing.json")


def test_round_trip_and_units():
    hw = hardware_from_dict(BASE)
    assert hardware_from_dict(hardware_to_dict(hw)) == hw
    assert hw.link == LinkSpec(latency_ns=1000, bandwidth_bytes_per_s=10_000_000_000)
    assert hw.devices[1].memory_bytes == 16_000_000_000
    gbit = hardware_from_dict(spec(link={"latency_ns": 0, "bandwidth_Gbit_per_s": 10}))
    assert gbit.link.bandwidth_bytes_per_s == 1_250_000_000


def test_transfer_time_is_latency_plus_bytes_over_bandwidth_rounded_up():
    link = LinkSpec(latency_ns=500, bandwidth_bytes_per_s=3_000_000_000)
    assert link.transfer_ns(3000) == 500 + 1000
    assert link.transfer_ns(3001) == 500 + 1001  # ceil, never fractional ns
    assert link.transfer_ns(0) == 500
    assert LinkSpec(latency_ns=7).transfer_ns(10**9) == 7  # infinite bandwidth


def test_routes_per_topology():
    def names(topology, src, dst, n=4, **extra):
        hw = hardware_from_dict({"devices": {"count": n, "name": "d", "speed": 1}, "topology": topology,
                                 "link": {"latency_ns": 0, "bandwidth_bytes_per_s": "inf"}, **extra})
        return [name for name, _ in hw.route(src, dst)]

    assert names("fully_connected", 0, 3) == ["d0->d3"]
    assert names("chain", 0, 3) == ["d0->d1", "d1->d2", "d2->d3"]
    assert names("ring", 0, 3) == ["d0->d3"]
    assert names("switch", 2, 1) == ["d2->switch", "switch->d1"]
    assert names("bus", 2, 1) == ["bus"]
    assert names("chain", 2, 2) == []
    half = hardware_from_dict({"devices": {"count": 2, "name": "d", "speed": 1}, "topology": "chain",
                               "link": {"latency_ns": 0, "bandwidth_bytes_per_s": "inf", "duplex": False}})
    assert half.route(0, 1)[0][0] == half.route(1, 0)[0][0] == "d0<->d1"
    island = hardware_from_dict({"devices": {"count": 3, "name": "d", "speed": 1}, "topology": "custom",
                                 "links": [{"between": ["d0", "d1"], "latency_ns": 0, "bandwidth_GB_per_s": 1}]})
    with pytest.raises(HardwareError, match="no route from d0 to d2"):
        island.route(0, 2)


def test_placement_policies():
    hw = hardware_from_dict({"devices": {"count": 4, "speed": 1}, "topology": "bus",
                             "link": {"latency_ns": 0, "bandwidth_bytes_per_s": "inf"}})
    assert hw.placement_for(3) == [0, 1, 2]
    assert hw.placement_for(8) == [0, 0, 1, 1, 2, 2, 3, 3]
    rr = hardware_from_dict({**hardware_to_dict(hw), "placement": "round_robin"})
    assert rr.placement_for(6) == [0, 1, 2, 3, 0, 1]
    fixed = hardware_from_dict({**hardware_to_dict(hw), "placement": [3, "dev0"]})
    assert fixed.placement_for(2) == [3, 0]
    with pytest.raises(HardwareError, match="placement lists 2 devices but the profile has 3 stages"):
        fixed.placement_for(3)


def test_resized_and_with_link():
    hw = load_hardware("cluster-10gbe")
    small = hw.resized(3)
    assert [d.name for d in small.devices] == ["node0", "node1", "node2"]
    assert small.with_link(bandwidth_bytes_per_s=None).link.bandwidth_bytes_per_s is None
    assert small.with_link(latency_ns=5).link.latency_ns == 5
    mixed = hardware_from_dict(BASE)
    with pytest.raises(HardwareError, match="only a machine of identical devices"):
        mixed.resized(4)


def test_slowdown_sampling_is_seeded():
    hw = load_hardware("cluster-10gbe-stragglers")
    slow = hw.devices[0].slowdown
    a = slow.sample(np.random.default_rng(3), 1000)
    b = slow.sample(np.random.default_rng(3), 1000)
    assert np.array_equal(a, b)
    assert set(np.unique(a)) <= {1.0, 4.0} and 0 < (a == 4.0).sum() < 100


def test_placement_on_the_first_num_devices():
    hw = hardware_from_dict({"devices": {"count": 8, "speed": 1}, "topology": "bus",
                             "link": {"latency_ns": 0, "bandwidth_bytes_per_s": "inf"}})
    assert hw.placement_for(3, num_devices=4) == [0, 1, 2]
    assert hw.placement_for(6, num_devices=4) == [0, 0, 1, 2, 2, 3]
    assert hw.placement_for(6, num_devices=8) == hw.placement_for(6) == [0, 1, 2, 3, 4, 5]
    rr = hardware_from_dict({**hardware_to_dict(hw), "placement": "round_robin"})
    assert rr.placement_for(6, num_devices=4) == [0, 1, 2, 3, 0, 1]
    fixed = hardware_from_dict({**hardware_to_dict(hw), "placement": [1, 0, 5]})
    assert fixed.placement_for(3, num_devices=6) == [1, 0, 5]
    with pytest.raises(HardwareError, match="placement uses device 5, but only the first 4 devices are available"):
        fixed.placement_for(3, num_devices=4)
    with pytest.raises(HardwareError, match=r"num_devices must be 1\.\.8 \(the devices it has\), got 9"):
        hw.placement_for(3, num_devices=9)
