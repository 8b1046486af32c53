"""Task generators (inputs, targets, masks), the curriculum, the character corpus, bad parameters."""

from __future__ import annotations

import math

import pytest
import torch

from sglab.tasks.charlm import CharCorpus, CharStream, bits_per_character
from sglab.tasks.copy import CopyTask, Curriculum
from sglab.tasks.sequences import TaskError


def test_copy_layout():
    task = CopyTask(bits=3)
    batch = task.sample(4, 6, torch.Generator().manual_seed(0))
    assert batch.inputs.shape == (9, 6, 4) and batch.targets.shape == (9, 6, 3) and batch.mask.shape == (9, 6)
    data = batch.inputs[:4, :, :3]
    assert set(data.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(batch.inputs[:4, :, 3], torch.zeros(4, 6))  # no delimiter while reading
    assert torch.equal(batch.inputs[4, :, 3], torch.ones(6))  # the delimiter
    assert torch.equal(batch.inputs[5:], torch.zeros(4, 6, 4))  # nothing to read while writing
    assert torch.equal(batch.targets[5:], data)  # write back what was read, in order
    assert torch.equal(batch.mask[:5], torch.zeros(5, 6)) and torch.equal(batch.mask[5:], torch.ones(4, 6))


def test_repeat_copy_layout_with_per_sequence_repeats_and_padding():
    task = CopyTask(bits=2, repeat=True, max_repeats=3)
    batch = task.sample(3, 16, torch.Generator().manual_seed(1))
    repeats = torch.round(batch.inputs[3, :, 3] * 3).long()
    assert set(repeats.tolist()) == {1, 2, 3}
    assert batch.inputs.shape[0] == 3 + 1 + 3 * 3 + 1
    for b, r in enumerate(repeats.tolist()):
        data = batch.inputs[:3, b, :2]
        out = batch.targets[4 : 4 + 3 * r, b, :2]
        assert torch.equal(out, data.repeat(r, 1))
        end = 4 + 3 * r
        assert batch.targets[end, b, 2] == 1 and batch.targets[:end, b, 2].sum() == 0  # end flag once
        assert batch.mask[:, b].sum() == 3 * r + 1
        assert batch.mask[4 : end + 1, b].min() == 1 and batch.mask[end + 1 :, b].sum() == 0  # padding unscored


def test_bit_errors_and_loss():
    task = CopyTask(bits=3)
    batch = task.sample(2, 4, torch.Generator().manual_seed(2))
    perfect = (batch.targets * 2 - 1) * 20
    assert torch.equal(task.bit_errors(perfect, batch.targets, batch.mask), torch.zeros(4))
    assert float(task.loss(perfect, batch.targets, batch.mask)) < 1e-6
    flipped = perfect.clone()
    flipped[3, 0, 1] *= -1  # one scored bit wrong in sequence 0
    flipped[0, 1, 0] *= -1  # an unscored tick: does not count
    assert task.bit_errors(flipped, batch.targets, batch.mask).tolist() == [1.0, 0.0, 0.0, 0.0]
    zeros = torch.zeros_like(perfect)  # p = 1/2 everywhere: ln 2 per scored bit
    assert math.isclose(float(task.loss(zeros, batch.targets, batch.mask)), 2 * 3 * math.log(2), rel_tol=1e-6)


def test_curriculum_advances_only_when_the_window_is_solved():
    curriculum = Curriculum(min_length=2, max_length=5, threshold=0.15, window=3)
    assert curriculum.length == 2
    assert not any(curriculum.record(e) for e in (0.0, 0.0))  # window not full yet
    assert not any(curriculum.record(e) for e in (0.5, 0.0, 0.0))  # windows with the 0.5 average 0.167
    assert curriculum.record(0.0)  # 0, 0, 0
    assert (curriculum.length, curriculum.longest_solved) == (3, 2)


def test_curriculum_records_longest_solved_and_finishes():
    curriculum = Curriculum(min_length=2, max_length=3, threshold=0.15, window=2)
    assert not curriculum.record(1.0)
    assert not curriculum.record(0.1)  # mean 0.55
    assert curriculum.record(0.1)  # mean 0.1 < 0.15
    assert (curriculum.longest_solved, curriculum.length, curriculum.finished) == (2, 3, False)
    assert not curriculum.record(0.0)  # the window restarts at the new length
    assert curriculum.record(0.0)
    assert (curriculum.longest_solved, curriculum.finished) == (3, True)


def test_curriculum_state_dict_carries_the_window_of_recent_errors():
    """A checkpointed curriculum continues mid-window: a fresh one would need a whole new window."""
    running = Curriculum(min_length=1, max_length=5, threshold=0.15, window=3)
    assert not any(running.record(e) for e in (0.0, 0.1))
    restored = Curriculum(min_length=1, max_length=5, threshold=0.15, window=3)
    restored.load_state_dict(running.state_dict())
    assert not Curriculum(min_length=1, max_length=5, threshold=0.15, window=3).record(0.0)
    assert running.record(0.0) and restored.record(0.0)  # (0 + 0.1 + 0) / 3 < 0.15 in both
    assert restored.state_dict() == running.state_dict() == {"length": 2, "longest_solved": 1, "recent": []}


def test_corpus_split_is_deterministic_and_shares_one_vocabulary():
    text = "abcabcabcabcabcabcabcxyz!"
    corpus = CharCorpus.from_text(text, valid_fraction=0.2)
    assert len(corpus.train) == 20 and len(corpus.valid) == 5
    assert corpus.vocab == sorted(set(text))  # validation-only characters are in the vocabulary too
    assert "".join(corpus.vocab[i] for i in corpus.valid.tolist()) == "bcxyz!"[1:]
    again = CharCorpus.from_text(text, valid_fraction=0.2)
    assert torch.equal(again.train, corpus.train) and again.vocab == corpus.vocab


def test_ptb_character_format(tmp_path):
    train = tmp_path / "ptb.char.train.txt"
    valid = tmp_path / "ptb.char.valid.txt"
    train.write_text("a b _ c\nc a\n")
    valid.write_text("b _ a\n")
    corpus = CharCorpus.from_files(train, valid, fmt="ptb")
    assert corpus.vocab == ["\n", "_", "a", "b", "c"]
    decode = lambda t: "".join(corpus.vocab[i] for i in t.tolist())  # noqa: E731
    assert decode(corpus.train) == "ab_c\nca\n" and decode(corpus.valid) == "b_a\n"


def test_char_stream_windows_carry_on_and_restart():
    corpus = CharCorpus.from_text("0123456789" * 3 + "abcdefghij", valid_fraction=0.25)
    stream = CharStream(corpus, corpus.train, batch=2, seq_len=4)
    first, second = stream.next(), stream.next()
    assert first.inputs.shape == (4, 2, corpus.vocab_size) and first.targets.shape == (4, 2)
    decode = lambda t: "".join(corpus.vocab[i] for i in t.tolist())  # noqa: E731
    inputs = first.inputs.argmax(-1)
    assert decode(inputs[:, 0]) == "0123" and decode(first.targets[:, 0]) == "1234"  # next character
    assert decode(second.inputs.argmax(-1)[:, 0]) == "4567"  # the stream carries on
    assert not stream.restarted
    while not stream.restarted:
        stream.next()
    assert decode(stream.inputs[:4, 0]) == "0123"
    assert sum(int(b.mask.sum()) for b in stream.one_pass()) == 2 * stream.ticks_per_pass


def test_bits_per_character():
    assert math.isclose(bits_per_character(math.log(2)), 1.0)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: CopyTask(bits=0), "bits"),
        (lambda: CopyTask(max_repeats=0), "max_repeats"),
        (lambda: CopyTask().sample(0, 4), "length"),
        (lambda: CopyTask().sample(3, 0), "batch"),
        (lambda: Curriculum(min_length=5, max_length=3), "max_length"),
        (lambda: Curriculum(min_length=0), "min_length"),
        (lambda: Curriculum(threshold=0), "threshold"),
        (lambda: CharCorpus.from_text("ab", valid_fraction=0.5), "too short"),
        (lambda: CharCorpus.from_text("abcdef", valid_fraction=1.5), "valid_fraction"),
        (lambda: CharCorpus.from_text("abcdef", fmt="xml"), "format"),
        (lambda: CharCorpus.from_files("/nonexistent/corpus.txt"), "no such text file"),
    ],
)
def test_bad_task_parameters_are_rejected_clearly(make, words):
    with pytest.raises(TaskError, match=words):
        make()


def test_stream_rejects_batches_larger_than_the_text():
    corpus = CharCorpus.from_text("abcdefghij" * 2)
    with pytest.raises(TaskError, match="smaller batch size"):
        CharStream(corpus, corpus.valid, batch=50, seq_len=4)
