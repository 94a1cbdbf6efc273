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

The per-stage fields live in one list, ``stamps``, stage after stage:
stage ``s``'s field ``f`` (``ENQUEUED`` ... ``WAITING``) is
``stamps[s * FIELDS + f]``. Each event of a stage writes or reads a few
fields of that stage, so it touches one or two cache lines of one list
rather than one line in each of nine lists: at a city's width (thousands of
requests in flight) a request is out of the cache whenever it is touched
again, and each line is a miss (reports/sim-speed.md, issue 11). The model
writes ``stamps``; other readers use the per-field views (``start``,
``end``, ...: tuples, one value per stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

from sim.contract.outcomes import Outcome

__all__ = ["Job", "Outcome", "Request", "blank_stamps", "FIELDS", "ENQUEUED", "START", "END", "INSTANCE", "BATCH",
           "BATCH_SIZE", "LINK", "OUT_BYTES", "WAITING"]

# A stage's fields in ``Request.stamps``: when the job reached the device's queue, when its batch started
# and ended, the device instance's uid (-1: none), the batch's id and size (-1: none), the link it
# arrived over (-1: none), the bytes the stage put out, and how many predecessors it still waits for.
ENQUEUED, START, END, INSTANCE, BATCH, BATCH_SIZE, LINK, OUT_BYTES, WAITING = range(9)
FIELDS = 9


def blank_stamps(preds: Sequence[int]) -> list:
    """A new request's ``stamps`` for stages waiting for ``preds[s]`` predecessors each."""
    nan = math.nan
    stamps: list = []
    for waiting in preds:
        stamps += (nan, nan, nan, -1, -1, -1, -1, 0.0, waiting)
    return stamps


@dataclass(slots=True, eq=False)
class Request:
    id: int
    source: int
    klass: int
    priority: int
    arrival: float
    deadline: float
    size: float
    stamps: list  # the per-stage fields, stage after stage (see the module's docstring)
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
        return cls(id, source, klass, priority, arrival, deadline, size, blank_stamps(preds), sinks)

    # the per-stage fields as tuples, one value per stage (to read; the model writes ``stamps``)
    @property
    def enqueued(self) -> tuple[float, ...]:
        return tuple(self.stamps[ENQUEUED::FIELDS])

    @property
    def start(self) -> tuple[float, ...]:
        return tuple(self.stamps[START::FIELDS])

    @property
    def end(self) -> tuple[float, ...]:
        return tuple(self.stamps[END::FIELDS])

    @property
    def instance(self) -> tuple[int, ...]:
        return tuple(self.stamps[INSTANCE::FIELDS])

    @property
    def batch(self) -> tuple[int, ...]:
        return tuple(self.stamps[BATCH::FIELDS])

    @property
    def batch_size(self) -> tuple[int, ...]:
        return tuple(self.stamps[BATCH_SIZE::FIELDS])

    @property
    def link(self) -> tuple[int, ...]:
        return tuple(self.stamps[LINK::FIELDS])

    @property
    def out_bytes(self) -> tuple[float, ...]:
        return tuple(self.stamps[OUT_BYTES::FIELDS])

    @property
    def waiting_preds(self) -> tuple[int, ...]:
        return tuple(self.stamps[WAITING::FIELDS])


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
