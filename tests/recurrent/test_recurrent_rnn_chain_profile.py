"""The RNN chain's cost profile: a stage per network on its own clock, and the simulated speedup of unlocking."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from sglab.costprofile import CostProfile, ProfileError
from sglab.profiling import profile_rnn_chain
from sglab.profiling.inrun import make_measurement
from sglab.profiling.rnn_chain import profile_from_samples
from sglab.tasks.rnn_chain import make_chain_episodes
from sglab.training import RNNChainConfig
from sglab.training.build import build_rnn_chain

#: Made-up per-chunk costs (ns) of three networks; with ratios 2, 2 and one tick of the last network
#: per episode, network 0 runs 2 chunks per episode and networks 1 and 2 one each.
PER_CHUNK = [{"F": 100, "S": 10, "B": 200, "U": 30, "T": 20}, {"F": 300, "S": 10, "B": 500, "U": 40, "T": 50},
             {"F": 150, "B": 250, "U": 20}]
CHUNKS = [2, 1, 1]
REPEATS = 3


def made_up_profile() -> CostProfile:
    """The made-up costs, as OpTimer would have recorded them over ``REPEATS`` episodes."""
    samples = {(k, op): [t] * CHUNKS[k] * REPEATS for k, costs in enumerate(PER_CHUNK) for op, t in costs.items()}
    sizes = [{"activation_bytes": 64, "gradient_bytes": 64, "parameter_bytes": 1000}] * 2 + \
            [{"activation_bytes": 0, "gradient_bytes": 0, "parameter_bytes": 1000}]
    measurement = make_measurement("in_run", torch.device("cpu"), 4, REPEATS, 0, "perf_counter", notes="made up")
    return profile_from_samples(samples, sizes, REPEATS, "cdni", measurement, {"name": "rnn-chain"})


def test_each_network_is_one_stage_with_its_costs_per_chunk_and_its_chunks_per_episode(tmp_path):
    profile = made_up_profile()
    assert profile.num_stages == 3
    assert [s.times_ns for s in profile.stages] == PER_CHUNK
    assert [s.chunks for s in profile.stages] == CHUNKS
    assert profile.stages[0].samples == {op: 2 * REPEATS for op in PER_CHUNK[0]}
    assert CostProfile.load(profile.save(tmp_path / "chain.json")).stages == profile.stages


def test_simulated_unlocking_speedup_is_the_busiest_network_against_all_of_them_in_turn():
    from sglab.sim import hardware_from_dict, simulate

    free = hardware_from_dict({"name": "free3", "devices": {"count": 3, "name": "dev", "speed": 1.0},
                               "topology": "fully_connected", "link": {"latency_ns": 0, "bandwidth_bytes_per_s": "inf"}})
    summary = simulate(made_up_profile(), free, "cdni", steps=40).summary
    # by hand: sequential backprop on one device runs every network's F, B, U of an episode in turn:
    # 2·330 + 840 + 420 = 1920 ns; with a DNI at each link every network runs on its own device
    # and the busiest, network 1 (F S B U T: 900 ns; network 0: 2·360 = 720), sets the pace.
    assert summary["num_stages"] == 3 and summary["num_devices"] == 3
    assert summary["steady_step_ns"] == 900
    assert Fraction(summary["steady_speedup"]).limit_denominator(1000) == Fraction(1920, 900)


def _measured(cut):
    config = RNNChainConfig(ratios=[2, 3], last_ticks=2, hidden=4, message_size=3, batch_size=4, cut_links=cut)
    episodes = make_chain_episodes(6, (2, 3), 2, 4, torch.Generator().manual_seed(0))
    return profile_rnn_chain(build_rnn_chain(config), episodes, repeats=2, warmup=1)


def test_a_measured_chain_profile_has_a_stage_per_network_and_feeds_the_simulator():
    from sglab.sim import simulate

    profile = _measured([])
    assert [set(s.times_ns) for s in profile.stages] == [{"F", "S", "B", "U", "T"}, {"F", "S", "B", "U", "T"}, {"F", "B", "U"}]
    assert [s.chunks for s in profile.stages] == [6, 2, 2]  # chunks per episode of 12 symbols
    assert profile.stages[0].activation_bytes == 4 * 3 * 4  # a message: batch 4, 3 wide, float32
    assert profile.stages[0].gradient_bytes == 3 * 4 * 3 * 4  # network 1's chunk reads 3 messages
    result = simulate(profile, "cluster-10gbe", "cdni", steps=4)
    assert result.summary["num_stages"] == 3 and result.summary["makespan_ns"] > 0


def test_a_chain_with_a_cut_link_has_a_network_that_learns_nothing_to_profile():
    with pytest.raises(ProfileError, match="stage 1 never ran B, U"):  # network 1 runs F only
        _measured([1])


def test_sglab_train_rnn_chain_profile_writes_a_profile_the_simulator_reads(tmp_path, sglab_main):
    out = tmp_path / "run"
    argv = ["train", "--task", "rnn-chain", "--hidden", "4", "--message-size", "3", "--batch-size", "4", "--steps", "4",
            "--eval-episodes", "8", "--no-progress", "--profile", "--out", str(out)]
    assert sglab_main(argv) == 0
    profile = CostProfile.load(out / "profile.json")
    assert [s.chunks for s in profile.stages] == [6, 3, 3]  # default ratios 2, 2 and 3 ticks of the last network
    assert profile.measurement.repeats == 1 and profile.model["config"]["ratios"] == [2, 2]
    assert sglab_main(["simulate", "--profile", str(out / "profile.json"), "--method", "cdni", "--steps", "4"]) == 0
