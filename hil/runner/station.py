"""One worker process as a server: per-stage queues, batchers and admission.

This is ``sim.model.device.DeviceInstance`` in real time. Every stage the
process runs has a ``PolicyQueue`` ordered by the scenario's queue
discipline and the scenario's batching policy; when the process is free it
looks at its stage queues in discipline order of their heads and launches
the first batch a batcher allows, or learns when to ask again. A job that
reaches a queue first passes the admission policy. All these objects are
built by ``sim.policies.build`` from the scenario, exactly as the simulator
builds them, so a decision means the same in both worlds.

Policies need estimates the simulator takes from its cost models
(service time of a batch, expected wait, remaining service). Here each
estimate is the scenario's cost model scaled by the ratio measured/modelled
of that stage in this run (a moving average), so a deadline-aware batcher
plans with this machine's real speed. Stages of the other process keep
their model estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hil.runner.layout import Layout, StageRun
from sim.policies import build
from sim.policies.batching import Dispatch
from sim.policies.queueing import PolicyQueue


@dataclass(slots=True, eq=False)
class Job:
    """A request waiting at one stage of this process (satisfies ``sim.policies.views.JobView``)."""

    id: int
    stage: int
    deadline: float
    priority: int
    data: np.ndarray
    enqueued: float = 0.0
    seq: int = 0


class Estimates:
    """Service-time estimates per stage: cost model x measured/model ratio (EWMA)."""

    def __init__(self, stages: tuple[StageRun, ...]):
        self.stages = stages
        self.ratio = [1.0] * len(stages)

    def service(self, stage: int, batch: int) -> float:
        return self.stages[stage].model_mean(batch) * self.ratio[stage]

    def remaining(self, stage: int) -> float:
        """From the start of ``stage`` to the end of the pipeline, one request."""
        return sum(self.service(s, 1) for s in range(stage, len(self.stages)))

    def observe(self, stage: int, batch: int, seconds: float) -> None:
        model = self.stages[stage].model_mean(batch)
        if model > 0:
            self.ratio[stage] += 0.1 * (seconds / model - self.ratio[stage])


@dataclass(frozen=True)
class Policies:
    """The scenario's policy objects as one process uses them."""

    discipline: Any
    batchers: dict[int, Any]
    admission: Any
    channel: Any


def build_policies(layout: Layout, side: str, estimates: Estimates) -> Policies:
    """The policy objects of ``side``, built by ``sim.policies.build`` as the simulator builds them."""
    spec = layout.scenario.policies
    batchers = {
        s.index: build.batching_policy(s.batching, lambda n, i=s.index: estimates.service(i, n) + estimates.remaining(i + 1))
        for s in layout.side_stages(side)
    }
    return Policies(build.queue_discipline(spec.queue), batchers, build.admission_policy(spec.admission),
                    build.channel_policy(spec.channel))


class Station:
    """The stage queues of one process and the decision of what to run next."""

    def __init__(self, stages: list[StageRun], policies: Policies, estimates: Estimates):
        self.queues = {s.index: PolicyQueue(policies.discipline) for s in stages}
        self.policies = policies
        self.estimates = estimates
        self.waiting = 0
        self._seq = 0

    def offer(self, job: Job, now: float) -> bool:
        """Queue ``job`` if the admission policy lets it in (``job.enqueued`` set by the caller)."""
        expected_wait = self.waiting * self.estimates.service(job.stage, 1)
        if not self.policies.admission.admit(now, job, self.waiting, expected_wait,
                                             self.estimates.remaining(job.stage)):
            return False
        self._seq += 1
        job.seq = self._seq
        self.queues[job.stage].push(job)
        self.waiting += 1
        return True

    def next_batch(self, now: float) -> tuple[int, list[Job]] | float:
        """``(stage, jobs)`` to run now, or the time to ask again (inf: when a job arrives)."""
        ready = sorted((q.head_key(), i) for i, q in self.queues.items() if q)
        wake = math.inf
        for _, i in ready:
            decision = self.policies.batchers[i].decide(now, self.queues[i])
            if isinstance(decision, Dispatch):
                jobs = self.queues[i].pop_many(decision.count)
                self.waiting -= len(jobs)
                return i, jobs
            wake = min(wake, decision.time)
        return wake

    def depths(self) -> dict[int, int]:
        return {i: len(q) for i, q in self.queues.items()}
