"""The cost profile of an RNN chain: one stage per network, on its own clock.

Network ``k`` runs ``n_k`` chunks per episode, each with its own F, S, B, U and the T of the
link below it. The profile keeps each op's median cost *per chunk* and gives stage ``k``
``chunks = n_k``; one simulated step is one episode, in which :mod:`sglab.sim.clocks` runs stage
``k``'s ops ``n_k`` times, network ``k+1``'s chunk waiting for the messages it reads and each
link's T for the gradient of the chunk that read its message. ``activation_bytes`` is one
message; ``gradient_bytes`` is what one chunk of the network above sends back (the gradients of
the ``n_k / n_{k+1}`` messages it read). Profiles written before stages had clocks (every op's
cost per episode, ``chunks`` absent) still load and simulate as before: one step, one clock.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from sglab.costprofile import CostProfile, StageCost
from sglab.exec.rnn_chain import RNNChainRunner
from sglab.profiling.inrun import make_measurement, stage_costs
from sglab.profiling.timer import OpTimer
from sglab.tasks.rnn_chain import ChainEpisodes


def _bytes(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() * p.element_size() for p in module.parameters())


def clocked(stages: list[StageCost], repeats: int) -> list[StageCost]:
    """Stages timed over ``repeats`` episodes, each given its clock: chunks per episode (its F's count)."""
    return [replace(stage, chunks=stage.samples["F"] // repeats) for stage in stages]


def chain_sizes(runner: RNNChainRunner, batch: int) -> list[dict[str, int]]:
    """Per network: bytes of one message it sends and of the gradient one chunk above returns, of its
    parameters and of its link's synthesizer."""
    k = runner.num_networks
    sizes = []
    for i, net in enumerate(runner.networks):
        message = batch * net.head.out_features * 4 if i < k - 1 else 0
        synthesizer = runner.synthesizers[i] if i < k - 1 else None
        read_per_chunk = runner.chunk_ticks(i + 1) if i < k - 1 else 0
        sizes.append({"activation_bytes": message,
                      "gradient_bytes": message * read_per_chunk if synthesizer is not None else 0,
                      "parameter_bytes": _bytes(net), "synthesizer_parameter_bytes": _bytes(synthesizer)})
    return sizes


def profile_from_samples(samples: dict[tuple[int, str], list[int]], sizes: list[dict[str, int]], repeats: int,
                         method: str, measurement, model: dict) -> CostProfile:
    """A chain profile from per-chunk op timings of ``repeats`` episodes (what :class:`OpTimer` records)."""
    stages = clocked(stage_costs(samples, sizes, method), repeats)
    return CostProfile(model={**model, "num_stages": len(stages)}, method=method, measurement=measurement, stages=stages)


def profile_rnn_chain(runner: RNNChainRunner, episodes: ChainEpisodes, *, repeats: int = 10, warmup: int = 2,
                      config: dict | None = None) -> CostProfile:
    """Time ``warmup + repeats`` training steps of the chain on one batch of episodes; stage ``k`` is network ``k``."""
    device = episodes.inputs.device
    timer = OpTimer(device)
    for _ in range(warmup + repeats):
        runner.train_step(episodes, observer=timer)
    batch, last_ticks = episodes.inputs.shape[1], episodes.counts.shape[0]
    measurement = make_measurement("in_run", device, batch, repeats, warmup, timer.timer_name,
                                   notes="one step = one episode; each op's median per chunk, each stage's chunks per episode")
    model = {"name": "rnn-chain", "config": dict(config or {}, ratios=list(runner.ratios), last_ticks=last_ticks,
                                                 cut_links=sorted(runner.cut))}
    return profile_from_samples(timer.durations(skip_steps=warmup), chain_sizes(runner, batch), repeats,
                                runner.method.name, measurement, model)


def profile_from_run(timer: OpTimer, config, skip_steps: int, batch: int | None = None) -> CostProfile:
    """The chain profile of a training run that ``timer`` watched (``sglab train --task rnn-chain --profile``).

    ``config`` is the run's :class:`~sglab.training.config.RNNChainConfig`; the first
    ``skip_steps`` steps are left out as warm-up.
    """
    from sglab.training.build import build_rnn_chain

    runner = build_rnn_chain(config)  # a fresh one, for the sizes: the same shapes as the run's
    repeats = timer.num_steps - skip_steps
    batch = batch or config.batch_size
    measurement = make_measurement("in_run", timer.device, batch, repeats, skip_steps, timer.timer_name,
                                   notes=f"timed inside sglab train, first {skip_steps} of {timer.num_steps} steps left out; "
                                         "one step = one episode; each op's median per chunk, each stage's chunks per episode")
    model = {"name": "rnn-chain", "config": config.to_dict()}
    sizes = chain_sizes(runner, batch)
    return profile_from_samples(timer.durations(skip_steps=skip_steps), sizes, repeats, runner.method.name, measurement,
                                model)
