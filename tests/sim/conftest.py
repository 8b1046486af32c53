"""Fixtures of the simulator tests (builders in ``simfixtures``)."""

from __future__ import annotations

import pytest
from simfixtures import build_hardware, build_profile


@pytest.fixture(scope="session")
def profile_factory():
    """``build_profile`` as a fixture."""
    return build_profile


@pytest.fixture(scope="session")
def hardware_factory():
    """``build_hardware`` as a fixture."""
    return build_hardware
