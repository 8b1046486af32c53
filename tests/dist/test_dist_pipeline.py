"""Locked pipeline baselines across processes (gloo, 2 ranks): gpipe and 1f1b run the registry's lists, and write
the run directory (metrics, summary, a checkpoint per rank, resume) and the measured trace as stage runs do.

No in-process runner runs gpipe or 1f1b (they are the simulator's), so the reference is backprop
over microbatches written out here with the same calls of :mod:`sglab.exec.ops`: per stage the
same forwards and the same backwards in the same microbatch order (both schedules run every
stage's F and B in microbatch order 0..m-1), so the gradient sums are added in the same order and
the comparison is bitwise. With one microbatch a pipeline is backprop, and matches the in-process
:class:`~sglab.exec.chain.ChainRunner` bit for bit. Against full-batch backprop with ``m > 1`` no
tolerance would mean much: batch norm normalises each microbatch by its own statistics.
"""

import json
from collections import Counter

import pandas as pd
import pytest
import torch

from sglab.costprofile import CostProfile, Measurement, StageCost
from sglab.dist import DistRun, FailAt, RankFailed, train_distributed
from sglab.dist.outputs import DistRunDir, merge_rank_states
from sglab.dist.pipeline_worker import PipelineRun, pipeline_worker, waits_at_use, worker_for
from sglab.dist.program import pipeline_program
from sglab.dist.stage_worker import stage_worker
from sglab.errors import UsageError
from sglab.exec import ops
from sglab.methods import get_method
from sglab.ops import Action
from sglab.schedules import with_communication
from sglab.sim import simulate
from sglab.sim.pipeline import rank_schedule
from sglab.tasks.classify import BatchStream
from sglab.training import ClassifyConfig
from sglab.training.build import build_chain

STEPS, MICRO, RANKS = 4, 4, 2


def tiny(steps=STEPS, **fields):
    return ClassifyConfig(**{**dict(method="bprop", layers=RANKS, width=32, batch_size=32, steps=steps, lr=3e-3,
                                    device="cpu", dataset="patterns"), **fields})


def run_pipeline(config, data, method, microbatches, out=None, resume=False):
    run = DistRun(config, data, method=method, microbatches=microbatches)
    return train_distributed(run, out, resume, timeout=30, run_timeout=60)


def microbatched_backprop(config, data, microbatches):
    """The reference: each step, every microbatch forward and backward through the chain (cut at each
    stage), the loss of each its mean divided by ``m``, gradients accumulated, then one update per stage."""
    runner = build_chain(config, data.input_shape, data.num_classes)
    batches = BatchStream(len(data.x_train), config.batch_size, config.seed)
    x_all, y_all = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    b, m, losses = config.batch_size // microbatches, microbatches, []
    for _ in range(config.steps):
        index = batches.next()
        x, y = x_all[index], y_all[index]
        step_losses = []
        for j in range(m):
            inputs, outputs, h = [], [], x[j * b:(j + 1) * b]
            for i, stage in enumerate(runner.stages):
                inp = h if i == 0 else ops.input_leaf(h, True)
                h = ops.forward(stage, inp)
                inputs.append(inp)
                outputs.append(h)
            loss, _ = runner.criterion(h, y[j * b:(j + 1) * b])
            step_losses.append(float(loss.detach()))
            grad = None
            for i in reversed(range(len(runner.stages))):
                root = (loss / m if m > 1 else loss) if grad is None else outputs[i]
                ops.backward([root], None if grad is None else [grad], runner.optimizers[i] if j == 0 else None)
                grad = inputs[i].grad
        for optimizer in runner.optimizers:
            ops.update(optimizer)
        losses.append(sum(step_losses) / m)
    return runner, losses


def assert_same_stages(result, runner):
    for rank, state in enumerate(result.state()):
        expected = runner.stages[rank].state_dict()
        assert state.keys() == expected.keys()
        for name, tensor in expected.items():
            assert torch.equal(state[name], tensor), f"stage {rank} {name} differs"


@pytest.fixture(scope="module")
def pipelines(patterns):
    config = tiny()
    return config, {name: run_pipeline(config, patterns, name, MICRO) for name in ("gpipe", "1f1b")}


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_a_pipeline_across_two_processes_matches_microbatched_backprop_bitwise(pipelines, patterns, name):
    config, results = pipelines
    runner, losses = microbatched_backprop(config, patterns, MICRO)
    assert results[name].loss == losses
    assert_same_stages(results[name], runner)


def test_gpipe_of_one_microbatch_is_the_in_process_backprop_runner_bitwise(patterns):
    config = tiny(steps=3)
    result = run_pipeline(config, patterns, "gpipe", 1)
    runner = build_chain(config, patterns.input_shape, patterns.num_classes)
    batches = BatchStream(len(patterns.x_train), config.batch_size, config.seed)
    x, y = torch.from_numpy(patterns.x_train), torch.from_numpy(patterns.y_train)
    losses = [runner.step(x[index], y[index]).loss for index in (batches.next() for _ in range(config.steps))]
    assert result.loss == losses
    assert_same_stages(result, runner)


def simulated_device_orders(name, steps, microbatches):
    """Per simulated device, its compute ops (stage, op, step, microbatch) in the order they start."""
    stages = [StageCost(index=i, name=f"fc{i}", times_ns={"F": 1000, "B": 2000, "U": 300}, activation_bytes=4096,
                        gradient_bytes=4096, parameter_bytes=65536) for i in range(RANKS)]
    measurement = Measurement(source="test fixture", device="cpu", device_name="fixture", torch_version="n/a",
                              dtype="float32", batch_size=32, repeats=1, warmup=0)
    profile = CostProfile(model={"name": "fixture", "num_stages": RANKS}, method="bprop", measurement=measurement,
                          stages=stages)
    result = simulate(profile, "cluster-10gbe", name, steps=steps, microbatches=microbatches, baseline=False)
    trace = result.trace[result.trace["kind"].astype(str) == "device"].sort_values(["device", "start_ns", "end_ns"],
                                                                                   kind="stable")
    orders: dict[str, list] = {}
    for row in trace.itertuples():
        orders.setdefault(str(row.device), []).append((int(row.stage), str(row.op), int(row.step), int(row.microbatch)))
    assert all(len({op[0] for op in order}) == 1 for order in orders.values())  # one stage per device
    return {order[0][0]: order for order in orders.values()}  # by the stage (the rank) each device holds


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_each_rank_runs_the_registry_and_simulator_order(pipelines, name):
    config, results = pipelines
    method = get_method(name)
    program = pipeline_program(method, RANKS, MICRO)
    # the lists are the registry's, passed through the communication pass as the simulator does
    assert program == {r: tuple(a) for r, a in with_communication(method.rank_actions(RANKS, MICRO), lambda s: s,
                                                                    RANKS).items()}
    assert program == {r: tuple(actions) for r, (_, actions) in rank_schedule(method, list(range(RANKS)), MICRO).items()}
    simulated = simulated_device_orders(name, STEPS, MICRO)
    for rank in range(RANKS):
        records = results[name].ranks[rank]["records"]
        assert [r["start_ns"] for r in records] == sorted(r["start_ns"] for r in records)
        measured = [(r["stage"], r["op"], r["step"], r["microbatch"]) for r in records]
        expected = [(a.stage, a.op, step, a.microbatch) for step in range(STEPS) for a in waits_at_use(list(program[rank]))]
        assert measured == expected  # every op, messages included, in the list's order (a receive waited for at its use)
        compute = [m for m in measured if m[1] in ("F", "B", "U")]
        assert compute == [(a.stage, a.op, step, a.microbatch) for step in range(STEPS)
                           for a in method.rank_actions(RANKS, MICRO)[rank]]
        assert compute == simulated[rank]  # the simulator's device order is the measured one


def test_a_receive_is_waited_for_right_before_the_op_that_reads_it():
    program = [Action(1, "F", 0), Action(1, "RECV_F", 1), Action(1, "RECV_B", 0), Action(1, "B", 0), Action(1, "F", 1)]
    assert waits_at_use(program) == [Action(1, "F", 0), Action(1, "RECV_B", 0), Action(1, "B", 0), Action(1, "RECV_F", 1),
                                     Action(1, "F", 1)]


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_every_op_of_every_step_is_recorded_exactly_once(pipelines, name):
    config, results = pipelines
    program = pipeline_program(get_method(name), RANKS, MICRO)
    for rank in range(RANKS):
        seen = Counter((r["step"], r["stage"], r["op"], r["microbatch"]) for r in results[name].ranks[rank]["records"])
        expected = {(step, a.stage, a.op, a.microbatch) for step in range(STEPS) for a in program[rank]}
        assert set(seen) == expected and set(seen.values()) == {1}
        ops_per_step = Counter(op for (_, _, op, _) in seen)
        assert ops_per_step["F"] == ops_per_step["B"] == STEPS * MICRO and ops_per_step["U"] == STEPS
        for record in results[name].ranks[rank]["records"]:
            assert record["rank"] == record["stage"] == rank
            assert record["start_ns"] <= record["end_ns"] and record["start_wall_ns"] <= record["end_wall_ns"]
    # one host, one wall clock: rank 1's wait for h_0 of a microbatch ends after rank 0 began sending it
    sends = {(r["step"], r["microbatch"]): r for r in results[name].ranks[0]["records"] if r["op"] == "SEND_F"}
    for record in results[name].ranks[1]["records"]:
        if record["op"] == "RECV_F":
            assert record["end_wall_ns"] >= sends[record["step"], record["microbatch"]]["start_wall_ns"]


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
def test_the_trace_has_every_op_of_every_microbatch_of_every_step_once(pipelines, name):
    config, results = pipelines
    trace = results[name].trace()
    program = pipeline_program(get_method(name), RANKS, MICRO)
    expected = Counter((a.stage, a.op, step, a.microbatch) for step in range(STEPS) for r in range(RANKS)
                       for a in program[r])
    assert Counter(zip(trace.stage, trace.op, trace.step, trace.microbatch)) == expected  # each exactly once
    assert set(trace[trace.op == "F"].microbatch) == set(range(MICRO))  # the microbatch is filled in
    assert set(trace[trace.kind == "device"].device) == {"rank0", "rank1"}
    assert set(trace[trace.kind == "link"].device) == {"rank0->rank1", "rank1->rank0"}
    assert trace.start_ns.min() >= 0
    for step in range(STEPS):  # one clock: rank 1's F of a microbatch starts after rank 0's F of it ended
        at = trace[trace.step == step]
        f0 = at[(at.stage == 0) & (at.op == "F")].set_index("microbatch").end_ns
        f1 = at[(at.stage == 1) & (at.op == "F")].set_index("microbatch").start_ns
        assert (f1 >= f0).all()


def read_json(path):
    return json.loads(path.read_text())


def leaves(tree, prefix=""):
    """(path, leaf) of every tensor and number in a nested state."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, f"{prefix}/{key}")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from leaves(value, f"{prefix}/{i}")
    else:
        yield prefix, tree


def test_a_pipeline_writes_the_run_directory_and_resumes_bitwise(patterns, tmp_path):
    config = tiny(steps=8, eval_every=4, log_every=2)
    whole = run_pipeline(config, patterns, "1f1b", MICRO, tmp_path / "whole")
    run_pipeline(tiny(steps=4, eval_every=4, log_every=2), patterns, "1f1b", MICRO, tmp_path / "split")
    resumed = run_pipeline(config, patterns, "1f1b", MICRO, tmp_path / "split", resume=True)
    # the losses are the microbatched reference's, logged as the in-process trainer logs them
    _, losses = microbatched_backprop(config, patterns, MICRO)
    assert whole.loss == losses
    metrics = pd.read_csv(tmp_path / "whole" / "metrics.csv")
    train_rows = metrics[metrics.kind == "train"]
    assert list(train_rows.step) == [2, 4, 6, 8] and list(train_rows.loss) == [losses[s - 1] for s in (2, 4, 6, 8)]
    assert list(metrics[metrics.kind == "eval"].step) == [4, 8]
    schedule = {"method": "1f1b", "microbatches": MICRO}
    for out in ("whole", "split"):
        assert read_json(tmp_path / out / "config.json")["pipeline"] == schedule
        assert read_json(tmp_path / out / "summary.json")["pipeline"] == schedule
        assert read_json(tmp_path / out / "config.json")["config"]["method"] == "bprop"
    assert read_json(tmp_path / "split" / "config.json")["resumed"][0]["resumed_at_step"] == 4
    assert resumed.summary == read_json(tmp_path / "split" / "summary.json")
    a, b = (pd.read_csv(tmp_path / d / "metrics.csv").drop(columns=["time_s"]) for d in ("whole", "split"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    states = []
    for out in ("whole", "split"):
        run = DistRunDir(tmp_path / out)
        manifest = run.load_checkpoint()
        assert manifest["step"] == 8 and manifest["pipeline"] == schedule
        states.append(merge_rank_states([run.load_rank_checkpoint(8, r) for r in range(RANKS)]))
    flat = [dict(leaves(state)) for state in states]  # modules, optimizers, batch order, generators
    assert flat[0].keys() == flat[1].keys() and any("optimizers" in key for key in flat[0])
    for key, value in flat[0].items():
        assert torch.equal(value, flat[1][key]) if torch.is_tensor(value) else value == flat[1][key], key
    with pytest.raises(UsageError, match="trained as 1f1b of 4 microbatches, not as gpipe of 4"):
        run_pipeline(config, patterns, "gpipe", MICRO, tmp_path / "split", resume=True)
    with pytest.raises(UsageError, match="not as no pipeline"):
        train_distributed(DistRun(config, patterns), tmp_path / "split", resume=True)


def test_a_failing_rank_is_named_with_the_microbatch_of_its_last_op(patterns):
    run = DistRun(tiny(), patterns, method="gpipe", microbatches=MICRO, fault=FailAt(rank=1, step=1, op="B",
                                                                                    microbatch=3, hard=True))
    with pytest.raises(RankFailed) as caught:
        train_distributed(run, timeout=20, run_timeout=60)
    assert caught.value.rank == 1 and "in 1B3 of step 1" in str(caught.value), str(caught.value)


@pytest.mark.parametrize("fields, run, message", [
    ({"method": "dni"}, {"method": "gpipe"}, "config's method must be 'bprop'"),
    ({}, {"method": "gpipe", "processes": 1}, "one process per stage"),
    ({}, {"method": "1f1b", "microbatches": 5}, "batch_size 32 must split into 5 equal microbatches"),
    ({}, {"microbatches": 4}, "microbatches apply to a pipeline schedule"),
    ({}, {"method": "dni"}, "set 'dni' as the config's method"),
])
def test_what_a_pipeline_cannot_run_is_refused_before_any_rank_starts(fields, run, message, patterns):
    with pytest.raises(UsageError, match=message):
        train_distributed(DistRun(tiny(**fields), patterns, **run))


def test_worker_for_dispatches_pipelines_to_the_pipeline_worker():
    assert worker_for("gpipe") is worker_for("pipedream-flush") is worker_for(get_method("1f1b")) is pipeline_worker
    assert worker_for("bprop") is worker_for("dni") is stage_worker
    assert PipelineRun(tiny(), None).resolved_method().name == "gpipe"  # the older spelling of DistRun(method="gpipe")
