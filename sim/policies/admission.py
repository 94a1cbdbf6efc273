"""Whether a job may join a queue at all.

Admission runs when a job reaches a device's queue for its stage, through
``sim.station.Station.offer`` on both sides. Refusing it drops the request
there (outcome ``dropped``), which is how overloaded services keep the
latency of the requests they do accept. A policy reads what it needs from
a ``QueueStateView`` of the device, computed only when asked.

- ``AdmitAll``: never refuse.
- ``QueueCap``: refuse when ``cap`` jobs already wait for this stage on this
  device.
- ``DeadlineFeasible``: refuse when even the expected wait plus the
  remaining service would answer after the deadline.

``ADMISSION`` maps each scenario kind (``none``, ``queue-cap``,
``deadline``) to the factory that builds its policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from sim.policies.views import JobView, QueueStateView
from sim.registry import Registry


class AdmissionPolicy(Protocol):
    def admit(self, now: float, job: JobView, state: QueueStateView) -> bool: ...


@dataclass(frozen=True)
class AdmitAll:
    def admit(self, now: float, job: JobView, state: QueueStateView) -> bool:
        return True


@dataclass(frozen=True)
class QueueCap:
    cap: int

    def admit(self, now: float, job: JobView, state: QueueStateView) -> bool:
        return state.queue_length(job.stage) < self.cap


@dataclass(frozen=True)
class DeadlineFeasible:
    def admit(self, now: float, job: JobView, state: QueueStateView) -> bool:
        return now + state.expected_wait(job.stage) + state.remaining_service(job.stage) <= job.deadline


class AdmissionSettings(Protocol):
    """The scenario's admission section (``sim.scenario.schema.AdmissionSpec``)."""

    kind: str
    cap: int


ADMISSION: Registry[Callable[[AdmissionSettings], AdmissionPolicy]] = Registry("admission policy")
ADMISSION.register("none")(lambda spec: AdmitAll())
ADMISSION.register("queue-cap")(lambda spec: QueueCap(spec.cap))
ADMISSION.register("deadline")(lambda spec: DeadlineFeasible())
