"""The knobs of one simulation, checked where they enter (:func:`sglab.config.check_fields`)."""

from __future__ import annotations

from dataclasses import dataclass

from sglab.config import ConfigError, check_fields, spec
from sglab.sim.errors import SimUsageError

#: All-reduce algorithms across data-parallel replicas.
ALLREDUCE = ("ring", "tree")


@dataclass(frozen=True)
class SimOptions:
    """Knobs of one simulation.

    Attributes:
        steps: training steps (each one minibatch, or ``microbatches`` of them for pipelines).
        microbatches: per step for pipeline schedules (``gpipe``, ``1f1b``); default the
            method's own (``4 ×`` the pipeline ranks). Other methods run one batch per step.
        seed: draws slowdowns, stochastic updates and stochastic unlocking; equal seeds give
            equal traces.
        synth_cost_ratio: synthesizer costs relative to F where the profile lacks them
            (see :mod:`sglab.sim.costs`); ``override_synth`` applies it even where measured.
        update_prob: per-stage update probability (default: the method's own, 0.2 for
            ``stochastic``, 1 for the others).
        unlock_prob: with synthetic gradients, the per-stage, per-step probability of using the
            synthetic gradient instead of waiting for the true one (default: the method's own,
            0.5 for ``mixed``, 1 for the others).
        max_ahead: steps a stage of a method whose stages run ahead (synthetic gradients, local
            losses) may run ahead of the stage above (None: unbounded).
        param_copies: parameter-sized buffers resident per stage (weights, gradients and two
            Adam moments = 4) for the memory check.
        host_time: charge the profile's measured host time per batch (``totals.host_ns_per_step``
            of an in-run profile: the loop's time between ops, drawing the batch, Python) to the
            first stage's forward of every batch or microbatch, where a real run's rank draws it.
        replicas: data-parallel copies of the run, each on its own devices, their gradients
            all-reduced before every update (:mod:`sglab.sim.data_parallel`); 1: no data parallelism.
        allreduce: the all-reduce algorithm across replicas, ``ring`` or ``tree``.
        bucket_bytes: gradients are all-reduced in buckets of at most this many bytes (DDP's
            default, 25 MiB).
    """

    steps: int = spec(20, ge=1)
    microbatches: int | None = spec(None, ge=1)
    seed: int = spec(0, ge=0)
    synth_cost_ratio: float | None = spec(None, ge=0)
    override_synth: bool = False
    update_prob: float | None = spec(None, gt=0, le=1)
    unlock_prob: float | None = spec(None, ge=0, le=1)
    max_ahead: int | None = spec(2, ge=1)
    param_copies: int = spec(4, ge=0)
    host_time: bool = False
    replicas: int = spec(1, ge=1)
    allreduce: str = spec("ring", choices=ALLREDUCE)
    bucket_bytes: int = spec(25 * 2**20, ge=1)

    def __post_init__(self) -> None:
        try:
            check_fields(self, "SimOptions field")
        except ConfigError as err:
            raise SimUsageError(str(err)) from None
        if self.override_synth and self.synth_cost_ratio is None:
            raise SimUsageError("override_synth needs a synth_cost_ratio")
