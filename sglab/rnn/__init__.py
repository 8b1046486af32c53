"""Recurrent DNI: backward unlocking in time, and two RNNs that talk through a DNI.

    from sglab.rnn import BPTTConfig, RecurrentNet, RecurrentTrainer, CopyTask
    task = CopyTask(bits=8)
    model = RecurrentNet(task.input_size, 64, task.output_size)
    trainer = RecurrentTrainer(model, BPTTConfig(method="dni", truncation=3))
    batch = task.sample(length=5, batch=32)
    trainer.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss)

See ``docs/rnn.md``. Modules: :mod:`~sglab.rnn.bptt` (plain / DNI-aided truncated BPTT),
:mod:`~sglab.rnn.synthesizer` (the state synthesizer), :mod:`~sglab.rnn.model` (the network),
:mod:`~sglab.rnn.tasks` (Copy, Repeat Copy, curriculum, character LM data),
:mod:`~sglab.rnn.runs` (training runs), :mod:`~sglab.rnn.two_rnn` (the two-network system),
:mod:`~sglab.rnn.profile` (cost profiles) and :mod:`~sglab.rnn.cli` (``sglab train --task ...``).
"""

from sglab.rnn.bptt import METHODS, BPTTConfig, ChunkResult, RecurrentConfigError, RecurrentTrainer, SequenceResult, backward_chunk
from sglab.rnn.model import CORES, RecurrentNet
from sglab.rnn.runs import CharLMRunConfig, CopyRunConfig, RunOutput, train_charlm, train_copy
from sglab.rnn.synthesizer import StateSynthesizer
from sglab.rnn.tasks import CharCorpus, CharStream, CopyTask, Curriculum, SequenceBatch, TaskError
from sglab.rnn.two_rnn import TwoRNNConfig, TwoRNNSystem, train_two_rnn

__all__ = [
    "BPTTConfig",
    "CORES",
    "CharCorpus",
    "CharLMRunConfig",
    "CharStream",
    "ChunkResult",
    "CopyRunConfig",
    "CopyTask",
    "Curriculum",
    "METHODS",
    "RecurrentConfigError",
    "RecurrentNet",
    "RecurrentTrainer",
    "RunOutput",
    "SequenceBatch",
    "SequenceResult",
    "StateSynthesizer",
    "TaskError",
    "TwoRNNConfig",
    "TwoRNNSystem",
    "backward_chunk",
    "train_charlm",
    "train_copy",
    "train_two_rnn",
]
