"""Fixtures of the recurrent tests: the ``sglab`` entry point and digits that need no dataset."""

from __future__ import annotations

import argparse

import pytest
from recurrent_helpers import fake_digits


def _train_only_parser() -> argparse.ArgumentParser:
    from sglab.cli import train

    parser = argparse.ArgumentParser(prog="sglab")
    parser.add_argument("--debug", action="store_true")
    train.register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


@pytest.fixture
def sglab_main(monkeypatch):
    """``sglab.cli.main``; while another subcommand's module cannot be imported, with ``train`` alone.

    The recurrent tests need only ``sglab train``; main's error handling (messages, exit codes)
    is the real one either way.
    """
    import sglab.cli as cli

    try:
        cli.build_parser()
    except ImportError:
        monkeypatch.setattr(cli, "build_parser", _train_only_parser)
    return cli.main


@pytest.fixture
def fake_mnist(monkeypatch):
    """Two-RNN sessions read fake digits instead of loading the embedded MNIST (which takes seconds)."""
    from sglab.training import two_rnn

    digits = {"train": fake_digits(200, 0), "test": fake_digits(100, 1)}
    monkeypatch.setattr(two_rnn, "embedded_digits", lambda: digits)
    return digits
