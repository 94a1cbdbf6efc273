"""A request, and the jobs it puts into device queues.

A request is born at its arrival time and ends in exactly one outcome
(``sim.contract.outcomes.Outcome``). On its way it records, for every
stage, when it reached the device's queue, when service started and ended,
which device instance served it, in which batch (an id unique in the run,
and the batch's size)
and over which link it arrived (an index into the plan's links; -1 for
none), plus the link its reply left by; these become the per-request
columns of the results.

When failures or reactions are declared, a request also counts its
retries, the reason it fell back (a ``sim.policies.resilience.Reason``
code; 0 if it did not), whether a degraded fallback answered it, and its
failed attempts per stage. A job is one *attempt* at a stage: it ends once
(``ended``), by finishing, failing with its device or link, or timing out.

The per-stage fields live in two typed arrays, stage after stage: the real
numbers in ``reals`` (doubles: ``ENQUEUED``, ``START``, ``END``,
``OUT_BYTES``) and the integers in ``ints`` (64-bit: ``INSTANCE``,
``BATCH``, ``BATCH_SIZE``, ``LINK``, ``WAITING``); stage ``s``'s field is
at ``s * FIELDS + field`` in its array. At a city's width (thousands of
requests in flight) a request is out of the cache whenever it is touched
again and every cache line it spans is a miss (reports/sim-speed.md, issue
11): an event of a stage touches a line or two of each array, rather than
a line of each of nine lists and the float objects they point to, and the
numbers are stored, not objects kept alive until the request is written
out. The model writes the arrays; other readers use the per-field views
(``start``, ``end``, ...: tuples of Python numbers, one per stage).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Optional, Sequence

from sim.contract.outcomes import Outcome

__all__ = ["Job", "Outcome", "Request", "blank_reals", "blank_ints", "FIELDS", "ENQUEUED", "START", "END",
           "OUT_BYTES", "INSTANCE", "BATCH", "BATCH_SIZE", "LINK", "WAITING"]

# A stage's real numbers in ``Request.reals``: when the job reached the device's queue, when its batch
# started and ended (NaN: not yet, or never), and the bytes the stage put out.
ENQUEUED, START, END, OUT_BYTES = range(4)
# A stage's integers in ``Request.ints``: the device instance's uid, the batch's id and size, the link it
# arrived over (-1: none), and how many predecessors it still waits for.
INSTANCE, BATCH, BATCH_SIZE, LINK, WAITING = range(5)
FIELDS = 5
"""The stride of both arrays: stage ``s``'s fields start at ``s * FIELDS`` (``reals`` leaves one unused)."""


def blank_reals(stages: int) -> array:
    """A new request's ``reals``: nothing happened yet (its output bytes 0)."""
    return array("d", (math.nan, math.nan, math.nan, 0.0, 0.0) * stages)


def blank_ints(preds: Sequence[int]) -> array:
    """A new request's ``ints`` for stages waiting for ``preds[s]`` predecessors each."""
    ints = array("q")
    for waiting in preds:
        ints.extend((-1, -1, -1, -1, waiting))
    return ints


class _PerStage:
    """One per-stage field of a request, read as a tuple with a value per stage (a copy: writes go to the
    request's ``reals`` or ``ints``)."""

    def __init__(self, field: int, ints: bool = False):
        self.field, self.ints = field, ints

    def __get__(self, request: Optional["Request"], owner: type) -> tuple:
        if request is None:
            return self
        return tuple((request.ints if self.ints else request.reals)[self.field::FIELDS])


@dataclass(slots=True, eq=False)
class Request:
    id: int
    source: int
    klass: int
    priority: int
    arrival: float
    deadline: float
    size: float
    reals: array  # the per-stage real numbers, stage after stage (see the module's docstring)
    ints: array  # the per-stage integers
    sinks_left: int
    outcome: Outcome = Outcome.PENDING
    done: float = math.nan
    reply_link: int = -1
    retries: int = 0
    fallback: int = 0
    degraded: bool = False
    stage_failures: Optional[list[int]] = None  # failed attempts per stage, once one fails
    reached: Optional[list[bool]] = None  # branches or per-class entries: per stage, whether a predecessor sent it on

    @classmethod
    def blank(cls, id: int, source: int, klass: int, priority: int, arrival: float,
              deadline: float, size: float, preds: list[int], sinks: int) -> "Request":
        return cls(id, source, klass, priority, arrival, deadline, size, blank_reals(len(preds)), blank_ints(preds),
                   sinks)

    # the per-stage fields as tuples, one value per stage (to read; the model writes ``reals`` and ``ints``)
    enqueued = _PerStage(ENQUEUED)
    start = _PerStage(START)
    end = _PerStage(END)
    out_bytes = _PerStage(OUT_BYTES)
    instance = _PerStage(INSTANCE, ints=True)
    batch = _PerStage(BATCH, ints=True)
    batch_size = _PerStage(BATCH_SIZE, ints=True)
    link = _PerStage(LINK, ints=True)
    waiting_preds = _PerStage(WAITING, ints=True)


@dataclass(slots=True, eq=False)
class Job:
    """A request waiting at one stage on one device (satisfies ``JobView``)."""

    request: Request
    stage: int
    seq: int
    enqueued: float
    deadline: float
    priority: int
    on_done: object = field(default=None)  # callable(job) when service ends
    entered: float = 0.0  # when the attempt began (before any hop to the device)
    ended: bool = False  # the attempt has ended (finished, failed or timed out)
