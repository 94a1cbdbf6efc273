"""A device's waiting room: the one place that decides admission and the next batch.

Every device instance in the simulator (a DPU's Arm cores, a GPU's
streams, a host CPU's cores) and every worker process in the hardware
harness holds one ``Station``. It owns the device's per-stage queues
(ordered by the queue discipline), one batcher per stage and the admission
policy, and it answers the only two questions that decide what a device
does with its work:

- ``offer(job, now)``: may this job join its stage's queue? (admission);
- ``next_batch(now)``: a server is free: which stage's batch runs now, and
  which jobs, or until when is there nothing to start?

The station has no clock and no servers of its own: the caller says what
time it is and asks only when a server is free. The simulator's device
calls it from SimPy callbacks and sets a timer for the returned wake-up
time; the harness's worker calls it from its real-time loop and sleeps
until then. So a policy decision means the same thing in both worlds by
construction, not by keeping two copies in step.

How long things take is not the station's business either: an
``Estimates`` object says what one batch of a stage costs on this device
and how long the rest of the pipeline takes. The simulator's come from the
scenario's cost models; the harness's are those models scaled by what it
measures. The batchers and admission plan with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Generic, Mapping, Protocol, Sequence, TypeVar, Union

from sim.policies.admission import AdmissionPolicy, AdmitAll
from sim.policies.batching import BATCHING, BatchingPolicy, BatchingSettings, Dispatch, NoBatching
from sim.policies.queueing import ArrivalOrderQueue, PolicyQueue, QueueDiscipline, queue_for


class StationJob(Protocol):
    """A job as the station handles it: a ``JobView`` whose queue fields the station sets."""

    stage: int
    seq: int
    enqueued: float
    deadline: float
    priority: int


Job = TypeVar("Job", bound=StationJob)


class Estimates(Protocol):
    """Service-time estimates of one device, in seconds."""

    def service(self, stage: int, batch: int) -> float:
        """Mean time a batch of ``batch`` jobs of ``stage`` takes on this device."""

    def remaining(self, stage: int) -> float:
        """From the start of ``stage`` to the reply, one request."""

    def after(self, stage: int) -> float:
        """From the end of ``stage`` to the reply, one request."""


@dataclass(slots=True)
class Launch(Generic[Job]):
    """Start these jobs of ``stage`` as one batch, now."""

    stage: int
    jobs: list


Decision = Union[Launch, float]
"""``next_batch``'s answer: a ``Launch``, or the time to ask again (inf: when a job arrives)."""


class Station(Generic[Job]):
    """The queues, batchers and admission of one device (satisfies ``QueueStateView``).

    ``stages``: the stage indices the device serves, each with its batching
    settings; ``servers``: how many jobs' batches can run at once (for the
    expected-wait estimate only).
    """

    def __init__(
        self,
        stages: Mapping[int, BatchingSettings],
        discipline: QueueDiscipline,
        admission: AdmissionPolicy,
        estimates: Estimates,
        servers: int = 1,
    ):
        self.discipline = discipline
        self.admission = admission
        self.estimates = estimates
        self.servers = servers
        self.queues: dict[int, PolicyQueue] = {}
        self.batchers: dict[int, BatchingPolicy] = {}
        for stage in sorted(stages):
            self.queues[stage] = queue_for(discipline)
            self.batchers[stage] = BATCHING[stages[stage].kind](stages[stage], self._service_time(stage))
        self._order: list[tuple[PolicyQueue, BatchingPolicy, int]] = [
            (self.queues[s], self.batchers[s], s) for s in self.queues
        ]
        self._only = self._order[0] if len(self._order) == 1 else None  # one stage: its queue holds every job
        self._entry_of = {entry[2]: entry for entry in self._order}
        self._last_stage = -1  # the stage of the job offered last: with one job waiting, usually where it is
        self._in_arrival_order = all(isinstance(queue, ArrivalOrderQueue) for queue in self.queues.values())
        self._push = {stage: queue.push for stage, queue in self.queues.items()}
        self.waiting = 0
        self._seq = 0
        self._admission_decides = not isinstance(admission, AdmitAll)  # no call per job when all are admitted
        # stages whose job, offered to an empty station, is the next batch on its own (see ``take_alone``)
        self._alone = frozenset() if self._admission_decides else frozenset(
            stage for stage, batcher in self.batchers.items() if batcher.__class__ is NoBatching)

    def _service_time(self, stage: int):
        estimates = self.estimates
        return lambda n: estimates.service(stage, n) + estimates.after(stage)

    # --- admission --------------------------------------------------------

    def offer(self, job: Job, now: float) -> bool:
        """Queue ``job`` at its stage if admission lets it in; stamps ``enqueued`` and ``seq``."""
        job.enqueued = now
        if self._admission_decides and not self.admission.admit(now, job, self):
            return False
        self._seq = seq = self._seq + 1
        job.seq = seq
        self._push[job.stage](job)
        self._last_stage = job.stage
        self.waiting += 1
        return True

    def take_alone(self, job: Job, now: float) -> bool:
        """Call when a server is free: whether ``job`` starts now, alone, without passing through a queue.

        True where nothing waits, every job is admitted and ``job``'s stage does not batch: then ``offer``
        followed by ``next_batch`` would queue it and launch it at once as a batch of one. It is stamped
        as ``offer`` stamps it and the caller launches it. False: nothing was done; ``offer`` it.
        """
        if self.waiting or job.stage not in self._alone:
            return False
        job.enqueued = now
        self._seq = seq = self._seq + 1
        job.seq = seq
        self._last_stage = job.stage
        return True

    def queue_length(self, stage: int) -> int:
        return len(self.queues[stage])

    def expected_wait(self, stage: int) -> float:
        return self.waiting / self.servers * self.estimates.service(stage, 1)

    def remaining_service(self, stage: int) -> float:
        return self.estimates.remaining(stage)

    # --- dispatch ---------------------------------------------------------

    def next_batch(self, now: float) -> Decision:
        """Call when a server is free: what to launch now, or when to ask again.

        Stage queues are considered in discipline order of their heads; the
        first whose batcher says go is launched.
        """
        if not self.waiting:
            return math.inf
        order = self._order
        first = self._only
        if first is None and self.waiting == 1:  # the one job waiting is the head, in any discipline
            entry = self._entry_of.get(self._last_stage)
            if entry is not None and entry[0]:
                first = entry
        if first is None:
            # the stage whose head comes first; usually its batcher says go, and no sort is needed
            if self._in_arrival_order:  # FIFO queues: a head's key is its seq alone (no tuple per queue)
                head = math.inf
                for entry in order:
                    queue = entry[0]
                    if queue and queue[0].seq < head:
                        head = queue[0].seq
                        first = entry
            else:
                for entry in order:
                    if entry[0] and (first is None or entry[0].head_key() < first[0].head_key()):
                        first = entry
        queue, batcher, stage = first
        if batcher.__class__ is NoBatching:  # (what it decides: the head, alone)
            self.waiting -= 1
            return Launch(stage, [queue.pop()])
        decision = batcher.decide(now, queue)
        if isinstance(decision, Dispatch):
            jobs = queue.pop_many(decision.count)
            self.waiting -= len(jobs)
            return Launch(stage, jobs)
        wake = decision.time
        if self._only is not None:
            return wake
        ready = [entry for entry in order if entry[0] and entry is not first]
        ready.sort(key=_head_key)
        for queue, batcher, stage in ready:
            decision = batcher.decide(now, queue)
            if isinstance(decision, Dispatch):
                jobs = queue.pop_many(decision.count)
                self.waiting -= len(jobs)
                return Launch(stage, jobs)
            if decision.time < wake:
                wake = decision.time
        return wake

    def drain(self) -> list:
        """Take every waiting job out (the device failed); per stage, in queue order."""
        jobs = [job for queue in self.queues.values() for job in queue.pop_many(len(queue))]
        self.waiting = 0
        return jobs

    def depths(self) -> dict[int, int]:
        """Jobs waiting per stage."""
        return {stage: len(queue) for stage, queue in self.queues.items()}


def _head_key(entry: tuple[PolicyQueue, Any, int]) -> tuple[float, ...]:
    return entry[0].head_key()


@dataclass(frozen=True)
class ModelEstimates:
    """Estimates straight from cost models: ``means[stage](n)`` and per-stage path times."""

    means: Mapping[int, Any]  # stage -> callable(batch) -> mean seconds on this device
    remaining_by_stage: Sequence[float]
    after_by_stage: Sequence[float]

    def service(self, stage: int, batch: int) -> float:
        return self.means[stage](batch)

    def remaining(self, stage: int) -> float:
        return self.remaining_by_stage[stage]

    def after(self, stage: int) -> float:
        return self.after_by_stage[stage]
