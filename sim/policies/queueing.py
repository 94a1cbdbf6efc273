"""Queue disciplines, and the queue that keeps their order.

A discipline is a sort key: FIFO serves in order of arrival, priority serves
the highest class first (FIFO within a class), EDF serves the earliest
deadline first. ``PolicyQueue`` is a binary heap on that key, the same
structure the simulator's devices and the harness's batchers use, so the
two worlds serve jobs in the same order. ``DISCIPLINES`` maps each scenario
kind (``fifo``, ``priority``, ``edf``) to its discipline.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sim.policies.views import JobView
from sim.registry import Registry

Job = TypeVar("Job", bound=JobView)


class QueueDiscipline(Protocol):
    def key(self, job: JobView) -> tuple[float, ...]:
        """Smaller keys are served first."""


@dataclass(frozen=True)
class Fifo:
    """First come, first served."""

    def key(self, job: JobView) -> tuple[float, ...]:
        return (job.seq,)


@dataclass(frozen=True)
class Priority:
    """Highest priority first; first come, first served within a priority."""

    def key(self, job: JobView) -> tuple[float, ...]:
        return (-job.priority, job.seq)


@dataclass(frozen=True)
class EarliestDeadlineFirst:
    """Earliest absolute deadline first; jobs without one go last, in order."""

    def key(self, job: JobView) -> tuple[float, ...]:
        return (job.deadline, job.seq)


DISCIPLINES: Registry[type] = Registry("queue discipline")
DISCIPLINES.register("fifo")(Fifo)
DISCIPLINES.register("priority")(Priority)
DISCIPLINES.register("edf")(EarliestDeadlineFirst)


@dataclass
class PolicyQueue(Generic[Job]):
    """Waiting jobs in the order a discipline dictates.

    ``oldest_enqueued`` and ``earliest_deadline`` let batchers decide without
    scanning; they are exact and cheap for FIFO and EDF and a linear scan
    otherwise.
    """

    discipline: QueueDiscipline
    _heap: list[tuple[tuple[float, ...], Job]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, job: Job) -> None:
        heapq.heappush(self._heap, (self.discipline.key(job), job))

    def pop(self) -> Job:
        return heapq.heappop(self._heap)[1]

    def pop_many(self, count: int) -> list[Job]:
        return [heapq.heappop(self._heap)[1] for _ in range(min(count, len(self._heap)))]

    def peek(self) -> Job:
        return self._heap[0][1]

    def head_key(self) -> tuple[float, ...]:
        return self._heap[0][0]

    @property
    def oldest_enqueued(self) -> float:
        if not self._heap:
            return math.inf
        if isinstance(self.discipline, Fifo):
            return self._heap[0][1].enqueued
        return min(job.enqueued for _, job in self._heap)

    @property
    def earliest_deadline(self) -> float:
        if not self._heap:
            return math.inf
        if isinstance(self.discipline, EarliestDeadlineFirst):
            return self._heap[0][1].deadline
        return min(job.deadline for _, job in self._heap)
