"""Hypothetical machines to simulate on, with parameters taken from public specifications.

Every preset is *hypothetical*: nobody measured these machines running sglab. Bandwidths and
device throughputs are vendor or standard figures (peak, not achieved); latencies are rounded
figures from the cited documents or, where marked, assumptions. ``speed`` 1.0 means "a copy of
the device the profile was measured on", which is the only honest choice when the profile comes
from an unknown CPU; the GPU presets give FLOP/s instead and need ``--reference-flops`` (the
FLOP/s of the profiled device) to turn them into relative speeds.

Load one with ``load_hardware("cluster-10gbe")``; copy a spec below into a file to make your own.
"""

from __future__ import annotations

from typing import Any

_ETHERNET_10G = "IEEE 802.3ae-2002: 10 Gigabit Ethernet, 10 Gb/s per direction (= 1.25 GB/s)"
_LATENCY_TCP = ("ASSUMED: 10 µs per hop for a kernel TCP stack over 10GbE; a rounded, typical ping-pong "
                "figure, not a specification value")
_HDR = ("NVIDIA ConnectX-6 adapter user manual (docs.nvidia.com/networking/display/ConnectX6EN/Introduction): "
        "200 Gb/s InfiniBand/Ethernet ports, sub-600 ns latency")
_A100 = ("NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf): "
         "19.5 TFLOPS FP32 (non-tensor), 40 GB HBM2, NVLink 600 GB/s total (300 GB/s per direction)")
_NVSWITCH = ("NVIDIA Ampere architecture whitepaper: six 2nd-generation NVSwitches give every pair of the "
             "8 GPUs of a DGX A100 the full 600 GB/s NVLink bandwidth")
_RTX3090 = ("NVIDIA Ampere GA102 GPU architecture whitepaper: GeForce RTX 3090, 35.6 TFLOPS peak FP32, "
            "24 GB GDDR6X")
_PCIE4 = ("PCI-SIG PCI Express Base Specification 4.0: 16 GT/s per lane, 128b/130b encoding: "
          "31.5 GB/s per direction for x16")

#: Preset name → hardware spec mapping (the same layout a JSON/YAML spec file uses).
PRESET_SPECS: dict[str, dict[str, Any]] = {
    "cluster-10gbe": {
        "name": "cluster-10gbe",
        "description": "HYPOTHETICAL: 8 copies of the profiled device, one per node, on 10 Gigabit Ethernet "
                       "through a store-and-forward switch",
        "hypothetical": True,
        "sources": [_ETHERNET_10G, _LATENCY_TCP, "ASSUMED: 64 GB memory per node"],
        "devices": {"count": 8, "name": "node", "speed": 1.0, "memory_GB": 64},
        "topology": "switch",
        "link": {"latency_us": 10, "bandwidth_Gbit_per_s": 10, "duplex": True},
    },
    "cluster-ib-hdr": {
        "name": "cluster-ib-hdr",
        "description": "HYPOTHETICAL: 8 copies of the profiled device, one per node, on HDR InfiniBand "
                       "(200 Gb/s) through one switch",
        "hypothetical": True,
        "sources": [_HDR, "ASSUMED: 64 GB memory per node"],
        "devices": {"count": 8, "name": "node", "speed": 1.0, "memory_GB": 64},
        "topology": "switch",
        "link": {"latency_ns": 600, "bandwidth_Gbit_per_s": 200, "duplex": True},
    },
    "cluster-10gbe-stragglers": {
        "name": "cluster-10gbe-stragglers",
        "description": "HYPOTHETICAL: cluster-10gbe where every op has a 2% chance of running 4x slower "
                       "(ILLUSTRATIVE straggler model, not measured)",
        "hypothetical": True,
        "sources": [_ETHERNET_10G, _LATENCY_TCP, "ILLUSTRATIVE: straggler probability and factor are made up"],
        "devices": {"count": 8, "name": "node", "speed": 1.0, "memory_GB": 64,
                    "slowdown": {"distribution": "bernoulli", "p": 0.02, "factor": 4.0}},
        "topology": "switch",
        "link": {"latency_us": 10, "bandwidth_Gbit_per_s": 10, "duplex": True},
    },
    "dgx-a100": {
        "name": "dgx-a100",
        "description": "HYPOTHETICAL: 8 A100 SXM4 40GB GPUs, every pair joined by NVLink through NVSwitch; "
                       "needs reference_flops (FLOP/s of the profiled device)",
        "hypothetical": True,
        "sources": [_A100, _NVSWITCH, "ASSUMED: 2 µs per transfer of NVLink/NCCL software latency"],
        "devices": {"count": 8, "name": "gpu", "flops": 19.5e12, "memory_GB": 40},
        "topology": "fully_connected",
        "link": {"latency_us": 2, "bandwidth_GB_per_s": 300, "duplex": True},
    },
    "workstation-pcie4": {
        "name": "workstation-pcie4",
        "description": "HYPOTHETICAL: 4 GeForce RTX 3090 GPUs on PCIe 4.0 x16 through the host's root "
                       "complex (no NVLink); needs reference_flops",
        "hypothetical": True,
        "sources": [_RTX3090, _PCIE4, "ASSUMED: 1 µs per hop (GPU to root complex, root complex to GPU)"],
        "devices": {"count": 4, "name": "gpu", "flops": 35.6e12, "memory_GB": 24},
        "topology": "switch",
        "link": {"latency_us": 1, "bandwidth_GB_per_s": 31.5, "duplex": True},
    },
}

#: Public alias: preset name → spec mapping.
PRESETS = PRESET_SPECS


def preset_table() -> list[dict[str, str]]:
    """One row per preset (name, description, sources) for ``sglab simulate --list`` and the docs."""
    return [{"name": name, "description": spec["description"], "sources": "; ".join(spec["sources"])}
            for name, spec in PRESET_SPECS.items()]
