"""When to launch a batch, and how many jobs it takes.

A batcher looks at the jobs waiting for one stage on one device and answers
either ``Dispatch(n)``: start a batch of the first ``n`` now, or
``WaitUntil(t)``: nothing to start; ask again at time ``t`` or when another
job arrives, whichever comes first.

- ``NoBatching``: every job alone, at once.
- ``FixedBatch``: wait for exactly ``size`` jobs (flushing a partial batch
  after ``timeout``, if given).
- ``DynamicBatch``: Triton's dynamic batcher: launch when ``max_batch`` jobs
  wait or the oldest has waited ``max_delay``.
- ``DeadlineAwareBatch``: a dynamic batcher that launches early when waiting
  longer would make the most urgent job miss its deadline, given an
  estimate of the batch's service time.

``BATCHING`` maps each scenario kind (``none``, ``fixed``, ``dynamic``,
``deadline``) to the factory that builds its batcher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Union

from sim.registry import Registry


@dataclass(frozen=True)
class Dispatch:
    count: int


@dataclass(frozen=True)
class WaitUntil:
    time: float


Decision = Union[Dispatch, WaitUntil]


class BatchQueueView(Protocol):
    def __len__(self) -> int: ...

    @property
    def oldest_enqueued(self) -> float: ...

    @property
    def earliest_deadline(self) -> float: ...


class BatchingPolicy(Protocol):
    max_batch: int

    def decide(self, now: float, queue: BatchQueueView) -> Decision:
        """Called only when ``len(queue) > 0`` and a server is free."""


_NOW = Dispatch(1)
_DISPATCH = tuple(Dispatch(n) for n in range(257))  # decisions are values: made once, not per call


def _dispatch(count: int) -> Dispatch:
    return _DISPATCH[count] if count < len(_DISPATCH) else Dispatch(count)


@dataclass(frozen=True)
class NoBatching:
    max_batch: int = 1

    def decide(self, now: float, queue: BatchQueueView) -> Decision:
        return _NOW


@dataclass(frozen=True)
class FixedBatch:
    size: int
    timeout: float = math.inf

    @property
    def max_batch(self) -> int:
        return self.size

    def decide(self, now: float, queue: BatchQueueView) -> Decision:
        waiting = len(queue)
        if waiting >= self.size:
            return _dispatch(self.size)
        flush_at = queue.oldest_enqueued + self.timeout
        return _dispatch(waiting) if now >= flush_at else WaitUntil(flush_at)


@dataclass(frozen=True)
class DynamicBatch:
    max_batch: int
    max_delay: float

    def decide(self, now: float, queue: BatchQueueView) -> Decision:
        waiting = len(queue)
        if waiting >= self.max_batch:
            return _dispatch(self.max_batch)
        launch_at = queue.oldest_enqueued + self.max_delay
        return _dispatch(waiting) if now >= launch_at else WaitUntil(launch_at)


@dataclass(frozen=True)
class DeadlineAwareBatch:
    """Dynamic batching that never waits past the point where a deadline breaks.

    ``service_time(n)`` estimates how long a batch of ``n`` takes from launch
    to the request's reply (this stage and what follows it); the batcher
    launches as soon as ``now + service_time(n + 1)`` would pass the earliest
    deadline in the queue, because waiting for one more job could not help.
    """

    max_batch: int
    max_delay: float
    service_time: Callable[[int], float]

    def decide(self, now: float, queue: BatchQueueView) -> Decision:
        waiting = len(queue)
        if waiting >= self.max_batch:
            return _dispatch(self.max_batch)
        latest_start = queue.earliest_deadline - self.service_time(waiting + 1)
        launch_at = min(queue.oldest_enqueued + self.max_delay, latest_start)
        return _dispatch(waiting) if now >= launch_at else WaitUntil(launch_at)


class BatchingSettings(Protocol):
    """The scenario's batching section for one stage (``sim.scenario.schema.BatchingSpec``)."""

    kind: str
    max_batch: int
    max_delay: float
    timeout: Optional[float]


ServiceTime = Callable[[int], float]
"""``service_time(n)``: estimated time from launching a batch of ``n`` to the request's reply."""

BATCHING: Registry[Callable[[BatchingSettings, ServiceTime], BatchingPolicy]] = Registry("batching policy")


@BATCHING.register("none")
def _no_batching(spec: BatchingSettings, service_time: ServiceTime) -> BatchingPolicy:
    return NoBatching()


@BATCHING.register("fixed")
def _fixed(spec: BatchingSettings, service_time: ServiceTime) -> BatchingPolicy:
    return FixedBatch(spec.max_batch, spec.timeout if spec.timeout is not None else math.inf)


@BATCHING.register("dynamic")
def _dynamic(spec: BatchingSettings, service_time: ServiceTime) -> BatchingPolicy:
    return DynamicBatch(spec.max_batch, spec.max_delay)


@BATCHING.register("deadline")
def _deadline(spec: BatchingSettings, service_time: ServiceTime) -> BatchingPolicy:
    return DeadlineAwareBatch(spec.max_batch, spec.max_delay, service_time)
