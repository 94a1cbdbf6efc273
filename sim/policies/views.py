"""What a policy may look at: read-only views of jobs and device instances.

The simulator's own objects satisfy these protocols directly, and so do the
harness's, so no copy is made per decision. Policies only read them.
"""

from __future__ import annotations

from typing import Protocol


class JobView(Protocol):
    """One unit of work waiting at a device: a request at one stage."""

    @property
    def seq(self) -> int:
        """Order of arrival at this queue (ties broken by it)."""

    @property
    def enqueued(self) -> float:
        """When the job joined the queue, in seconds."""

    @property
    def deadline(self) -> float:
        """Absolute time by which the request should be answered (inf if none)."""

    @property
    def priority(self) -> int:
        """Larger is more urgent."""


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
