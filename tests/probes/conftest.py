"""Fixtures of the probe tests: two-RNN sessions read fake digits instead of the embedded MNIST."""

import pytest
from probe_helpers import fake_digits


@pytest.fixture
def fake_mnist(monkeypatch):
    from sglab.training import two_rnn

    digits = {"train": fake_digits(200, 0), "test": fake_digits(100, 1)}
    monkeypatch.setattr(two_rnn, "embedded_digits", lambda: digits)
    return digits
