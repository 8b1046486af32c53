"""Cutting a chain of layers into contiguous stages: the balanced partition, and merging a profile's stages.

The graph.txt importer groups a published model's layers into stages with it, and the
simulator's ``--stages`` merges a measured profile's layers the same way.
"""

from __future__ import annotations

from dataclasses import replace

from sglab.costprofile import CostProfile, ProfileError, StageCost


def balanced_boundaries(costs: list[int], parts: int) -> list[int]:
    """Start index of each of ``parts`` contiguous groups minimising the largest group sum."""
    n = len(costs)
    prefix = [0]
    for cost in costs:
        prefix.append(prefix[-1] + cost)
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(parts + 1)]
    cut = [[0] * (n + 1) for _ in range(parts + 1)]
    best[0][0] = 0
    for p in range(1, parts + 1):
        for end in range(p, n + 1):
            for start in range(p - 1, end):
                value = max(best[p - 1][start], prefix[end] - prefix[start])
                if value < best[p][end]:
                    best[p][end], cut[p][end] = value, start
    starts = [n]
    for p in range(parts, 0, -1):
        starts.append(cut[p][starts[-1]])
    return starts[::-1][:-1]


def regroup(profile: CostProfile, num_stages: int, balance: str = "cost") -> CostProfile:
    """The profile with its layers merged into ``num_stages`` contiguous stages.

    ``balance="cost"`` picks the split that minimises the largest stage's F+B+U (the pipeline's
    bottleneck); ``"count"`` gives each stage the same number of layers. Merged F/B/U/I/W and
    parameter bytes add up; S and T (and the interface bytes) are those of the group's last
    layer, whose output interface the group keeps; SI and TI those of its first layer.
    """
    layers = profile.stages
    if not 1 <= num_stages <= len(layers):
        raise ProfileError(f"cannot split a {len(layers)}-stage profile into {num_stages} stages (1..{len(layers)})")
    if num_stages == len(layers):
        return profile
    if balance == "count":
        cuts = [j * len(layers) // num_stages for j in range(num_stages + 1)]
    elif balance == "cost":
        work = [sum(s.times_ns[o] for o in ("F", "B", "U")) for s in layers]
        cuts = balanced_boundaries(work, num_stages) + [len(layers)]
    else:
        raise ProfileError(f"balance must be 'cost' or 'count', got {balance!r}")
    stages = [_merge(layers[a:b], j) for j, (a, b) in enumerate(zip(cuts, cuts[1:]))]
    model = {**profile.model, "num_stages": num_stages, "regrouped_from": len(layers)}
    return replace(profile, model=model, stages=stages)


def _merge(group: list[StageCost], index: int) -> StageCost:
    first, last = group[0], group[-1]
    times = {op: sum(s.times_ns[op] for s in group) for op in ("F", "B", "U", "I", "W")
             if all(op in s.times_ns for s in group)}
    times.update({op: last.times_ns[op] for op in ("S", "T") if op in last.times_ns})
    times.update({op: first.times_ns[op] for op in ("SI", "TI") if op in first.times_ns})
    merged = StageCost(
        index=index,
        name="+".join(s.name for s in group),
        times_ns=times,
        activation_bytes=last.activation_bytes,
        gradient_bytes=last.gradient_bytes,
        parameter_bytes=sum(s.parameter_bytes for s in group),
    )
    # Synthesizer sizes are optional profile fields: keep them where this schema has them.
    for name, source in (("synthesizer_parameter_bytes", last), ("input_model_parameter_bytes", first)):
        if hasattr(source, name):
            setattr(merged, name, getattr(source, name))
    return merged
