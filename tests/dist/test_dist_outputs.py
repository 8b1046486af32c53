"""A distributed run writes the in-process trainer's run directory, bitwise: metrics, summary, checkpoint
(merged over ranks), resume, divergence and Ctrl-C; and a measured trace of every op on one clock."""

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

from sglab.cli import main
from sglab.dist import DistRun, train_distributed
from sglab.dist.outputs import DistRunDir, merge_rank_states
from sglab.dist.program import rank_step
from sglab.errors import UsageError
from sglab.methods import Chain, get_method
from sglab.trace import read_trace, summarize_trace
from sglab.training import ClassifyConfig, TrainingDiverged, train
from sglab.training.run_dir import RunDir

ROOT = Path(__file__).resolve().parents[2]


def tiny(method, steps=20, layers=2, **fields):
    values = dict(method=method, layers=layers, width=32, synth_width=32, batch_size=32, steps=steps, lr=3e-3,
                  eval_every=7, log_every=3, device="cpu", dataset="patterns")
    return ClassifyConfig(**{**values, **fields})


def read_json(path):
    return json.loads(Path(path).read_text())


def tensors(tree, prefix=""):
    found = {}
    if torch.is_tensor(tree):
        found[prefix] = tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            found.update(tensors(value, f"{prefix}/{key}"))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            found.update(tensors(value, f"{prefix}/{i}"))
    return found


def merged_session(out):
    """The distributed checkpoint, merged over ranks: the in-process session's state_dict."""
    run = DistRunDir(out)
    manifest = run.load_checkpoint()
    return merge_rank_states([run.load_rank_checkpoint(manifest["step"], r) for r in range(manifest["processes"])])


def assert_same_as_in_process(reference, out):
    a, b = (pd.read_csv(d / "metrics.csv").drop(columns=["time_s"]) for d in (reference, out))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    sa, sb = read_json(reference / "summary.json"), read_json(out / "summary.json")
    assert sa.keys() == sb.keys()
    assert {k: v for k, v in sa.items() if k != "train_time_s"} == {k: v for k, v in sb.items() if k != "train_time_s"}
    ta, tb = tensors(RunDir(reference).load_checkpoint()["session"]), tensors(merged_session(out))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


@pytest.fixture(scope="module")
def references(patterns, tmp_path_factory):
    """In-process runs, by method and steps."""
    made = {}

    def get(method, steps=20, **fields):
        key = (method, steps, tuple(sorted(fields.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(f"ref-{method}")
            train(tiny(method, steps, **fields), out, progress=False, dataset=patterns)
            made[key] = out
        return made[key]

    return get


@pytest.mark.parametrize("method, processes", [
    ("dni", 2), ("bprop", 1), ("dni", 1), ("cdni", 1),
    pytest.param("bprop", 2, marks=pytest.mark.slow), pytest.param("cdni", 2, marks=pytest.mark.slow),
])
def test_the_run_directory_is_the_in_process_trainers_bitwise(method, processes, patterns, references, tmp_path):
    result = train_distributed(DistRun(tiny(method), patterns, processes=processes), tmp_path, timeout=30, run_timeout=120)
    reference = references(method)
    assert_same_as_in_process(reference, tmp_path)
    record, expected = read_json(tmp_path / "config.json"), read_json(reference / "config.json")
    assert record["processes"] == processes and record.keys() - {"processes"} == expected.keys()
    assert record["config"] == expected["config"] and record["data"] == expected["data"]
    assert result.summary == read_json(tmp_path / "summary.json")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step00000020"]  # older steps removed
    assert {p.name for p in (tmp_path / "checkpoints" / "step00000020").iterdir()} == {f"rank{r}.pt" for r in range(processes)}


def test_resume_continues_from_the_last_complete_checkpoint_bitwise(patterns, references, tmp_path):
    train_distributed(DistRun(tiny("dni", steps=14), patterns), tmp_path, timeout=30, run_timeout=120)
    # a crash after rank 0 wrote its checkpoint of step 15 but before rank 1 did: that step is not complete
    run = DistRunDir(tmp_path)
    run.rank_checkpoint(15, 0).parent.mkdir()
    run.rank_checkpoint(15, 0).write_bytes(run.rank_checkpoint(14, 0).read_bytes())
    assert run.complete_steps(2) == [14] and run.load_checkpoint()["step"] == 14
    train_distributed(DistRun(tiny("dni"), patterns), tmp_path, resume=True, timeout=30, run_timeout=120)
    assert_same_as_in_process(references("dni"), tmp_path)
    assert read_json(tmp_path / "config.json")["resumed"][0]["resumed_at_step"] == 14
    with pytest.raises(UsageError, match="written by 2 process"):
        train_distributed(DistRun(tiny("dni"), patterns, processes=1), tmp_path, resume=True)


def test_a_diverging_run_stops_as_the_in_process_trainer_does(patterns, tmp_path):
    # sane until step 25, then the learning rate jumps by 1e7 (tests/training: the same run in process)
    fields = dict(eval_every=10, lr_milestones=[25], lr_gamma=1e7, divergence_loss=50.0)
    with pytest.raises(TrainingDiverged) as in_process:
        train(tiny("dni", steps=60, **fields), tmp_path / "ref", progress=False, dataset=patterns)
    with pytest.raises(TrainingDiverged) as distributed:
        train_distributed(DistRun(tiny("dni", steps=60, **fields), patterns), tmp_path / "dist", timeout=30, run_timeout=120)
    assert str(distributed.value).replace("dist", "ref") == str(in_process.value)
    summary = read_json(tmp_path / "dist" / "summary.json")
    assert summary["status"] == "diverged" and summary["checkpoint_step"] < summary["diverged_at_step"]
    assert_same_as_in_process(tmp_path / "ref", tmp_path / "dist")


def test_the_trace_has_every_op_of_every_step_once_on_one_clock(patterns, tmp_path):
    config = tiny("dni", steps=12, layers=3)
    train_distributed(DistRun(config, patterns), tmp_path, timeout=30, run_timeout=120)
    trace = read_trace(tmp_path / "trace.csv")
    method = get_method("dni")
    expected = Counter((rank, step, a.op) for rank in range(3) for step in range(12)
                       for a in rank_step(method, 3, rank).actions)
    assert Counter(zip(trace.stage, trace.step, trace.op)) == expected  # each exactly once
    compute = trace[trace.kind == "device"]
    assert set(compute.device) == {"rank0", "rank1", "rank2"} and not compute.op.str.contains("SEND|RECV").any()
    links = trace[trace.kind == "link"]
    assert set(links.device) == {"rank0->rank1", "rank1->rank2", "rank2->rank1", "rank1->rank0"}
    assert set(links[links.op == "SEND_F"].device) == {"rank0->rank1", "rank1->rank2"}
    assert set(links[links.op == "RECV_B"].device) == {"rank2->rank1", "rank1->rank0"}
    # one clock: h_0 of a step is received on rank 1 only after rank 0 began sending it, F_1 after F_0
    for step in range(12):
        at = trace[trace.step == step].set_index(["stage", "op"])
        assert at.loc[(1, "RECV_F"), "end_ns"] >= at.loc[(0, "SEND_F"), "start_ns"]
        assert at.loc[(1, "F"), "start_ns"] >= at.loc[(0, "F"), "end_ns"]
    assert trace.start_ns.min() >= 0
    summary = summarize_trace(trace)
    assert summary.makespan_ns > 0 and 0 <= summary.bubble_fraction < 1
    assert set(summary.devices.device) == set(trace.device)
    chrome = read_json(tmp_path / "trace.json")
    assert sum(e["ph"] == "X" for e in chrome["traceEvents"]) == len(trace)


def test_a_one_process_trace_has_every_op_of_the_in_process_order(patterns, tmp_path):
    result = train_distributed(DistRun(tiny("cdni", steps=5, layers=3), patterns, processes=1), timeout=30, run_timeout=60)
    trace = result.trace()
    order = [(a.stage, a.op) for a in get_method("cdni").step_order(Chain(3))]
    for step in range(5):
        at = trace[trace.step == step].sort_values("start_ns")
        assert list(zip(at.stage, at.op)) == order
    assert set(trace.device) == {"rank0"} and set(trace.kind) == {"device"}


CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import pattern_dataset
    from sglab.dist import DistRun, train_distributed
    from sglab.training import ClassifyConfig
    if __name__ == "__main__":
        config = ClassifyConfig(method="dni", layers=2, width=32, synth_width=32, batch_size=32, steps={steps},
                                lr=3e-3, eval_every=4, log_every=2, device="cpu", dataset="patterns")
        train_distributed(DistRun(config, pattern_dataset()), sys.argv[1], resume=len(sys.argv) > 2, timeout=30)
""")


def children(pid):
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_leaves_a_resumable_checkpoint(patterns, tmp_path):
    steps = 400
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(ROOT / "tests"), steps=steps))
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the child wrote no checkpoint in time"
        time.sleep(0.01)
    time.sleep(0.3)
    ranks = children(process.pid)
    assert len(ranks) >= 2  # the two ranks (and spawn's resource tracker)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0 and "continues with --resume" in err, err
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in ranks):
        assert time.monotonic() < deadline, "a rank outlived the interrupted launcher"
        time.sleep(0.05)
    summary = read_json(out / "summary.json")
    manifest = DistRunDir(out).load_checkpoint()
    assert summary["status"] == "interrupted"
    assert summary["checkpoint_step"] == summary["steps"] == manifest["step"] < steps, "the signal came too late"
    done = subprocess.run([sys.executable, str(script), str(out), "resume"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "reference"
    train(ClassifyConfig(method="dni", layers=2, width=32, synth_width=32, batch_size=32, steps=steps, lr=3e-3,
                         eval_every=4, log_every=2, device="cpu", dataset="patterns"), reference, progress=False,
          dataset=patterns)
    assert_same_as_in_process(reference, out)


def test_sglab_train_processes_writes_the_run_directory_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--method", "dni", "--layers", "2", "--width", "16", "--synth-width", "16", "--batch-size", "32",
             "--eval-every", "3", "--limit-train", "256", "--out", str(out), "--no-progress"]
    assert main(["train", "--processes", "2", "--steps", "6", *flags]) == 0
    assert "2 processes" in capsys.readouterr().out
    assert {"config.json", "metrics.csv", "summary.json", "checkpoint.pt", "trace.csv", "trace.json"} <= {
        p.name for p in out.iterdir()}
    assert main(["train", "--resume", "--steps", "9", "--out", str(out), "--no-progress"]) == 0  # continues distributed
    assert read_json(out / "summary.json")["steps"] == 9 and read_json(out / "config.json")["processes"] == 2


def test_sglab_train_runs_a_pipeline_schedule_and_resumes_it(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--layers", "2", "--width", "16", "--batch-size", "32", "--eval-every", "3", "--limit-train", "256",
             "--out", str(out), "--no-progress"]
    assert main(["train", "--processes", "2", "--method", "gpipe", "--microbatches", "4", "--steps", "3", *flags]) == 0
    assert "gpipe (bprop over 4 microbatches)" in capsys.readouterr().out
    record = read_json(out / "config.json")
    assert record["config"]["method"] == "bprop" and record["pipeline"] == {"method": "gpipe", "microbatches": 4}
    assert main(["train", "--resume", "--steps", "6", "--out", str(out), "--no-progress"]) == 0  # the same pipeline
    summary = read_json(out / "summary.json")
    assert summary["steps"] == 6 and summary["pipeline"] == {"method": "gpipe", "microbatches": 4}
    trace = read_trace(out / "trace.csv")
    assert set(trace.step) == {3, 4, 5} and set(trace.microbatch) == {0, 1, 2, 3}  # the resumed steps


@pytest.mark.parametrize("args, message", [
    (["--method", "gpipe", "--layers", "2"], "runs with --processes (one per stage)"),
    (["--method", "1f1b", "--layers", "2", "--processes", "1"], "one process per stage"),
    (["--method", "dni", "--layers", "2", "--processes", "2", "--microbatches", "4"], "--microbatches applies to a pipeline"),
    (["--method", "gpipe", "--layers", "2", "--processes", "2", "--microbatches", "5"], "must split into 5 equal"),
    (["--task", "copy", "--processes", "2"], "--processes applies to --task classify"),
    (["--layers", "3", "--processes", "2"], "processes must be 1 (every stage in one process) or the number of layers (3"),
    (["--layers", "2", "--processes", "2", "--synth-loss", "sobolev"], "l2 only"),
    (["--layers", "2", "--processes", "2", "--probe-every", "5"], "no fidelity probes"),
    (["--layers", "2", "--processes", "2", "--profile"], "drop --profile"),
    (["--layers", "2", "--processes", "2", "--validation", "0.1"], "--validation is not scored by --processes"),
])
def test_sglab_train_processes_refuses_what_it_cannot_run_in_one_line(args, message, tmp_path, capsys):
    assert main(["train", *args, "--steps", "2", "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
