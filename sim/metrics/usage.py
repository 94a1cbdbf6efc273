"""How busy devices, links and batchers were during the measurement window.

Utilisation of a pool is busy server-time over available server-time;
utilisation of a link is that of its busiest direction (the one that
limits); link throughput is bytes delivered per second over all its
channels. ``mean_batch`` is jobs per launched batch, per stage;
``mean_queue`` the time-averaged number of jobs waiting in a pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class ResourceUsage:
    window: float
    pool_utilisation: dict[str, float] = field(default_factory=dict)
    pool_queue: dict[str, float] = field(default_factory=dict)
    link_utilisation: dict[str, float] = field(default_factory=dict)
    link_throughput: dict[str, float] = field(default_factory=dict)
    stage_batch: dict[str, float] = field(default_factory=dict)
    resilience: Optional[Any] = None  # sim.metrics.resilience.ResilienceRecord, in runs with failures
