"""Op costs for a simulation, taken from a :class:`~sglab.costprofile.CostProfile`.

Costs are measured, never invented, with one explicit exception: a profile without synthesizer
costs (``S``, ``T``, ``SI``, ``TI``; e.g. one imported from PipeDream) can still drive the
DNI-family methods if the caller says what a synthesizer costs relative to the stage's forward
(``synth_cost_ratio`` r): ``S = SI = r·F`` and ``T = TI = 2r·F`` (a training step is the
synthesizer's backward and update, taken as twice its forward; its forward output is kept from S).
Without the option, asking for a missing op is a :class:`SimError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sglab.costprofile import StageCost
from sglab.ops import OP_MEANING
from sglab.sim.errors import SimError

#: Ops a ``synth_cost_ratio`` may stand in for.
SYNTH_OPS = ("S", "T", "SI", "TI")
#: Cost of a synthesizer training step relative to its forward.
TRAIN_TO_FORWARD = 2


@dataclass(frozen=True)
class CostModel:
    """Where each op's cost comes from: the profile, or ``synth_cost_ratio`` for synthesizer ops.

    ``override_synth`` replaces measured synthesizer costs too (sweeps over synthesizer cost);
    :class:`~sglab.sim.options.SimOptions` checks both. ``host_ns`` is added to the first stage's
    forward (the host time per batch a profile measured, ``SimOptions.host_time``).
    """

    synth_cost_ratio: float | None = None
    override_synth: bool = False
    host_ns: int = 0

    def cost(self, stage: StageCost, op: str, method: str) -> int:
        """Profiled cost of ``op`` on ``stage`` in ns; raises :class:`SimError` if unknown."""
        ratio = self.synth_cost_ratio
        if op in SYNTH_OPS and ratio is not None and (self.override_synth or op not in stage.times_ns):
            factor = ratio * (TRAIN_TO_FORWARD if op in ("T", "TI") else 1)
            return int(round(factor * stage.times_ns["F"]))
        if op in stage.times_ns:
            return stage.times_ns[op] + (self.host_ns if op == "F" and stage.index == 0 else 0)
        hint = " or pass synth_cost_ratio (--synth-cost-ratio)" if op in SYNTH_OPS else ""
        raise SimError(
            f"method {method!r} needs op {op} ({OP_MEANING[op]}) of stage {stage.index}, which the profile "
            f"did not measure (measured: {', '.join(stage.times_ns)}); profile it{hint}"
        )
