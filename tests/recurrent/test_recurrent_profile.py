"""Profiles of recurrent runs are ordinary CostProfiles: same ops, same schema, the simulator reads them."""

from __future__ import annotations

import pytest
import torch
from recurrent_helpers import make_runner

from sglab.costprofile import CostProfile
from sglab.models.recurrent import RecurrentNet
from sglab.profiling import profile_recurrent, profile_two_rnn
from sglab.tasks.copy import CopyTask
from sglab.tasks.two_rnn import make_episodes
from sglab.training import TwoRNNConfig
from sglab.training.build import build_two_rnn


def test_single_rnn_profile_has_per_chunk_ops_and_round_trips(tmp_path):
    task = CopyTask(bits=2)
    batch = task.sample(3, 4, torch.Generator().manual_seed(0))
    runner = make_runner(RecurrentNet(task.input_size, 8, task.output_size), "dni", truncation=3)
    profile = profile_recurrent(runner, batch.inputs, batch.targets, batch.mask, task.loss, repeats=3, warmup=1)
    (stage,) = profile.stages
    assert set(stage.times_ns) == {"F", "S", "B", "U", "T"}
    # 7 ticks: 3 chunks, and no S after the sequence's end; a T for every chunk
    assert (stage.samples["F"], stage.samples["S"], stage.samples["T"]) == (3 * 3, 3 * 2, 3 * 3)
    assert stage.activation_bytes == 4 * (8 + 8) * 4  # (h, c) of a batch of 4 in float32
    loaded = CostProfile.load(profile.save(tmp_path / "rnn.json"))
    assert loaded.stages[0].times_ns == stage.times_ns and loaded.method == "dni"


def _two_rnn_profile():
    config = TwoRNNConfig(method="cdni", tick_ratio=2, b_ticks=2, hidden_a=8, hidden_b=8, message_size=4,
                          encoder_hidden=8)
    episodes = make_episodes(torch.rand(20, 784), torch.arange(20) % 10, 2, 2, 4, torch.Generator().manual_seed(0))
    return profile_two_rnn(build_two_rnn(config, 784), episodes, repeats=3, warmup=1)


def test_two_rnn_profile_has_a_stage_per_network():
    profile = _two_rnn_profile()
    assert [set(s.times_ns) for s in profile.stages] == [{"F", "S", "B", "U", "T"}, {"F", "B", "U"}]
    assert profile.stages[0].activation_bytes == 4 * 4 * 4  # A's message: batch 4, 4 wide, float32
    assert profile.stages[0].samples["F"] == 3 * 2  # one per B tick and repeat


def test_two_rnn_profile_feeds_the_simulator():
    try:
        from sglab.sim.api import simulate
    except ImportError as err:
        pytest.skip(f"the simulator does not import yet ({err}); the profile itself is checked above")
    result = simulate(_two_rnn_profile(), "cluster-10gbe", "dni", steps=4)
    assert result.summary["num_stages"] == 2 and result.summary["makespan_ns"] > 0
