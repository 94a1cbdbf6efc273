"""Whether a job may join a queue at all.

Admission runs when a job arrives at a device queue. Refusing it drops the
request there (outcome ``dropped``), which is how overloaded services keep
the latency of the requests they do accept.

- ``AdmitAll``: never refuse.
- ``QueueCap``: refuse when ``cap`` jobs already wait.
- ``DeadlineFeasible``: refuse when even the expected wait plus the
  remaining service would answer after the deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sim.policies.views import JobView


class AdmissionPolicy(Protocol):
    def admit(
        self, now: float, job: JobView, queue_length: int, expected_wait: float, remaining_service: float
    ) -> bool: ...


@dataclass(frozen=True)
class AdmitAll:
    def admit(self, now, job, queue_length, expected_wait, remaining_service) -> bool:
        return True


@dataclass(frozen=True)
class QueueCap:
    cap: int

    def admit(self, now, job, queue_length, expected_wait, remaining_service) -> bool:
        return queue_length < self.cap


@dataclass(frozen=True)
class DeadlineFeasible:
    def admit(self, now, job, queue_length, expected_wait, remaining_service) -> bool:
        return now + expected_wait + remaining_service <= job.deadline
