"""Reading hardware specs from JSON/YAML with errors that name the bad field.

Layout (YAML shown; JSON is the same mapping)::

    name: cpu4-10gbe
    description: four copies of the profiled device on 10 Gigabit Ethernet
    hypothetical: true
    sources: ["IEEE 802.3ae-2002: 10 Gb/s Ethernet"]
    reference_flops: 1.0e12          # FLOP/s of the profiled device; needed only if a device gives flops
    devices:                          # a list, or one template with a count
      count: 4
      name: node                      # node0 .. node3
      speed: 1.0                      # or flops: 19.5e12
      memory_GB: 64                   # or memory_bytes; absent: unlimited
      slowdown: {distribution: lognormal, sigma: 0.05}   # optional stragglers/jitter
      op_overhead_us: 8               # optional fixed cost per compute op (or op_overhead_ns); default 0
    topology: switch                  # fully_connected | chain | ring | switch | bus | custom
    link: {latency_us: 10, bandwidth_Gbit_per_s: 10, duplex: true}    # optional sender: {latency_ns, bandwidth_*}
    links: [{between: [node0, node1], latency_ns: 500, bandwidth_GB_per_s: 25}]   # custom only
    placement: blocked                # blocked | round_robin | [device name or index per stage]
    contention: {slowdown: [1.0, 1.07]}   # optional: every compute op's slowdown while 1, 2, ... devices compute

Units: ``latency_ns``/``latency_us``/``latency_ms``; ``bandwidth_bytes_per_s``/
``bandwidth_GB_per_s`` (1e9 bytes)/``bandwidth_Gbit_per_s``, or ``"inf"`` for a free link;
``memory_bytes``/``memory_GB``; ``op_overhead_ns``/``op_overhead_us``.

``op_overhead_*`` is added to every compute op the device runs, after dividing the profiled cost
by ``speed`` (and before the slowdown factor multiplies the whole). A profile measured op by op
already contains the launch cost of each op's own kernels, so leave it 0 for such a profile on the
machine it was measured on; set it to model a fixed per-op cost the profile lacks (the dispatch and
bookkeeping of another runtime, or of one process per stage). ``sglab hardware probe`` measures
the cost of a tiny op (a 1x4 Linear forward) on the machine it runs on and writes it here.

``contention`` models devices that share one machine's cores and memory bandwidth (local processes):
while ``n`` devices compute at once, every running compute op progresses ``slowdown[n-1]`` times slower
(the last entry for more), so an op's duration depends on what the other devices do meanwhile
(processor sharing, recomputed whenever a device starts or finishes an op). ``slowdown[0]`` must be
1 when ``speed`` already is the speed of one device alone. Without it devices are independent.

A link's optional ``sender: {latency_*, bandwidth_*}`` is the sending device's own busy time per
message, where sending is not offloaded (gloo on a CPU copies into the socket in the calling thread;
``sglab hardware probe`` times the post): the op whose output is sent holds its device that much
longer, and the first hop carries the rest of the transfer time. Without it sending costs the
device nothing (DMA, NCCL), the simulator's default assumption.

A spec of a *measured* machine says ``hypothetical: false`` and keeps its provenance in
``description`` and ``sources`` (``sglab hardware probe`` also writes the raw numbers to a
``.probe.json`` next to the spec); the loader reads no other top-level field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sglab.sim.errors import HardwareError
from sglab.sim.hardware import DISTRIBUTIONS, PLACEMENTS, TOPOLOGIES, Device, Hardware, Link, LinkSpec, Slowdown

_LATENCY = {"latency_ns": 1, "latency_us": 1_000, "latency_ms": 1_000_000}
_BANDWIDTH = {"bandwidth_bytes_per_s": 1, "bandwidth_GB_per_s": 1_000_000_000, "bandwidth_Gbit_per_s": 125_000_000}
_MEMORY = {"memory_bytes": 1, "memory_GB": 1_000_000_000}
_OVERHEAD = {"op_overhead_ns": 1, "op_overhead_us": 1_000}
_TOP_KEYS = {"name", "description", "hypothetical", "sources", "reference_flops", "devices", "topology", "link",
             "links", "placement", "contention"}


def _fail(where: str, message: str) -> None:
    raise HardwareError(f"{where} {message}")


def _number(value: Any, where: str, minimum: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        _fail(where, f"must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        _fail(where, f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return float(value)


def _unit(raw: dict, where: str, units: dict[str, int], required: bool, allow_inf: bool = False):
    """The value of the one key of ``units`` present in ``raw``, in base units (None: absent or inf)."""
    given = [key for key in units if key in raw]
    if len(given) > 1:
        _fail(f"{where}.{given[1]}", f"conflicts with {where}.{given[0]}: give one of {', '.join(units)}")
    if not given:
        if required:
            _fail(where, f"needs one of {', '.join(units)}")
        return None
    key = given[0]
    value = raw[key]
    if allow_inf and value == "inf":
        return None
    minimum_ok = key.startswith(("latency", "op_overhead"))
    return int(round(_number(value, f"{where}.{key}", 0.0, strict=not minimum_ok) * units[key]))


def _check_keys(raw: dict, where: str, allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        _fail(f"{where}.{unknown[0]}", f"is not a known field (known: {', '.join(sorted(allowed))})")


def link_spec_from_dict(raw: Any, where: str) -> LinkSpec:
    """A :class:`LinkSpec` from ``{latency_*, bandwidth_*, duplex, sender}``."""
    if not isinstance(raw, dict):
        _fail(where, f"must be a mapping with latency and bandwidth, got {raw!r}")
    _check_keys(raw, where, set(_LATENCY) | set(_BANDWIDTH) | {"duplex", "between", "sender"})
    duplex = raw.get("duplex", True)
    if not isinstance(duplex, bool):
        _fail(f"{where}.duplex", f"must be true or false, got {duplex!r}")
    latency = _unit(raw, where, _LATENCY, required=True)
    bandwidth = _unit(raw, where, _BANDWIDTH, required=True, allow_inf=True)
    sender = None
    if "sender" in raw:
        if not isinstance(raw["sender"], dict):
            _fail(f"{where}.sender", f"must be a mapping with latency and bandwidth, got {raw['sender']!r}")
        _check_keys(raw["sender"], f"{where}.sender", set(_LATENCY) | set(_BANDWIDTH))
        sender = LinkSpec(latency_ns=_unit(raw["sender"], f"{where}.sender", _LATENCY, required=True),
                          bandwidth_bytes_per_s=_unit(raw["sender"], f"{where}.sender", _BANDWIDTH, required=True,
                                                      allow_inf=True))
    return LinkSpec(latency_ns=latency, bandwidth_bytes_per_s=bandwidth, duplex=duplex, sender=sender)


def _slowdown(raw: Any, where: str) -> Slowdown:
    if not isinstance(raw, dict) or raw.get("distribution") not in DISTRIBUTIONS:
        _fail(f"{where}.distribution", f"must be one of {', '.join(DISTRIBUTIONS)}")
    names = DISTRIBUTIONS[raw["distribution"]]
    _check_keys(raw, where, {"distribution", *names})
    params = {}
    for name in names:
        if name not in raw:
            _fail(f"{where}.{name}", f"is missing ({raw['distribution']} needs {', '.join(names)})")
        strict = name in ("factor", "low")
        params[name] = _number(raw[name], f"{where}.{name}", 0.0, strict=strict)
    if "high" in params and params["high"] < params["low"]:
        _fail(f"{where}.high", f"must be >= low ({params['low']:g}), got {params['high']:g}")
    if "p" in params and params["p"] > 1:
        _fail(f"{where}.p", f"must be a probability in [0, 1], got {params['p']:g}")
    return Slowdown(raw["distribution"], tuple(params.items()))


def _device(raw: Any, where: str, name: str, reference_flops: float | None) -> Device:
    if not isinstance(raw, dict):
        _fail(where, f"must be a mapping, got {raw!r}")
    _check_keys(raw, where, {"name", "count", "speed", "flops", "slowdown", *_MEMORY, *_OVERHEAD})
    if ("speed" in raw) == ("flops" in raw):
        _fail(where, "needs exactly one of speed (relative to the profiled device) or flops")
    if "flops" in raw:
        flops = _number(raw["flops"], f"{where}.flops")
        if reference_flops is None:
            _fail(f"{where}.flops", "needs reference_flops (FLOP/s of the device the profile was measured on) "
                  "at the top level of the spec or --reference-flops")
        speed = flops / reference_flops
    else:
        speed = _number(raw["speed"], f"{where}.speed")
    memory = _unit(raw, where, _MEMORY, required=False)
    slowdown = _slowdown(raw["slowdown"], f"{where}.slowdown") if "slowdown" in raw else None
    overhead = _unit(raw, where, _OVERHEAD, required=False) or 0
    return Device(name=name, speed=speed, memory_bytes=memory, slowdown=slowdown, op_overhead_ns=overhead)


def _devices(raw: Any, reference_flops: float | None) -> tuple[Device, ...]:
    if isinstance(raw, dict):  # one template, repeated
        count = raw.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            _fail("devices.count", f"must be an integer >= 1, got {count!r}")
        stem = str(raw.get("name", "dev"))
        return tuple(_device(raw, "devices", f"{stem}{i}", reference_flops) for i in range(count))
    if not isinstance(raw, list) or not raw:
        _fail("devices", "must be a non-empty list of devices or a template with a count")
    devices = tuple(_device(d, f"devices[{i}]", str(d.get("name", f"dev{i}")) if isinstance(d, dict) else "",
                            reference_flops) for i, d in enumerate(raw))
    seen: set[str] = set()
    for i, device in enumerate(devices):
        if not device.name or device.name in ("bus", "switch") or "->" in device.name:
            _fail(f"devices[{i}].name", f"must be non-empty, not 'bus' or 'switch', without '->'; got {device.name!r}")
        if device.name in seen:
            _fail(f"devices[{i}].name", f"repeats {device.name!r}; device names must be unique")
        seen.add(device.name)
    return devices


def _device_ref(value: Any, where: str, names: list[str]) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return value
    if isinstance(value, str) and value in names:
        return names.index(value)
    _fail(where, f"must name a device ({', '.join(names)}) or give its index 0..{len(names) - 1}, got {value!r}")


def _links(raw: Any, names: list[str]) -> tuple[Link, ...]:
    if not isinstance(raw, list) or not raw:
        _fail("links", "must be a non-empty list when topology is custom")
    links, seen = [], set()
    for i, entry in enumerate(raw):
        where = f"links[{i}]"
        spec = link_spec_from_dict(entry, where)
        pair = entry.get("between")
        if not isinstance(pair, list) or len(pair) != 2:
            _fail(f"{where}.between", f"must list two devices, got {pair!r}")
        a, b = (_device_ref(x, f"{where}.between", names) for x in pair)
        if a == b or frozenset((a, b)) in seen:
            _fail(f"{where}.between", f"must join two different devices once, got {pair!r}")
        seen.add(frozenset((a, b)))
        links.append(Link(a, b, spec))
    return tuple(links)


def hardware_from_dict(data: Any, reference_flops: float | None = None) -> Hardware:
    """Validate a spec mapping and build a :class:`Hardware`; ``reference_flops`` overrides the spec's."""
    if not isinstance(data, dict):
        _fail("<root>", "must be a mapping")
    _check_keys(data, "<root>", _TOP_KEYS)
    if reference_flops is not None:
        reference_flops = _number(reference_flops, "reference_flops")
    elif data.get("reference_flops") is not None:
        reference_flops = _number(data["reference_flops"], "reference_flops")
    devices = _devices(data.get("devices"), reference_flops)
    names = [d.name for d in devices]
    topology = data.get("topology", "fully_connected")
    if topology not in TOPOLOGIES:
        _fail("topology", f"must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
    links = _links(data.get("links"), names) if topology == "custom" else ()
    if topology != "custom" and "link" not in data and len(devices) > 1:
        _fail("link", f"is missing: topology {topology} needs one link spec (latency and bandwidth)")
    link = link_spec_from_dict(data["link"], "link") if "link" in data else LinkSpec()
    placement = data.get("placement", "blocked")
    if isinstance(placement, list):
        placement = tuple(_device_ref(x, f"placement[{i}]", names) for i, x in enumerate(placement))
    elif placement not in PLACEMENTS:
        _fail("placement", f"must be one of {', '.join(PLACEMENTS)} or a list of devices, got {placement!r}")
    sources = data.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        _fail("sources", "must be a list of strings")
    contention = _contention(data.get("contention"))
    return Hardware(contention=contention, name=str(data.get("name", "hardware")), devices=devices, topology=topology, link=link,
                    links=links, placement=placement, description=str(data.get("description", "")),
                    hypothetical=bool(data.get("hypothetical", True)), sources=tuple(sources))


def _contention(raw: Any) -> tuple[float, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        _fail("contention", "must be a mapping {slowdown: [factor with 1 device computing, with 2, ...]}")
    _check_keys(raw, "contention", {"slowdown"})
    factors = raw.get("slowdown")
    if not isinstance(factors, list) or not factors:
        _fail("contention.slowdown", "must be a non-empty list of factors (1 device computing, 2, ...)")
    return tuple(_number(f, f"contention.slowdown[{i}]") for i, f in enumerate(factors))


def hardware_to_dict(hw: Hardware) -> dict[str, Any]:
    """The spec mapping of ``hw`` (``hardware_from_dict`` reads it back to an equal value)."""

    def link(spec: LinkSpec) -> dict[str, Any]:
        bandwidth = "inf" if spec.bandwidth_bytes_per_s is None else spec.bandwidth_bytes_per_s
        out = {"latency_ns": spec.latency_ns, "bandwidth_bytes_per_s": bandwidth, "duplex": spec.duplex}
        if spec.sender is not None:
            out["sender"] = {k: v for k, v in link(spec.sender).items() if k != "duplex"}
        return out

    def device(d: Device) -> dict[str, Any]:
        out: dict[str, Any] = {"name": d.name, "speed": d.speed}
        if d.memory_bytes is not None:
            out["memory_bytes"] = d.memory_bytes
        if d.slowdown is not None:
            out["slowdown"] = {"distribution": d.slowdown.distribution, **dict(d.slowdown.params)}
        if d.op_overhead_ns:
            out["op_overhead_ns"] = d.op_overhead_ns
        return out

    out: dict[str, Any] = {"name": hw.name, "description": hw.description, "hypothetical": hw.hypothetical,
                           "sources": list(hw.sources), "devices": [device(d) for d in hw.devices],
                           "topology": hw.topology, "link": link(hw.link),
                           "placement": list(hw.placement) if isinstance(hw.placement, tuple) else hw.placement}
    if hw.contention:
        out["contention"] = {"slowdown": list(hw.contention)}
    if hw.links:
        out["links"] = [{"between": [lk.a, lk.b], **link(lk.spec)} for lk in hw.links]
    return out


def load_hardware(source: str | Path | dict, reference_flops: float | None = None) -> Hardware:
    """A preset by name, a ``.json``/``.yaml``/``.yml`` spec file, or a spec mapping."""
    from sglab.sim.presets import PRESET_SPECS

    if isinstance(source, dict):
        return hardware_from_dict(source, reference_flops)
    if isinstance(source, str) and source in PRESET_SPECS:
        return _prefixed(f"preset {source!r}", PRESET_SPECS[source], reference_flops)
    path = Path(source)
    if not path.is_file():
        raise HardwareError(f"{source}: neither a preset ({', '.join(PRESET_SPECS)}) nor a spec file")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # optional: only YAML specs need it

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ImportError:
        raise HardwareError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write JSON") from None
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        raise HardwareError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'} ({err})") from None
    return _prefixed(str(path), data, reference_flops)


def _prefixed(label: str, data: Any, reference_flops: float | None) -> Hardware:
    try:
        return hardware_from_dict(data, reference_flops)
    except HardwareError as err:
        raise HardwareError(f"{label}: {err}") from None
