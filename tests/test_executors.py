"""sglab.executors: a process pool by default, one clear error for a bad pool or an absent scheduler."""

from __future__ import annotations

import math

import pytest

from sglab.errors import SglabError, UsageError
from sglab.executors import open_executor


def test_a_process_pool_runs_plain_functions():
    with open_executor(workers=2) as pool:
        assert list(pool.map(math.factorial, [3, 4, 5])) == [6, 24, 120]


def test_no_workers_is_a_usage_error():
    with pytest.raises(UsageError, match="workers must be >= 1, got 0"):
        with open_executor(workers=0):
            pass


def test_an_unreachable_scheduler_names_its_address():
    pytest.importorskip("distributed")
    with pytest.raises(SglabError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"):
        with open_executor(scheduler_address="tcp://127.0.0.1:9", connect_timeout_s=1):
            pass
