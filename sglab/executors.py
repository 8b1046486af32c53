"""Where many independent jobs run: a process pool here, or a ``dask.distributed`` cluster.

Sweeps of simulations (:mod:`sglab.sim.sweep`) and the benchmarks that train many runs
(``benchmarks/rnn_tasks.py``, ``benchmarks/paper_table.py``) submit plain functions of plain
arguments to a ``concurrent.futures.Executor``; :func:`open_executor` makes that executor.

    with open_executor(workers=4) as pool:                      # a local process pool
        results = list(pool.map(train_one, configs))
    with open_executor(scheduler_address="tcp://10.0.0.1:8786") as pool:   # a dask cluster
        ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor

from sglab.errors import SglabError, UsageError


@contextlib.contextmanager
def open_executor(workers: int | None = None, scheduler_address: str | None = None,
                  connect_timeout_s: float = 10.0) -> Iterator[Executor]:
    """A ``dask.distributed`` client's executor when ``scheduler_address`` is set, else a process
    pool of ``workers`` processes (None: one per core); shut down on exit.

    A scheduler that does not answer within ``connect_timeout_s`` is an :class:`SglabError`
    naming the address; ``workers < 1`` is a :class:`UsageError`.
    """
    if workers is not None and workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    if not scheduler_address:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield pool
        return
    client = dask_client(scheduler_address, connect_timeout_s)
    executor = client.get_executor()
    try:
        yield executor
    finally:
        executor.shutdown()
        client.close()


def dask_client(address: str, timeout_s: float = 10.0):
    """A ``dask.distributed`` client of the scheduler at ``address``, or one clear error."""
    try:
        from distributed import Client
    except ImportError:
        raise SglabError("a scheduler address needs dask.distributed (pip install distributed)") from None
    try:
        return Client(address, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError) as err:  # refused, unreachable, timed out, malformed address
        raise SglabError(f"cannot reach the dask scheduler at {address} within {timeout_s:g} s "
                         f"({type(err).__name__}: {err}); is it running and reachable from here?") from None
