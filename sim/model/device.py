"""A device instance in simulated time: servers around a ``Station``.

A host CPU or a DPU has cores, a GPU has execution streams; each is a
server. What waits, in which order, and which batch goes next is decided
by the device's ``sim.station.Station``, the same object the hardware
harness's workers use. This adapter only supplies simulated time: whenever
a server is free it asks the station for a batch; when the station says
"not before t" it sets one SimPy timer for the earliest such time. There
are no per-job processes: arrivals and completions call ``_dispatch``
directly, so a batch costs one SimPy timeout.

Busy time, batch counts and the time-integral of queue length are
accumulated inside the measurement window as the run goes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import simpy

from sim.costs import Sampler
from sim.model.request import Job
from sim.station import Launch, Station


@dataclass(frozen=True)
class Window:
    """The measurement window: warm-up end to the end of arrivals."""

    start: float
    end: float

    def overlap(self, a: float, b: float) -> float:
        return max(0.0, min(b, self.end) - max(a, self.start))


@dataclass
class StageService:
    """How one stage is served on this device: its service-time draws and batch counts."""

    sampler: Sampler
    batches: int = 0
    batched_jobs: int = 0


class DeviceInstance:
    """One device of a pool (satisfies ``InstanceView`` through ``Candidate``)."""

    def __init__(self, env: simpy.Environment, uid: int, name: str, pool: str, servers: int, window: Window,
                 station: Station, services: dict[int, StageService], batch_ids: list[int]):
        self.env = env
        self.uid = uid
        self.name = name
        self.pool = pool
        self.servers = servers
        self.window = window
        self.station = station
        self.services = services
        self.free = servers
        self.busy_time = 0.0
        self.queue_area = 0.0
        self._queue_changed = 0.0
        self._wake_at = math.inf
        self._batch_ids = batch_ids  # one counter shared by every device of the run

    @property
    def waiting(self) -> int:
        return self.station.waiting

    @property
    def busy(self) -> int:
        return self.servers - self.free

    def offer(self, job: Job) -> bool:
        """Admission and queueing at the current time; False if the job is refused."""
        now = self.env.now
        if not self.station.offer(job, now):
            return False
        self._account(now, self.station.waiting - 1)
        if self.free:
            self._dispatch()
        return True

    def account(self) -> None:
        """Bring the queue-length integral up to now (before reading ``queue_area``)."""
        self._account(self.env.now, self.station.waiting)

    def _account(self, now: float, waiting: int) -> None:
        """Add ``waiting`` jobs' time since the last change to the queue integral."""
        if waiting:
            self.queue_area += waiting * self.window.overlap(self._queue_changed, now)
        self._queue_changed = now

    def _dispatch(self, _event=None) -> None:
        env = self.env
        now = env.now
        if _event is not None and now >= self._wake_at:
            self._wake_at = math.inf
        station = self.station
        while self.free and station.waiting:
            decision = station.next_batch(now)
            if not isinstance(decision, Launch):
                if decision < self._wake_at:
                    self._wake_at = decision
                    env.timeout(_delay_until(now, decision)).callbacks.append(self._dispatch)
                return
            self._launch(now, decision)

    def _launch(self, now: float, launch: Launch) -> None:
        jobs = launch.jobs
        self._account(now, self.station.waiting + len(jobs))  # up to now, the batch was still waiting
        self.free -= 1
        service = self.services[launch.stage]
        duration = service.sampler.sample(len(jobs))
        window = self.window
        if now < window.end and now + duration > window.start:
            self.busy_time += min(now + duration, window.end) - max(now, window.start)
            if now >= window.start:
                service.batches += 1
                service.batched_jobs += len(jobs)
        self._batch_ids[0] += 1
        batch = self._batch_ids[0]
        stage, uid = launch.stage, self.uid
        for job in jobs:
            request = job.request
            request.start[stage] = now
            request.instance[stage] = uid
            request.batch[stage] = batch
        self.env.timeout(duration).callbacks.append(_Finish(self, jobs))

    def _finish(self, jobs: list[Job]) -> None:
        self.free += 1
        now = self.env.now
        for job in jobs:
            job.request.end[job.stage] = now
            job.on_done(job)
        if self.station.waiting:
            self._dispatch()


def _delay_until(now: float, when: float) -> float:
    """A delay that brings SimPy's clock (``now + delay``) to ``when`` or just past it, never short.

    ``now + (when - now)`` can round below ``when``; a timer that fired a hair
    early would find the batcher still waiting and set no new timer.
    """
    delay = max(0.0, when - now)
    while now + delay < when:
        delay = math.nextafter(delay, math.inf)
    return delay


@dataclass(slots=True)
class _Finish:
    device: DeviceInstance
    jobs: list

    def __call__(self, _event) -> None:
        self.device._finish(self.jobs)


@dataclass(slots=True)
class Candidate:
    """A device instance as a routing candidate for one stage (``InstanceView``)."""

    device: DeviceInstance
    tier: int

    @property
    def queue_length(self) -> int:
        return self.device.station.waiting

    @property
    def busy(self) -> int:
        return self.device.servers - self.device.free

    @property
    def servers(self) -> int:
        return self.device.servers
