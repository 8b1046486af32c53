"""The cost profile of an RNN chain: one stage per network, each stage's ops per *episode*.

The simulator knows one clock: a step, in which every stage runs each of its ops once. The
networks of a chain run on different clocks (network ``k`` runs ``n_k`` chunks per episode,
each with its own F, S, B, U and the T of the link below it), so this profile makes one
episode the simulator's step and gives stage ``k`` the cost of all of network ``k``'s work in
an episode: the median cost of the op per chunk times the number of times it ran per episode
(``samples``, per episode, are that number). A message crosses each link once per chunk of the
network that sends it, so the interface's bytes are a message's times the messages per episode.

What this leaves out: inside an episode, network ``k+1`` may start its first chunk as soon as
network ``k`` has sent the first message, so the real chain also overlaps the networks within
one episode. The simulator overlaps them across episodes only (with DNI, network ``k`` is one
episode ahead of ``k+1``): the steady throughput, bounded by the busiest network, is the same,
but the simulated first episode is slower than the real one. A simulator with a clock per
stage would run chunk-sized steps per stage; sglab.sim has none.
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


def per_episode(stages: list[StageCost], repeats: int) -> list[StageCost]:
    """Stages whose op costs are per chunk (from ``repeats`` episodes' samples), made costs per episode."""
    scaled = []
    for stage in stages:
        counts = {op: n // repeats for op, n in stage.samples.items()}
        scaled.append(replace(stage, times_ns={op: t * counts[op] for op, t in stage.times_ns.items()},
                              spread_ns={op: s * counts[op] for op, s in stage.spread_ns.items()}, samples=counts))
    return scaled


def chain_sizes(runner: RNNChainRunner, batch: int, last_ticks: int) -> list[dict[str, int]]:
    """Per network: bytes of the messages it sends in an episode, of its parameters and its link's synthesizer."""
    k = runner.num_networks
    sizes = []
    for i, net in enumerate(runner.networks):
        messages = runner.span(k - 1) // runner.span(i) * last_ticks if i < k - 1 else 0
        sent = messages * batch * net.head.out_features * 4
        synthesizer = runner.synthesizers[i] if i < k - 1 else None
        sizes.append({"activation_bytes": sent, "gradient_bytes": sent if synthesizer is not None else 0,
                      "parameter_bytes": _bytes(net), "synthesizer_parameter_bytes": _bytes(synthesizer)})
    return sizes


def profile_from_samples(samples: dict[tuple[int, str], list[int]], sizes: list[dict[str, int]], repeats: int,
                         method: str, measurement, model: dict) -> CostProfile:
    """A chain profile from per-chunk op timings of ``repeats`` episodes (what :class:`OpTimer` records)."""
    stages = per_episode(stage_costs(samples, sizes, method), repeats)
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
                                   notes="one step = one episode: each op's median per chunk times its chunks per episode")
    model = {"name": "rnn-chain", "config": dict(config or {}, ratios=list(runner.ratios), last_ticks=last_ticks,
                                                 cut_links=sorted(runner.cut))}
    return profile_from_samples(timer.durations(skip_steps=warmup), chain_sizes(runner, batch, last_ticks), repeats,
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
                                         "one step = one episode: each op's median per chunk times its chunks per episode")
    model = {"name": "rnn-chain", "config": config.to_dict()}
    sizes = chain_sizes(runner, batch, config.last_ticks)
    return profile_from_samples(timer.durations(skip_steps=skip_steps), sizes, repeats, runner.method.name, measurement,
                                model)
