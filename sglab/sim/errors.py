"""Errors of the simulator; both derive from :class:`sglab.errors.SglabError` so the CLI prints them."""

from __future__ import annotations

from sglab.errors import SglabError


class SimError(SglabError, ValueError):
    """A simulation that cannot be set up or cannot finish; the message says which op or option."""


class HardwareError(SimError):
    """A hardware spec that cannot be used; the message names the offending field."""
