"""Fixtures of the profiler tests: a tiny dataset, one CPU thread, a shared DNI profile."""

import pytest
import torch
from profile_helpers import tiny_config, tiny_dataset


@pytest.fixture(scope="session")
def dataset():
    return tiny_dataset()


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine a second thread's barrier waits are the
    largest source of timing noise (a descheduled worker stalls every parallel kernel)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def dni_profile(dataset):
    from sglab.profiling import profile_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return profile_model(tiny_config("dni"), dataset=dataset, repeats=5, warmup=1)
    finally:
        torch.set_num_threads(before)
