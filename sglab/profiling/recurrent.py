"""Cost profiles of recurrent training, in the same schema as feed-forward ones.

A recurrent run names its work with the shared ops (see :mod:`sglab.rnn.bptt` and
:mod:`sglab.rnn.two_rnn`), so the profiler's :class:`~sglab.profile.timer.OpTimer` times it
unchanged and the result is an ordinary :class:`~sglab.profile.schema.CostProfile`:

- a single RNN is one stage whose ops are per *chunk* of ``T`` ticks (microbatch = chunk);
  its interface is the recurrent state ``(h, c)`` handed to the next chunk;
- the two-RNN system is two stages, A (F, S, B, U, T per chunk of ``N`` ticks) and B (F, B, U
  per tick), whose interface is A's message.
"""

from __future__ import annotations

import torch

from sglab.profile.inrun import make_measurement, stage_costs
from sglab.profile.schema import CostProfile
from sglab.profile.timer import OpTimer
from sglab.rnn.bptt import LossFn, RecurrentTrainer
from sglab.rnn.two_rnn import Episodes, TwoRNNSystem


def _bytes(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() * p.element_size() for p in module.parameters())


def profile_recurrent(
    trainer: RecurrentTrainer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    loss_fn: LossFn,
    *,
    repeats: int = 10,
    warmup: int = 2,
    ends: bool = True,
    name: str = "rnn",
) -> CostProfile:
    """Time ``warmup + repeats`` training passes over one batch of sequences; median per op and chunk."""
    device = inputs.device
    timer = OpTimer(device)
    for _ in range(warmup + repeats):
        timer.next_step()
        trainer.train_sequence(inputs, targets, mask, loss_fn, ends=ends, recorder=timer)
    batch = inputs.shape[1]
    state_bytes = sum(batch * size * 4 for size in trainer.model.state_sizes)
    sizes = [
        {
            "activation_bytes": state_bytes,
            "gradient_bytes": state_bytes,
            "parameter_bytes": _bytes(trainer.model),
            "synthesizer_parameter_bytes": _bytes(trainer.synthesizer),
        }
    ]
    method = trainer.config.method
    stages = stage_costs(timer.durations(skip_steps=warmup), sizes, method)
    measurement = make_measurement(
        "in_run", device, batch, repeats, warmup, timer.timer_name, notes=f"ops per chunk of T={trainer.config.truncation} ticks"
    )
    model = {"name": name, "num_stages": 1, "config": {"core": trainer.model.core_name, "hidden": trainer.model.hidden, "ticks": int(inputs.shape[0]), **trainer.config.to_dict()}}
    return CostProfile(model=model, method=method, measurement=measurement, stages=stages)


def profile_two_rnn(system: TwoRNNSystem, episodes: Episodes, *, repeats: int = 10, warmup: int = 2) -> CostProfile:
    """Time the two-RNN system's training steps on one batch of episodes; stage 0 is A, stage 1 is B."""
    timer = OpTimer(system.device)
    for _ in range(warmup + repeats):
        timer.next_step()
        system.train_step(episodes, recorder=timer)
    cfg, batch = system.config, episodes.digits.shape[1]
    message_bytes = batch * cfg.message_size * 4
    sizes = [
        {
            "activation_bytes": message_bytes,
            "gradient_bytes": message_bytes,
            "parameter_bytes": _bytes(system.a),
            "synthesizer_parameter_bytes": _bytes(system.synthesizer),
        },
        {"activation_bytes": batch * (cfg.tick_ratio + 1) * 4, "gradient_bytes": 0, "parameter_bytes": _bytes(system.b)},
    ]
    stages = stage_costs(timer.durations(skip_steps=warmup), sizes, cfg.method)
    measurement = make_measurement(
        "in_run", system.device, batch, repeats, warmup, timer.timer_name, notes=f"A ops per chunk of N={cfg.tick_ratio} ticks, B ops per tick"
    )
    model = {"name": "two-rnn", "num_stages": 2, "config": cfg.to_dict()}
    return CostProfile(model=model, method=cfg.method, measurement=measurement, stages=stages)
