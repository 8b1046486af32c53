"""Import published per-layer profiles in PipeDream's ``graph.txt`` format (also used by DAPPLE).

A node line and an edge line look like::

    node4 -- Conv2d(64, 64, kernel_size=(3, 3)) -- forward_compute_time=9.441, backward_compute_time=113.864, activation_size=1644167168.000, parameter_size=147712.000 -- stage_id=0
    \tnode3 -- node4

Times are milliseconds per minibatch, sizes bytes (PipeDream's profiler conventions); the
``-- stage_id=N`` suffix is optional. Nodes are put in a topological order (ties broken by the
number in the node id) and cut into ``K`` contiguous stages: balanced so the largest stage's
F+B is as small as possible, at given boundaries, or by the file's own ``stage_id``.

A stage's F, B and parameter bytes are the sums over its nodes; the bytes crossing interface
``i`` are the activations of every node at or before stage ``i`` that feeds a node after it.
graph.txt has no optimizer time, so ``U`` is recorded as 0 and the profile's notes say so; nor
does it have synthesizer costs (S, T, SI, TI), which the simulator can take as a stated ratio.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sglab.costprofile import CostProfile, Measurement, ProfileError, StageCost
from sglab.partition import balanced_boundaries

_NODE_RE = re.compile(
    r"^(?P<id>\S+) -- (?P<desc>.*?) -- (?P<attrs>forward_compute_time=.*?)(?: -- stage_id=(?P<stage>\S+))?\s*$"
)
_EDGE_RE = re.compile(r"^\s*(?P<src>\S+) -- (?P<dst>\S+)\s*$")
_ATTRS = ("forward_compute_time", "backward_compute_time", "activation_size", "parameter_size")


@dataclass
class GraphNode:
    """One layer of a graph.txt: times in ns, sizes in bytes."""

    node_id: str
    description: str
    forward_ns: int
    backward_ns: int
    activation_bytes: int
    parameter_bytes: int
    stage_id: int | None = None


def parse_graph_txt(text: str, source: str = "graph.txt") -> tuple[list[GraphNode], list[tuple[str, str]]]:
    """Nodes (in topological order) and edges of a graph.txt; errors name the line and field."""
    nodes: dict[str, GraphNode] = {}
    edges: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source} line {number}"
        if not line.strip():
            continue
        node = _NODE_RE.match(line)
        if node:
            if node["id"] in nodes:
                raise ProfileError(f"{where}: node {node['id']!r} is defined twice")
            nodes[node["id"]] = _node(node, where)
            continue
        edge = _EDGE_RE.match(line)
        if not edge:
            raise ProfileError(f"{where}: neither a node line ('id -- desc -- forward_compute_time=..') nor an edge ('a -- b'): {line.strip()[:80]!r}")
        edges.append((edge["src"], edge["dst"]))
    if not nodes:
        raise ProfileError(f"{source}: no node lines found")
    for src, dst in edges:
        for end in (src, dst):
            if end not in nodes:
                raise ProfileError(f"{source}: edge {src} -- {dst} names node {end!r}, which has no node line")
    return _topological(nodes, edges, source), edges


def _node(match: re.Match, where: str) -> GraphNode:
    values: dict[str, float] = {}
    for part in match["attrs"].split(","):
        key, _, raw = part.strip().partition("=")
        try:
            values[key] = float(raw)
        except ValueError:
            raise ProfileError(f"{where}: field {key!r} must be a number, got {raw!r}") from None
    for key in _ATTRS:
        if key not in values:
            raise ProfileError(f"{where}: field {key!r} is missing")
        if not values[key] >= 0:  # also catches NaN
            raise ProfileError(f"{where}: field {key!r} must be >= 0, got {values[key]}")
    stage = match["stage"]
    if stage is not None and not stage.isdigit():
        raise ProfileError(f"{where}: field 'stage_id' must be an integer >= 0, got {stage!r}")
    return GraphNode(
        node_id=match["id"],
        description=match["desc"],
        forward_ns=round(values["forward_compute_time"] * 1e6),  # ms -> ns
        backward_ns=round(values["backward_compute_time"] * 1e6),
        activation_bytes=round(values["activation_size"]),
        parameter_bytes=round(values["parameter_size"]),
        stage_id=int(stage) if stage is not None else None,
    )


def _natural(node_id: str) -> tuple:
    digits = re.findall(r"\d+", node_id)
    return (int(digits[-1]) if digits else -1, node_id)


def _topological(nodes: dict[str, GraphNode], edges: list[tuple[str, str]], source: str) -> list[GraphNode]:
    waiting = {n: 0 for n in nodes}
    users: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        waiting[dst] += 1
        users[src].append(dst)
    ready = sorted((n for n, count in waiting.items() if count == 0), key=_natural)
    order = []
    while ready:
        current = ready.pop(0)
        order.append(nodes[current])
        for user in users[current]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
        ready.sort(key=_natural)
    if len(order) != len(nodes):
        raise ProfileError(f"{source}: the edges contain a cycle through {sorted(set(nodes) - {n.node_id for n in order})}")
    return order


def import_graph_txt(
    path: str | Path,
    batch_size: int,
    stages: int | None = None,
    boundaries: list[int | str] | None = None,
    device_name: str = "unknown (published graph.txt)",
    name: str | None = None,
) -> CostProfile:
    """A :class:`CostProfile` from a PipeDream/DAPPLE graph.txt, grouped into stages.

    Args:
        path: the graph.txt file.
        batch_size: the minibatch the published times are for (graph.txt does not say).
        stages: number of stages K, balanced by F+B.
        boundaries: instead of ``stages``, where stages 1..K-1 start: positions in the
            topological order or node ids.
        device_name: what the times were measured on, if known.
        name: model name (default: the folder of a ``graph.txt``, else the file's stem).
        With neither ``stages`` nor ``boundaries`` the file's ``stage_id`` values are used.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such graph.txt file") from None
    if batch_size < 1:
        raise ProfileError(f"batch_size must be >= 1, got {batch_size}")
    order, edges = parse_graph_txt(text, str(path))
    starts = _starts(order, stages, boundaries, path)
    groups = [order[a:b] for a, b in zip(starts, starts[1:] + [len(order)])]
    stage_of = {node.node_id: j for j, group in enumerate(groups) for node in group}
    costs = []
    for j, group in enumerate(groups):
        crossing = {src for src, dst in edges if stage_of[src] <= j < stage_of[dst]}
        if j == len(groups) - 1 or not crossing:  # the last stage's output: its sink nodes
            sources = {src for src, _ in edges}
            crossing = {n.node_id for n in group if n.node_id not in sources} or {group[-1].node_id}
        nbytes = sum(node.activation_bytes for node in order if node.node_id in crossing)
        costs.append(StageCost(
            index=j,
            name=f"{group[0].node_id}..{group[-1].node_id}" if len(group) > 1 else group[0].node_id,
            times_ns={"F": sum(n.forward_ns for n in group), "B": sum(n.backward_ns for n in group), "U": 0},
            activation_bytes=nbytes,
            gradient_bytes=nbytes,
            parameter_bytes=sum(n.parameter_bytes for n in group),
            samples={},
        ))
    measurement = Measurement(
        source="pipedream_graph", device="unknown", device_name=device_name, torch_version="",
        dtype="float32", batch_size=batch_size, repeats=0, warmup=0, statistic="as published",
        timer="pipedream profiler", host=socket.gethostname(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), spread="none",
        notes=f"imported from {path.name}: times converted from ms; U is not in graph.txt and is set to 0 ns; "
              "no synthesizer costs (S, T, SI, TI)",
    )
    default_name = path.parent.name if path.name == "graph.txt" and path.parent.name else path.stem  # PipeDream: <model>/graph.txt
    model = {"name": name or default_name, "num_stages": len(groups), "source_file": str(path),
             "num_layers": len(order), "stage_nodes": [[n.node_id for n in g] for g in groups]}
    return CostProfile(model=model, method="bprop", measurement=measurement, stages=costs)


def _starts(order: list[GraphNode], stages, boundaries, path) -> list[int]:
    n = len(order)
    if stages is not None and boundaries is not None:
        raise ProfileError("give either stages or boundaries, not both")
    if boundaries is not None:
        position = {node.node_id: k for k, node in enumerate(order)}
        starts = []
        for b in boundaries:
            if isinstance(b, str) and not b.isdigit():
                if b not in position:
                    raise ProfileError(f"{path}: boundary {b!r} is not a node id")
                b = position[b]
            starts.append(int(b))
        starts = [0] + starts
        if any(not 0 < s < n for s in starts[1:]) or starts != sorted(set(starts)):
            raise ProfileError(f"{path}: boundaries must be increasing positions in 1..{n - 1}, got {boundaries}")
        return starts
    if stages is not None:
        if not 1 <= stages <= n:
            raise ProfileError(f"{path}: cannot cut {n} layers into {stages} stages (1..{n})")
        return balanced_boundaries([node.forward_ns + node.backward_ns for node in order], stages)
    ids = [node.stage_id for node in order]
    if None in ids:
        raise ProfileError(f"{path}: nodes carry no stage_id; pass stages=K (--stages) or boundaries")
    if ids != sorted(ids) or sorted(set(ids)) != list(range(len(set(ids)))):
        raise ProfileError(f"{path}: the file's stage_id values are not contiguous 0..K-1 along the topological order; pass stages=K")
    return [ids.index(k) for k in range(len(set(ids)))]
