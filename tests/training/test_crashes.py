"""No run is lost: killed, interrupted, out of disk or on a read-only disk, a run resumes to the uninterrupted result.

Each crash happens to a real child process training a tiny DNI network on the embedded digits;
the child is then resumed and its run directory compared, bitwise, with an uninterrupted run.
"""

import errno
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from test_train_loop import assert_same_run, strict_json

from sglab.errors import SglabError
from sglab.training import ClassifyConfig, train
from sglab.training.run_dir import RunDir

pytestmark = pytest.mark.slow
STEPS = 300

CHILD = textwrap.dedent("""
    import sys
    import torch
    torch.set_num_threads(1)
    from sglab.training import ClassifyConfig, train
    config = ClassifyConfig(method="dni", layers=3, width=16, synth_width=16, batch_size=32, steps={steps}, eval_every=3,
                            log_every=2, device="cpu", limit_train=512, limit_test=128, lr=1e-3)
    train(config, sys.argv[1], resume=len(sys.argv) > 2, progress=False)
""")


def child(tmp_path, steps=STEPS):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(steps=steps))
    return script


def run_child(script, out, resume=False, **kwargs) -> subprocess.CompletedProcess:
    args = [sys.executable, str(script), str(out)] + (["resume"] if resume else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=240, **kwargs)


def start_and_wait_for_a_checkpoint(script, out) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "metrics.csv").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the child wrote no checkpoint in time"
        time.sleep(0.01)
    return process


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    done = run_child(child(tmp), tmp / "run")
    assert done.returncode == 0, done.stderr
    return tmp / "run"


@pytest.mark.parametrize("delay", [0.0, random.Random(1).uniform(0.02, 0.3), random.Random(2).uniform(0.3, 0.6)])
def test_sigkill_at_any_point_then_resume_gives_the_uninterrupted_run(delay, uninterrupted, tmp_path):
    out = tmp_path / "run"
    process = start_and_wait_for_a_checkpoint(child(tmp_path), out)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert RunDir(out).load_checkpoint()["step"] < STEPS, "the kill came too late to test anything"
    resumed = run_child(child(tmp_path), out, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(uninterrupted, out)
    assert not list(out.glob(".*.tmp")), "a killed write's temporary file was left behind"


def test_sigint_stops_with_a_resumable_checkpoint_and_says_so(uninterrupted, tmp_path):
    out = tmp_path / "run"
    process = start_and_wait_for_a_checkpoint(child(tmp_path), out)
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert "continues with --resume" in err
    summary = strict_json(out / "summary.json")
    assert summary["status"] == "interrupted"
    assert summary["checkpoint_step"] == summary["steps"] == RunDir(out).load_checkpoint()["step"]
    assert run_child(child(tmp_path), out, resume=True).returncode == 0
    assert_same_run(uninterrupted, out)


def test_a_full_disk_leaves_the_last_checkpoint_whole_and_resumable(uninterrupted, tmp_path):
    # The checkpoint grows with the metrics it holds: a limit a little under the final one's
    # size makes one of the last checkpoint writes fail, as a disk filling up would.
    limit = (uninterrupted / "checkpoint.pt").stat().st_size - 2_000

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "run"
    failed = run_child(child(tmp_path), out, preexec_fn=small_files)
    assert failed.returncode != 0 and "the file size limit is reached" in failed.stderr
    assert RunDir(out).load_checkpoint()["step"] < STEPS
    assert not list(out.glob(".*.tmp"))
    assert run_child(child(tmp_path), out, resume=True).returncode == 0
    assert_same_run(uninterrupted, out)


def test_a_read_only_run_directory_is_one_clear_error_and_stays_resumable(patterns, tmp_path, monkeypatch):
    import sglab.io

    config = ClassifyConfig(method="dni", layers=3, width=16, synth_width=16, batch_size=32, steps=20, eval_every=5,
                            device="cpu", dataset="patterns")
    train(config, tmp_path / "reference", progress=False, dataset=patterns)
    real, calls = sglab.io.tempfile.mkstemp, []

    def read_only_after_a_while(*args, **kwargs):
        calls.append(1)
        if len(calls) > 6:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, **kwargs)

    monkeypatch.setattr(sglab.io.tempfile, "mkstemp", read_only_after_a_while)
    with pytest.raises(SglabError, match="cannot write: the file system is read-only"):
        train(config, tmp_path / "run", progress=False, dataset=patterns)
    monkeypatch.setattr(sglab.io.tempfile, "mkstemp", real)
    train(config, tmp_path / "run", progress=False, dataset=patterns, resume=True)
    assert_same_run(tmp_path / "reference", tmp_path / "run")
