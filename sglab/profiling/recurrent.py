"""Cost profiles of recurrent training, in the same schema as feed-forward ones.

A recurrent runner names its work with the shared ops, so the :class:`OpTimer` times it
unchanged and the result is an ordinary :class:`~sglab.costprofile.CostProfile`:

- a single RNN is one network run as a chain of chunk-stages in time that share its weights;
  its profile is one stage whose ops cost what one chunk of ``T`` ticks costs (the median over
  chunks), and whose interface is the recurrent state ``(h, c)`` handed to the next chunk;
- the two-RNN system is two stages, A (F, S, B, U, T per chunk of ``N`` ticks) and B (F, B, U
  per tick), whose interface is A's message.
"""

from __future__ import annotations

import torch

from sglab.costprofile import CostProfile
from sglab.exec.recurrent import LossFn, RecurrentRunner
from sglab.exec.two_rnn import TwoRNNRunner
from sglab.profiling.inrun import make_measurement, stage_costs
from sglab.profiling.timer import OpTimer
from sglab.tasks.two_rnn import Episodes


def _bytes(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() * p.element_size() for p in module.parameters())


def profile_recurrent(runner: RecurrentRunner, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                      loss_fn: LossFn, *, repeats: int = 10, warmup: int = 2, ends: bool = True,
                      name: str = "rnn") -> CostProfile:
    """Time ``warmup + repeats`` training passes over one batch of sequences; median per op and chunk."""
    device = inputs.device
    timer = OpTimer(device)
    for _ in range(warmup + repeats):
        runner.train_sequence(inputs, targets, mask, loss_fn, ends=ends, observer=timer)
    per_chunk: dict[tuple[int, str], list[int]] = {}
    for (_, op), values in timer.durations(skip_steps=warmup).items():  # every chunk-stage is the one network
        per_chunk.setdefault((0, op), []).extend(values)
    batch = inputs.shape[1]
    state_bytes = sum(batch * size * 4 for size in runner.model.state_sizes)
    sizes = [{"activation_bytes": state_bytes, "gradient_bytes": state_bytes, "parameter_bytes": _bytes(runner.model),
              "synthesizer_parameter_bytes": _bytes(runner.synthesizer)}]
    method = runner.method.name
    stages = stage_costs(per_chunk, sizes, method)
    measurement = make_measurement("in_run", device, batch, repeats, warmup, timer.timer_name,
                                   notes=f"ops per chunk of T={runner.truncation} ticks")
    model = {"name": name, "num_stages": 1,
             "config": {"core": runner.model.core_name, "hidden": runner.model.hidden, "ticks": int(inputs.shape[0]),
                        "method": method, "truncation": runner.truncation}}
    return CostProfile(model=model, method=method, measurement=measurement, stages=stages)


def profile_two_rnn(runner: TwoRNNRunner, episodes: Episodes, *, repeats: int = 10, warmup: int = 2,
                    config: dict | None = None) -> CostProfile:
    """Time the two-RNN system's training steps on one batch of episodes; stage 0 is A, stage 1 is B."""
    device = episodes.digits.device
    timer = OpTimer(device)
    for _ in range(warmup + repeats):
        runner.train_step(episodes, observer=timer)
    batch, message_size = episodes.digits.shape[1], runner.a.message.out_features
    message_bytes = batch * message_size * 4
    sizes = [
        {"activation_bytes": message_bytes, "gradient_bytes": message_bytes, "parameter_bytes": _bytes(runner.a),
         "synthesizer_parameter_bytes": _bytes(runner.synthesizer)},
        {"activation_bytes": batch * (runner.tick_ratio + 1) * 4, "gradient_bytes": 0, "parameter_bytes": _bytes(runner.b)},
    ]
    method = runner.method.name
    stages = stage_costs(timer.durations(skip_steps=warmup), sizes, method)
    measurement = make_measurement("in_run", device, batch, repeats, warmup, timer.timer_name,
                                   notes=f"A ops per chunk of N={runner.tick_ratio} ticks, B ops per tick")
    model = {"name": "two-rnn", "num_stages": 2, "config": dict(config or {}, tick_ratio=runner.tick_ratio)}
    return CostProfile(model=model, method=method, measurement=measurement, stages=stages)
