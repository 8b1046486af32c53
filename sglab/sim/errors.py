"""Errors of the simulator, split the way the CLI reports them.

:class:`SimError` (exit 1) is a simulation that cannot run on its input: a profile that lacks
an op the method needs, a hardware spec that cannot be used, a schedule that can never finish.
:class:`SimUsageError` (exit 2) is a request that cannot work as asked: an option out of range,
something that is not a method.
"""

from __future__ import annotations

from sglab.errors import SglabError, UsageError


class SimError(SglabError, ValueError):
    """A simulation that cannot be set up or cannot finish; the message says which op or field."""


class SimUsageError(SimError, UsageError):
    """A simulation asked for with options or arguments that cannot work; the message names them."""


class HardwareError(SimError):
    """A hardware spec that cannot be used; the message names the offending field."""
