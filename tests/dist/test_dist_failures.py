"""A broken multi-process run stops within its timeout and names the rank and the op: never a hang."""

import time

import pytest
import torch

from sglab.dist import DistRun, FailAt, RankFailed, launch, train_distributed
from sglab.dist.transport import FORWARD, RankTimeout, Transport
from sglab.training import ClassifyConfig

TIMEOUT = 20.0  # each rank's wait for a peer: a failure must be reported well before it


def tiny():
    return ClassifyConfig(method="dni", layers=2, width=32, synth_width=32, batch_size=32, steps=6, lr=3e-3,
                          device="cpu", dataset="patterns")


@pytest.mark.parametrize("hard", [False, True], ids=["raises", "dies"])
def test_a_failing_rank_is_named_with_its_last_op(hard, patterns):
    run = DistRun(tiny(), patterns, fault=FailAt(rank=1, step=2, op="B", hard=hard))
    start = time.monotonic()
    with pytest.raises(RankFailed) as caught:
        train_distributed(run, timeout=TIMEOUT, run_timeout=60)
    assert time.monotonic() - start < TIMEOUT
    err = caught.value
    assert err.rank == 1
    assert "rank 1" in str(err) and "1B0 of step 2" in str(err)
    assert ("InjectedFault" in str(err)) != hard
    assert ("exited with code 3" in str(err)) == hard


def wait_for_silent_peer(ctx):
    """Rank 0 waits for an activation that rank 1 never sends."""
    if ctx.rank == 0:
        Transport(0, timeout=1.0).recv((4,), torch.float32, 1, FORWARD, 0, "RECV_F")
    else:
        time.sleep(2.5)


def test_a_wait_past_its_timeout_names_the_peer_and_the_op():
    with pytest.raises(RankFailed) as caught:
        launch(wait_for_silent_peer, 2, timeout=TIMEOUT, run_timeout=60)
    err = caught.value
    assert err.rank == 0
    assert "RankTimeout" in err.detail and "RECV_F of step 0" in err.detail and "waiting for rank 1" in err.detail
    assert issubclass(RankTimeout, TimeoutError)


def stuck(ctx):
    """A rank that computes forever without waiting for anyone."""
    time.sleep(600)


def test_the_whole_run_is_bounded_by_its_timeout():
    start = time.monotonic()
    with pytest.raises(RankFailed, match="passed its timeout of 3 s"):
        launch(stuck, 1, timeout=TIMEOUT, run_timeout=3)
    assert time.monotonic() - start < 15
