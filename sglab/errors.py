"""The exceptions every user-facing error in sglab derives from, so the CLI can print them as one line.

:class:`SglabError` is a problem of the input or the environment that the user can fix (a
missing file, a full disk, a diverged run): the command exits 1. :class:`UsageError` is a
request that can never work as asked (a bad option, a config value out of range): exit 2.
"""


class SglabError(Exception):
    """An error caused by input or environment that the user can fix; the message says how."""


class UsageError(SglabError, ValueError):
    """A request that cannot work as asked (an option, a config field); the message names it and what is accepted."""
