"""A device instance: servers fed by per-stage queues and batchers.

A host CPU or a DPU has cores, a GPU has execution streams; each is a
server. Every stage placed on the device has its own queue (ordered by the
queue discipline) and its own batcher. Whenever a server is free, the
device looks at its stage queues in discipline order of their heads and
launches the first batch a batcher allows; if every batcher says wait, it
sets a timer for the earliest time one wants to be asked again. There are
no per-job processes: arrivals and completions call ``_dispatch`` directly,
so a batch costs one SimPy timeout.

Busy time, batch sizes and the time-integral of queue length are
accumulated inside the measurement window as the run goes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import simpy

from sim.costs import Sampler
from sim.model.request import Job
from sim.policies.batching import BatchingPolicy, Dispatch
from sim.policies.queueing import PolicyQueue, QueueDiscipline


@dataclass(frozen=True)
class Window:
    """The measurement window: warm-up end to the end of arrivals."""

    start: float
    end: float

    def overlap(self, a: float, b: float) -> float:
        return max(0.0, min(b, self.end) - max(a, self.start))


@dataclass
class StageQueue:
    stage: int
    queue: PolicyQueue
    batcher: BatchingPolicy
    sampler: Sampler
    batches: int = 0
    batched_jobs: int = 0


class DeviceInstance:
    """One device of a pool (satisfies ``InstanceView`` through ``Candidate``)."""

    def __init__(self, env: simpy.Environment, uid: int, name: str, pool: str, servers: int, window: Window):
        self.env = env
        self.uid = uid
        self.name = name
        self.pool = pool
        self.servers = servers
        self.window = window
        self.free = servers
        self.waiting = 0
        self.stage_queues: dict[int, StageQueue] = {}
        self.busy_time = 0.0
        self.queue_area = 0.0
        self._queue_changed = 0.0
        self._wake_at = math.inf
        self._seq = 0

    @property
    def busy(self) -> int:
        return self.servers - self.free

    def add_stage(self, stage: int, discipline: QueueDiscipline, batcher: BatchingPolicy, sampler: Sampler) -> None:
        self.stage_queues[stage] = StageQueue(stage, PolicyQueue(discipline), batcher, sampler)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def submit(self, job: Job) -> None:
        self._account_queue()
        self.waiting += 1
        self.stage_queues[job.stage].queue.push(job)
        if self.free:
            self._dispatch()

    def expected_wait(self, stage: int) -> float:
        sq = self.stage_queues[stage]
        return self.waiting / self.servers * sq.sampler.mean(1)

    def _account_queue(self) -> None:
        now = self.env.now
        if self.waiting:
            self.queue_area += self.waiting * self.window.overlap(self._queue_changed, now)
        self._queue_changed = now

    def _dispatch(self, _event=None) -> None:
        env = self.env
        now = env.now
        if _event is not None and now >= self._wake_at:
            self._wake_at = math.inf
        queues = list(self.stage_queues.values())
        while self.free and self.waiting:
            ready = [sq for sq in queues if sq.queue] if len(queues) > 1 else queues
            if len(ready) > 1:
                ready.sort(key=lambda sq: sq.queue.head_key())
            chosen, count, wake = None, 0, math.inf
            for sq in ready:
                decision = sq.batcher.decide(now, sq.queue)
                if isinstance(decision, Dispatch):
                    chosen, count = sq, decision.count
                    break
                wake = min(wake, decision.time)
            if chosen is None:
                if wake < self._wake_at:
                    self._wake_at = wake
                    env.timeout(max(0.0, wake - now)).callbacks.append(self._dispatch)
                return
            self._account_queue()
            jobs = chosen.queue.pop_many(count)
            self.waiting -= len(jobs)
            self.free -= 1
            service = chosen.sampler.sample(len(jobs))
            window = self.window
            if now < window.end and now + service > window.start:
                self.busy_time += min(now + service, window.end) - max(now, window.start)
                if now >= window.start:
                    chosen.batches += 1
                    chosen.batched_jobs += len(jobs)
            for job in jobs:
                job.request.start[job.stage] = now
                job.request.instance[job.stage] = self.uid
            env.timeout(service).callbacks.append(_Finish(self, jobs))

    def _finish(self, jobs: list[Job]) -> None:
        self.free += 1
        now = self.env.now
        for job in jobs:
            job.request.end[job.stage] = now
            job.on_done(job)
        if self.waiting:
            self._dispatch()


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
        return self.device.waiting

    @property
    def busy(self) -> int:
        return self.device.servers - self.device.free

    @property
    def servers(self) -> int:
        return self.device.servers
