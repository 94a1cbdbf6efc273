"""What a policy may look at: read-only views of jobs, queues and device instances.

The simulator's own objects satisfy these protocols directly, and so do the
harness's, so no copy is made per decision. Policies only read them.
"""

from __future__ import annotations

from typing import Protocol


class JobView(Protocol):
    """One unit of work waiting at a device: a request at one stage."""

    @property
    def stage(self) -> int:
        """The stage (index in the plan's stage order) the job waits for."""

    @property
    def seq(self) -> int:
        """Order of arrival at this device (ties broken by it)."""

    @property
    def enqueued(self) -> float:
        """When the job joined the queue, in seconds."""

    @property
    def deadline(self) -> float:
        """Absolute time by which the request should be answered (inf if none)."""

    @property
    def priority(self) -> int:
        """Larger is more urgent."""


class QueueStateView(Protocol):
    """A device's queues as admission sees them (``sim.station.Station``)."""

    def queue_length(self, stage: int) -> int:
        """Jobs waiting for ``stage`` on this device, not yet in service."""

    def expected_wait(self, stage: int) -> float:
        """Estimated wait of a job joining ``stage`` now, in seconds."""

    def remaining_service(self, stage: int) -> float:
        """Estimated service from the start of ``stage`` to the reply, one request, in seconds."""


class InstanceView(Protocol):
    """One device instance a job could be routed to."""

    @property
    def tier(self) -> int:
        """Preference order of the instance's pool for this stage (0 = first choice)."""

    @property
    def queue_length(self) -> int:
        """Jobs waiting, not yet in service."""

    @property
    def busy(self) -> int:
        """Servers (cores, streams) working now."""

    @property
    def servers(self) -> int:
        """Servers the instance has."""
