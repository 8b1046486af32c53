"""The exception every user-facing error in sglab derives from, so the CLI can print it cleanly."""


class SglabError(Exception):
    """An error caused by input or environment that the user can fix; the message says how."""
