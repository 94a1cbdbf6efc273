"""One worker process as a server: ``sim.station.Station`` in real time.

The harness's worker processes make their queueing, batching and admission
decisions through the very ``Station`` class the simulator's devices use,
built from the scenario by the same registries. This module only adapts it
to a real process: the worker asks ``poll`` whenever it is free (it is one
server, as a pool's core or GPU stream is in the simulator), runs what it
gets, and reports the measured time with ``done``; when the station says
"not before t", the worker sleeps until then or until a message arrives.

Policies need estimates the simulator takes from its cost models (service
time of a batch, expected wait, remaining service). Here each estimate is
the scenario's cost model scaled by the ratio measured/modelled of that
stage in this run (a moving average), so a deadline-aware batcher plans
with this machine's real speed. Stages of the other process keep their
model estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from hil.runner.layout import FRONT, Layout, StageRun
from sim.policies.admission import ADMISSION
from sim.policies.channel import CHANNELS, ChannelPolicy
from sim.policies.queueing import DISCIPLINES
from sim.scenario.schema import Policies
from sim.station import Decision, Launch, Station


@dataclass(slots=True, eq=False)
class Job:
    """A request waiting at one stage of this process (satisfies ``sim.station.StationJob``)."""

    id: int
    stage: int
    deadline: float
    priority: int
    data: np.ndarray
    enqueued: float = 0.0
    seq: int = 0


class MeasuredEstimates:
    """Service-time estimates per stage: cost model x measured/model ratio (EWMA); ``sim.station.Estimates``."""

    def __init__(self, stages: Sequence[StageRun], succs: Optional[Sequence[Sequence[int]]] = None):
        """``succs``: each plan stage's successors when requests take different paths (branches,
        per-class entries); None: the stages are one path, in order."""
        self.stages = stages
        self.succs = succs
        self.ratio = [1.0] * len(stages)

    def service(self, stage: int, batch: int) -> float:
        return self.stages[stage].model_mean(batch) * self.ratio[stage]

    def remaining(self, stage: int) -> float:
        """From the start of ``stage`` to the end of the pipeline, one request (the longest path, as the
        simulator's ``ModelEstimates``)."""
        if self.succs is None or stage >= len(self.succs):
            return sum(self.service(s, 1) for s in range(stage, len(self.stages)))
        return self.service(stage, 1) + self.after(stage)

    def after(self, stage: int) -> float:
        if self.succs is None or stage >= len(self.succs):
            return self.remaining(stage + 1)
        return max((self.remaining(s) for s in self.succs[stage]), default=0.0)

    def observe(self, stage: int, batch: int, seconds: float) -> None:
        model = self.stages[stage].model_mean(batch)
        if model > 0:
            self.ratio[stage] += 0.1 * (seconds / model - self.ratio[stage])


class ProcessStation:
    """The stage queues of one worker process and the decision of what it runs next."""

    def __init__(self, stages: Sequence[StageRun], policies: Policies, estimates: MeasuredEstimates):
        self.estimates = estimates
        self.station: Station[Job] = Station(
            {s.index: s.batching for s in stages},
            DISCIPLINES[policies.queue.kind](),
            ADMISSION[policies.admission.kind](policies.admission),
            estimates,
            servers=1,
        )

    @property
    def waiting(self) -> int:
        return self.station.waiting

    def offer(self, job: Job, now: float) -> bool:
        """Admission: queue ``job`` at ``job.stage`` (False: refused, the request is dropped)."""
        return self.station.offer(job, now)

    def poll(self, now: float) -> Decision:
        """The process is free: a ``Launch`` to run now, or the time to ask again (inf: on a message)."""
        return self.station.next_batch(now)

    def done(self, launch: Launch, seconds: float) -> None:
        """A launched batch took ``seconds`` for real: refine the estimates."""
        self.estimates.observe(launch.stage, len(launch.jobs), seconds)

    def drain(self) -> list[Job]:
        """Take every waiting job out (the process was hung: the front has given up on them)."""
        return self.station.drain()

    def depths(self) -> dict[int, int]:
        return self.station.depths()


def process_station(layout: Layout, side: str) -> ProcessStation:
    """The station of ``side``'s worker, built from the scenario as the simulator builds its devices'.

    The front's also queues the fallbacks it runs (stages n + k, unbatched, as the simulator's shadow stages).
    """
    stages = [*layout.side_stages(side), *(layout.fallbacks if side == FRONT else ())]
    succs = [s.succs for s in layout.plan.stages] if layout.plan.branched else None
    return ProcessStation(stages, layout.scenario.policies,
                          MeasuredEstimates((*layout.stages, *layout.fallbacks), succs))


def channel_policy(layout: Layout) -> ChannelPolicy:
    """Which transport carries a message of a given size: the scenario's channel policy."""
    spec = layout.scenario.policies.channel
    return CHANNELS[spec.kind](spec)
