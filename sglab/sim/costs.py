"""Op costs for a simulation, taken from a :class:`~sglab.profile.schema.CostProfile`.

Costs are measured, never invented, with one explicit exception: a profile without synthesizer
costs (``S``, ``T``, ``SI``, ``TI``; e.g. one imported from PipeDream) can still drive the
DNI-family methods if the caller says what a synthesizer costs relative to the stage's forward
(``synth_cost_ratio`` r): ``S = SI = r·F`` and ``T = TI = 2r·F`` (a training step is the
synthesizer's backward and update, taken as twice its forward; its forward output is kept from S).
Without the option, asking for a missing op is a :class:`SimError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sglab.ops import OP_MEANING
from sglab.profile.graphtxt import balanced_boundaries
from sglab.profile.schema import CostProfile, StageCost
from sglab.sim.errors import SimError

#: Ops a ``synth_cost_ratio`` may stand in for.
SYNTH_OPS = ("S", "T", "SI", "TI")
#: Cost of a synthesizer training step relative to its forward.
TRAIN_TO_FORWARD = 2


@dataclass(frozen=True)
class CostModel:
    """Where each op's cost comes from: the profile, or ``synth_cost_ratio`` for synthesizer ops.

    ``override_synth`` replaces measured synthesizer costs too (sweeps over synthesizer cost).
    """

    synth_cost_ratio: float | None = None
    override_synth: bool = False

    def __post_init__(self) -> None:
        if self.synth_cost_ratio is not None and not self.synth_cost_ratio >= 0:
            raise SimError(f"synth_cost_ratio must be >= 0, got {self.synth_cost_ratio}")
        if self.override_synth and self.synth_cost_ratio is None:
            raise SimError("override_synth needs a synth_cost_ratio")

    def cost(self, stage: StageCost, op: str, method: str) -> int:
        """Profiled cost of ``op`` on ``stage`` in ns; raises :class:`SimError` if unknown."""
        ratio = self.synth_cost_ratio
        if op in SYNTH_OPS and ratio is not None and (self.override_synth or op not in stage.times_ns):
            factor = ratio * (TRAIN_TO_FORWARD if op in ("T", "TI") else 1)
            return int(round(factor * stage.times_ns["F"]))
        if op in stage.times_ns:
            return stage.times_ns[op]
        hint = " or pass synth_cost_ratio (--synth-cost-ratio)" if op in SYNTH_OPS else ""
        raise SimError(
            f"method {method!r} needs op {op} ({OP_MEANING[op]}) of stage {stage.index}, which the profile "
            f"did not measure (measured: {', '.join(stage.times_ns)}); profile it{hint}"
        )


def regroup(profile: CostProfile, num_stages: int, balance: str = "cost") -> CostProfile:
    """The profile with its layers merged into ``num_stages`` contiguous stages.

    ``balance="cost"`` picks the split that minimises the largest stage's F+B+U (the pipeline's
    bottleneck); ``"count"`` gives each stage the same number of layers. Merged F/B/U/I/W and
    parameter bytes add up; S and T (and the interface bytes) are those of the group's last
    layer, whose output interface the group keeps; SI and TI those of its first layer.
    """
    layers = profile.stages
    if not 1 <= num_stages <= len(layers):
        raise SimError(f"cannot split a {len(layers)}-stage profile into {num_stages} stages (1..{len(layers)})")
    if num_stages == len(layers):
        return profile
    if balance == "count":
        cuts = [j * len(layers) // num_stages for j in range(num_stages + 1)]
    elif balance == "cost":
        work = [sum(s.times_ns[o] for o in ("F", "B", "U")) for s in layers]
        cuts = balanced_boundaries(work, num_stages) + [len(layers)]
    else:
        raise SimError(f"balance must be 'cost' or 'count', got {balance!r}")
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
