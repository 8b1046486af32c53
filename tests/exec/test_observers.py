"""Observers see every op and its tensors without changing the computation (bitwise)."""

import copy

import pytest
import torch

from sglab.exec.observe import Observer, Observers
from sglab.methods import method_names
from sglab.ops import Action
from sglab.tasks.copy import CopyTask
from sglab.tasks.two_rnn import make_episodes
from sglab.training import ClassifyConfig, CopyConfig, TwoRNNConfig
from sglab.training.build import build_chain, build_recurrent, build_two_rnn


class Reader(Observer):
    """Reads every tensor it is shown (norms, sums), records the ops in order."""

    wants_tensors = True

    def __init__(self):
        self.ops: list[Action] = []
        self.seen: dict[str, set[str]] = {}
        self.steps: list[int] = []

    def begin_step(self, step):
        self.steps.append(step)

    def op(self, action):
        self.ops.append(action)
        return super().op(action)

    def tensors(self, action, tensors):
        self.seen.setdefault(action.op, set()).update(tensors)
        for t in tensors.values():
            float(t.float().norm()) + float(t.float().sum())


def state(modules, optimizers):
    """Every parameter, buffer and optimizer-state tensor, flattened."""
    found = []
    for m in modules:
        found += [t.clone() for t in m.state_dict().values()]
    for o in optimizers:
        for s in o.state.values():
            found += [v.clone() for v in s.values() if torch.is_tensor(v)]
    return found


def assert_bitwise(a, b):
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def chain_state(runner):
    modules = [*runner.stages] + [m for i in runner.interfaces for m in i.modules().values()]
    optimizers = [*runner.optimizers] + [o for i in runner.interfaces for o in i.optimizers().values()]
    return state(modules, optimizers)


@pytest.mark.parametrize("method", method_names("train"))
def test_a_chain_runner_computes_the_same_with_an_observer_that_reads_everything(method, patterns):
    config = ClassifyConfig(method=method, layers=3, width=16, synth_width=16, batch_size=16, device="cpu",
                            update_prob=0.5 if method == "stochastic" else None)
    plain = build_chain(config, patterns.input_shape, 10)
    watched = copy.deepcopy(plain)
    reader = Reader()
    x, y = torch.from_numpy(patterns.x_train[:16]), torch.from_numpy(patterns.y_train[:16])
    for _ in range(3):
        a, b = plain.step(x, y), watched.step(x, y, reader)
        assert a.loss == b.loss and a.synth_loss == b.synth_loss
    assert_bitwise(chain_state(plain), chain_state(watched))
    assert reader.steps == [0, 1, 2]
    if plain.method.update_prob == plain.method.unlock_prob == 1:  # no draws: the same order each step
        assert reader.ops == 3 * plain.method.step_order(3)
    assert reader.seen["F"] == {"input", "h", "labels", "loss"} and reader.seen["B"] <= {"output_gradient", "input_gradient"}
    if plain.method.synthetic_gradients:
        assert reader.seen["S"] == {"synthetic_gradient"} and reader.seen["T"] == {"prediction", "target"}


@pytest.mark.parametrize("method", method_names("recurrent"))
def test_a_recurrent_runner_computes_the_same_with_an_observer(method):
    config = CopyConfig(method=method, hidden=8, truncation=2, device="cpu")
    task = CopyTask(bits=3)
    plain = build_recurrent(config, task.input_size, task.output_size)
    watched = copy.deepcopy(plain)
    batch = task.sample(3, 4, torch.Generator().manual_seed(0))
    reader = Reader()
    for _ in range(2):
        a = plain.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss)
        b = watched.train_sequence(batch.inputs, batch.targets, batch.mask, task.loss, observer=Observers(reader, Observer()))
        assert a.loss == b.loss
    assert_bitwise(state(plain.modules().values(), plain.optimizers().values()),
                   state(watched.modules().values(), watched.optimizers().values()))
    chunks = -(-batch.inputs.shape[0] // 2)
    assert {a.stage for a in reader.ops if a.op == "F"} == set(range(1, chunks + 1))  # chunk c is stage c+1


@pytest.mark.parametrize("method", method_names("two-rnn"))
def test_the_two_rnn_runner_computes_the_same_with_an_observer(method):
    config = TwoRNNConfig(method=method, hidden_a=8, hidden_b=8, message_size=4, encoder_hidden=8, device="cpu")
    plain = build_two_rnn(config, 16)
    watched = copy.deepcopy(plain)
    g = torch.Generator().manual_seed(0)
    episodes = make_episodes(torch.rand(50, 16, generator=g), torch.randint(0, 10, (50,), generator=g), 4, 3, 5, g)
    reader = Reader()
    a, b = plain.train_step(episodes), watched.train_step(episodes, reader)
    assert a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)  # NaN: no synthesizer
    assert_bitwise(state(plain.modules().values(), plain.optimizers().values()),
                   state(watched.modules().values(), watched.optimizers().values()))
    assert {a.microbatch for a in reader.ops} == {0, 1, 2}  # one chunk per B tick


@pytest.mark.parametrize("model", ["fcn", "cnn"])
def test_unobserved_backprop_runs_fused_and_bitwise_the_same_as_op_by_op(model):
    config = ClassifyConfig(method="bprop", model=model, layers=3, width=12, channels=4, batch_size=8)
    fused = build_chain(config, (1, 8, 8), 10)
    op_by_op = copy.deepcopy(fused)
    generator = torch.Generator().manual_seed(5)
    seen = Reader()
    for _ in range(3):
        x, y = torch.rand(8, 1, 8, 8, generator=generator), torch.randint(0, 10, (8,), generator=generator)
        a, b = fused.step(x, y), op_by_op.step(x, y, seen)
        assert (a.loss, a.error, a.active, a.locked) == (b.loss, b.error, b.active, b.locked)
    assert_bitwise(state(fused.stages, fused.optimizers), state(op_by_op.stages, op_by_op.optimizers))
    assert len(seen.ops) == 3 * 9  # the observed runner still ran every op: F, B, U of 3 stages
