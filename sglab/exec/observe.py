"""Observers: what a runner shows of its work, op by op, without changing it.

A runner calls, for every op it executes::

    with observer.op(action):          # around the op (the profiler's timer times it here)
        ...the op...
    observer.tensors(action, {...})    # afterwards, only if observer.wants_tensors

and ``observer.begin_step(step)`` before each step. The tensors are the ones the op made or
consumed, detached from the graph and shared with the runner: an observer reads them and must
not write to them, so the computation is the same with and without it (tests check bitwise).

=====  ==========================================================================================
op     tensors
=====  ==========================================================================================
F      ``input`` and ``h`` (the stage's output); the last stage of a chain also ``labels`` and
       ``loss``; a recurrent chunk also ``chunk_*`` and ``rest_*`` (its ticks and those of the rest
       of the sequence, for probes); in two RNNs A's ``state`` and B's ``labels``
S      ``synthetic_gradient``
B      ``output_gradient``, ``input_gradient``
T, TI  ``prediction``, ``target``
SI     ``synthetic_input``
=====  ==========================================================================================
"""

from __future__ import annotations

import contextlib
from typing import Mapping

import torch

from sglab.ops import Action

_NULL = contextlib.nullcontext()


class Observer:
    """Sees every op of a runner; the base class sees nothing. Override what you need."""

    #: Whether :meth:`tensors` should be called (building the mapping costs a little).
    wants_tensors: bool = False

    def begin_step(self, step: int) -> None:
        """A new step starts (its index within this run of the runner)."""

    def op(self, action: Action) -> contextlib.AbstractContextManager:
        """Context manager wrapped around one op."""
        return _NULL

    def tensors(self, action: Action, tensors: Mapping[str, torch.Tensor]) -> None:
        """The tensors ``action`` made or consumed (read-only)."""


class Observers(Observer):
    """Several observers as one: each sees every op, the first one innermost around it."""

    def __init__(self, *observers: Observer):
        self.members = [o for o in observers if o is not None]
        self.wants_tensors = any(o.wants_tensors for o in self.members)

    def begin_step(self, step: int) -> None:
        for observer in self.members:
            observer.begin_step(step)

    def op(self, action: Action) -> contextlib.AbstractContextManager:
        if len(self.members) == 1:
            return self.members[0].op(action)
        stack = contextlib.ExitStack()
        for observer in reversed(self.members):
            stack.enter_context(observer.op(action))
        return stack

    def tensors(self, action: Action, tensors: Mapping[str, torch.Tensor]) -> None:
        for observer in self.members:
            if observer.wants_tensors:
                observer.tensors(action, tensors)


NULL_OBSERVER = Observer()


def as_observer(observer: Observer | None) -> Observer:
    """``observer``, or one that sees nothing."""
    return NULL_OBSERVER if observer is None else observer
