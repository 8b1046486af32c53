"""Profiles of recurrent runs are ordinary CostProfiles: same ops, same schema, the simulator reads them."""

from __future__ import annotations

import torch

from sglab.profile.schema import CostProfile
from sglab.rnn.bptt import BPTTConfig, RecurrentTrainer
from sglab.rnn.model import RecurrentNet
from sglab.rnn.profile import profile_recurrent, profile_two_rnn
from sglab.rnn.tasks import CopyTask
from sglab.rnn.two_rnn import TwoRNNConfig, TwoRNNSystem, make_episodes


def test_single_rnn_profile_has_per_chunk_ops_and_round_trips(tmp_path):
    task = CopyTask(bits=2)
    batch = task.sample(3, 4, torch.Generator().manual_seed(0))
    trainer = RecurrentTrainer(RecurrentNet(task.input_size, 8, task.output_size), BPTTConfig(method="dni", truncation=3))
    profile = profile_recurrent(trainer, batch.inputs, batch.targets, batch.mask, task.loss, repeats=3, warmup=1)
    (stage,) = profile.stages
    assert set(stage.times_ns) == {"F", "S", "B", "U", "T"}
    assert stage.samples["F"] == 3 * 3 and stage.samples["S"] == 3 * 2  # 7 ticks: 3 chunks, no S after the end
    assert stage.activation_bytes == 4 * (8 + 8) * 4  # (h, c) of a batch of 4 in float32
    loaded = CostProfile.load(profile.save(tmp_path / "rnn.json"))
    assert loaded.stages[0].times_ns == stage.times_ns and loaded.method == "dni"


def test_two_rnn_profile_feeds_the_simulator():
    config = TwoRNNConfig(tick_ratio=2, b_ticks=2, hidden_a=8, hidden_b=8, message_size=4, encoder_hidden=8)
    system = TwoRNNSystem(config)
    episodes = make_episodes(torch.rand(20, 784), torch.arange(20) % 10, config, 4, torch.Generator().manual_seed(0))
    profile = profile_two_rnn(system, episodes, repeats=3, warmup=1)
    assert [set(s.times_ns) for s in profile.stages] == [{"F", "S", "B", "U", "T"}, {"F", "B", "U"}]
    from sglab.sim.api import simulate

    result = simulate(profile, "cluster-10gbe", "dni", steps=4)
    assert result.summary["num_stages"] == 2 and result.summary["makespan_ns"] > 0
