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

A device can fail (``fail``): it stops asking its station, hands back the
jobs in service (their batches are cancelled, busy time after the failure
is not counted) and the waiting ones (``Station.drain``), and takes no
work until ``recover``. Only a device built with ``track=True`` keeps the
list of batches in service, so a run without failures does no extra work.

A request that has already ended (its client gave up) is still served if
its job was waiting, but its row is final: the batch's times are not written
into it, so a row kept in memory says what a row streamed when the request
ended says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

from simpy.events import NORMAL

from sim.costs import Sampler
from sim.model.engine import Engine
from sim.model.request import BATCH, BATCH_SIZE, END, FIELDS, INSTANCE, START, Job, Outcome
from sim.station import Launch, Station

_PENDING = Outcome.PENDING


@dataclass(frozen=True)
class Window:
    """The measurement window: warm-up end to the end of arrivals."""

    start: float
    end: float

    def overlap(self, a: float, b: float) -> float:
        """How much of [a, b] lies in the window (``max(0, min(b, end) - max(a, start))``, without calls)."""
        lo = a if a > self.start else self.start
        hi = b if b < self.end else self.end
        return hi - lo if hi > lo else 0.0


@dataclass
class StageService:
    """How one stage is served on this device: its service-time draws and batch counts."""

    sampler: Sampler
    batches: int = 0
    batched_jobs: int = 0
    cost_of: Optional[Callable[[list], float]] = None  # a batch's duration from its jobs (host copies), not drawn


class DeviceInstance:
    """One device of a pool (satisfies ``InstanceView`` through ``Candidate``)."""

    node = ""  # the node and site it belongs to, when the scenario has a topology (sim.topology)
    site = ""

    def __init__(self, env: Engine, uid: int, name: str, pool: str, servers: int, window: Window,
                 station: Station, services: dict[int, StageService], batch_ids: Iterator[int],
                 columns: Optional[Sequence[int]] = None, track: bool = False):
        self.env = env
        self.uid = uid
        self.name = name
        self.pool = pool
        self.servers = servers
        self.window = window
        self._start, self._end = window.start, window.end
        self.station = station
        # every station stage's service (fallbacks included), by stage index: a list, read once per batch
        self._services: list[Optional[StageService]] = [services.get(i) for i in range(max(services, default=-1) + 1)]
        # the plan's own stages (what the usage reports); a fallback's stage records as another column
        self.services = services if columns is None else {i: v for i, v in services.items() if columns[i] == i}
        self.free = servers
        self.busy_time = 0.0
        self.queue_area = 0.0
        self._queue_changed = 0.0
        self._wake_at = math.inf
        self._batch_ids = batch_ids  # one counter shared by every device of the run
        self._push_timer, self._timer_ids = env.push_timer, env.timer_ids
        self._columns = columns  # station stage -> the request's stage column (a fallback records as its stage)
        self.healthy = True
        self.on_load: Optional[Callable[["DeviceInstance"], None]] = None  # told when waiting + busy changes
        self._running: Optional[dict[_TrackedFinish, None]] = None
        # the callback every batch's completion timer holds: bound once, not one method object per batch
        self._batch_done = self._finish_in
        if track:  # the device may fail: batches in service are kept, to cancel
            self._running = {}

    @property
    def waiting(self) -> int:
        return self.station.waiting

    @property
    def busy(self) -> int:
        return self.servers - self.free

    def watch(self, on_load: Callable[["DeviceInstance"], None]) -> None:
        """Call ``on_load(self)`` whenever the jobs on the device (waiting plus in service) may have changed."""
        self.on_load = on_load

    def offer(self, job: Job) -> bool:
        """Admission and queueing at the current time; False if the job is refused."""
        now = self.env.now
        station = self.station
        if self.free and station.take_alone(job, now):  # (what offer and next_batch would do, in one call)
            self._queue_changed = now  # nothing was waiting: the queue integral gains nothing
            self._launch(now, job.stage, [job])
            if self.on_load is not None:
                self.on_load(self)
            return True
        if not station.offer(job, now):
            return False
        waiting = station.waiting - 1  # up to now, the queue was one shorter
        if waiting:
            since, start, end = self._queue_changed, self._start, self._end
            lo = since if since > start else start
            hi = now if now < end else end
            if hi > lo:
                self.queue_area += waiting * (hi - lo)
        self._queue_changed = now
        if self.free:
            self._dispatch()
        if self.on_load is not None:
            self.on_load(self)
        return True

    def account(self) -> None:
        """Bring the queue-length integral up to now (before reading ``queue_area``)."""
        self._account(self.env.now, self.station.waiting)

    def _account(self, now: float, waiting: int) -> None:
        """Add ``waiting`` jobs' time since the last change to the queue integral."""
        if waiting:
            self.queue_area += waiting * self.window.overlap(self._queue_changed, now)
        self._queue_changed = now

    def _dispatch(self, woken: bool = False) -> None:
        """Start batches while a server is free and the station has one to start (``woken``: by the
        timer of a batcher's "not before t")."""
        env = self.env
        now = env.now
        if woken and now >= self._wake_at:
            self._wake_at = math.inf
        station = self.station
        while self.free and station.waiting:
            decision = station.next_batch(now)
            if decision.__class__ is not Launch:
                if decision < self._wake_at:
                    self._wake_at = decision
                    env.call_after(_delay_until(now, decision), self._dispatch, True)
                break
            self._launch(now, decision.stage, decision.jobs)
        if woken and self.on_load is not None:
            self.on_load(self)

    def _launch(self, now: float, stage: int, jobs: list) -> None:
        """Start a batch: its duration (drawn, or for copy jobs their cost), its accounting, its requests'
        stamps (a fallback stage records in its stage's columns), its completion timer (kept, to cancel,
        on a device that may fail)."""
        size = len(jobs)
        start, end = self._start, self._end
        # the queue integral up to now, while the batch was still waiting (Window.overlap, inlined)
        since = self._queue_changed
        lo = since if since > start else start
        hi = now if now < end else end
        if hi > lo:
            self.queue_area += (self.station.waiting + size) * (hi - lo)
        self._queue_changed = now
        self.free -= 1
        service = self._services[stage]
        duration = service.sampler.sample(size) if service.cost_of is None else service.cost_of(jobs)
        finish = now + duration
        if now < end and finish > start:
            self.busy_time += (finish if finish < end else end) - (now if now > start else start)
            if now >= start:
                service.batches += 1
                service.batched_jobs += size
        batch = next(self._batch_ids)
        uid = self.uid
        if self._columns is not None:
            stage = self._columns[stage]
        at = stage * FIELDS  # the stage's fields in each request's per-stage numbers
        for job in jobs:
            request = job.request
            if request.outcome is _PENDING:  # an ended request's row is final (a client that gave up)
                request.reals[at + START] = now
                ints = request.ints
                ints[at + INSTANCE] = uid
                ints[at + BATCH] = batch
                ints[at + BATCH_SIZE] = size
        if self._running is None:  # (env.call_after(duration, self._finish_in, stage, jobs), without its call)
            self._push_timer((finish, NORMAL, next(self._timer_ids), self._batch_done, (stage, jobs)))
            return
        tracked = _TrackedFinish(self, jobs, finish, stage)
        self._running[tracked] = None
        self.env.call_after(duration, self._finish_tracked, tracked)

    def _finish_in(self, stage: int, jobs: list) -> None:
        """A batch has ended: its server is free, its jobs' requests record the end in column ``stage``."""
        self.free += 1
        if self.on_load is not None:
            self.on_load(self)
        now = self.env.now
        end = stage * FIELDS + END
        for job in jobs:
            request = job.request
            if request.outcome is _PENDING:
                request.reals[end] = now
            job.on_done(job)
        if self.station.waiting and self.free:
            self._dispatch()
            if self.on_load is not None:
                self.on_load(self)

    def _finish_tracked(self, finish: "_TrackedFinish") -> None:
        if finish.cancelled:
            return
        del self._running[finish]
        self._finish_in(finish.column, finish.jobs)

    # --- failure ----------------------------------------------------------

    def fail(self) -> tuple[list[Job], list[Job]]:
        """The device goes down now: (jobs in service, jobs waiting), both taken off it."""
        now = self.env.now
        self.account()
        self.healthy = False
        running: list[Job] = []
        for finish in self._running or ():
            finish.cancelled = True
            self.busy_time -= self.window.overlap(now, finish.end)  # counted at launch up to its end
            running.extend(finish.jobs)
        if self._running:
            self._running.clear()
        waiting = self.station.drain()
        self.free = self.servers
        if self.on_load is not None:
            self.on_load(self)
        return running, waiting

    def recover(self) -> None:
        """The device is back, empty and idle."""
        self.healthy = True
        self._wake_at = math.inf
        self._queue_changed = self.env.now
        if self.on_load is not None:
            self.on_load(self)


def _delay_until(now: float, when: float) -> float:
    """A delay that brings SimPy's clock (``now + delay``) to ``when`` or just past it, never short.

    ``now + (when - now)`` can round below ``when``; a timer that fired a hair
    early would find the batcher still waiting and set no new timer.
    """
    delay = max(0.0, when - now)
    while now + delay < when:
        delay = math.nextafter(delay, math.inf)
    return delay


@dataclass(slots=True, eq=False)
class _TrackedFinish:
    """A batch in service on a device that may fail: cancelled if it does."""

    device: DeviceInstance
    jobs: list
    end: float
    column: int  # the request column its stage records in
    cancelled: bool = False


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

    @property
    def healthy(self) -> bool:
        return self.device.healthy
