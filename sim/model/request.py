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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from sim.contract.outcomes import Outcome

__all__ = ["Job", "Outcome", "Request"]


@dataclass(slots=True, eq=False)
class Request:
    id: int
    source: int
    klass: int
    priority: int
    arrival: float
    deadline: float
    size: float
    enqueued: list[float]
    start: list[float]
    end: list[float]
    instance: list[int]
    batch: list[int]
    batch_size: list[int]
    link: list[int]
    out_bytes: list[float]
    waiting_preds: list[int]
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
        n = len(preds)
        nan = math.nan
        return cls(id, source, klass, priority, arrival, deadline, size,
                   [nan] * n, [nan] * n, [nan] * n, [-1] * n, [-1] * n, [-1] * n, [-1] * n, [0.0] * n, list(preds), sinks)


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
