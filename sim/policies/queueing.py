"""Queue disciplines, and the queue that keeps their order.

A discipline is a sort key: FIFO serves in order of arrival, priority serves
the highest class first (FIFO within a class), EDF serves the earliest
deadline first. ``PolicyQueue`` is a binary heap on that key, the same
structure the simulator's devices and the harness's batchers use, so the
two worlds serve jobs in the same order. A station pushes jobs in order
of arrival, so for FIFO it keeps a plain deque (``ArrivalOrderQueue``). ``DISCIPLINES`` maps each scenario
kind (``fifo``, ``priority``, ``edf``) to its discipline.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass
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


class PolicyQueue(Generic[Job]):
    """Waiting jobs in the order a discipline dictates.

    ``oldest_enqueued`` and ``earliest_deadline`` let batchers decide without
    scanning; they are exact and cheap for FIFO and EDF and a linear scan
    otherwise.
    """

    def __init__(self, discipline: QueueDiscipline):
        self.discipline = discipline
        self._heap: list[tuple[tuple[float, ...], Job]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, job: Job) -> None:
        heapq.heappush(self._heap, (self.discipline.key(job), job))

    def pop(self) -> Job:
        return heapq.heappop(self._heap)[1]

    def pop_many(self, count: int) -> list[Job]:
        heap = self._heap
        if count == 1 and heap:
            return [heapq.heappop(heap)[1]]
        return [heapq.heappop(heap)[1] for _ in range(min(count, len(heap)))]

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


class ArrivalOrderQueue(deque, PolicyQueue[Job]):
    """FIFO for a caller that pushes jobs in ``seq`` order (a ``sim.station.Station`` does): a deque,
    no heap and no key per job; the same order as ``PolicyQueue(Fifo())`` for such a caller."""

    push = deque.append
    pop = deque.popleft

    def __init__(self, discipline: QueueDiscipline = Fifo()):
        deque.__init__(self)
        self.discipline = discipline

    def pop_many(self, count: int) -> list[Job]:
        if count == 1 and self:
            return [self.popleft()]
        popleft = self.popleft
        return [popleft() for _ in range(min(count, len(self)))]

    def peek(self) -> Job:
        return self[0]

    def head_key(self) -> tuple[float, ...]:
        return (self[0].seq,)

    @property
    def oldest_enqueued(self) -> float:
        return self[0].enqueued if self else math.inf

    @property
    def earliest_deadline(self) -> float:
        return min((job.deadline for job in self), default=math.inf)

    __hash__ = object.__hash__  # a queue is an object, not a value
    __eq__ = object.__eq__


def queue_for(discipline: QueueDiscipline) -> PolicyQueue:
    """The queue a station keeps per stage: jobs arrive in ``seq`` order, so FIFO needs no heap."""
    return ArrivalOrderQueue(discipline) if type(discipline) is Fifo else PolicyQueue(discipline)
