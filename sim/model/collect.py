"""From a finished simulation to the common result format.

Turns the requests of a ``RunOutput`` into the per-request table and the
devices, links and batchers into a ``ResourceUsage``.
"""

from __future__ import annotations

from itertools import chain
from operator import attrgetter

import numpy as np
import pandas as pd

from sim.contract.outcomes import Outcome
from sim.metrics.records import request_frame
from sim.metrics.usage import ResourceUsage
from sim.model.system import RunOutput


def collect(output: RunOutput, replication: int) -> tuple[pd.DataFrame, ResourceUsage]:
    requests = output.requests
    stages = [s.name for s in output.plan.stages]
    width = len(stages)

    def matrix(attr: str, dtype=float) -> np.ndarray:
        values = chain.from_iterable(map(attrgetter(attr), requests))  # no list per request
        return np.fromiter(values, dtype=dtype, count=len(requests) * width).reshape(len(requests), width)

    arrivals = output.arrivals
    n = len(requests)
    label = {o: o.label for o in Outcome}

    def optional(attr: str) -> np.ndarray | None:  # fields the model may not record
        return matrix(attr, dtype=np.int64) if hasattr(requests[0] if requests else None, attr) else None

    frame = request_frame(
        replication=replication,
        ids=np.arange(n),
        source=arrivals.source[:n],
        klass=arrivals.klass[:n],
        priority=arrivals.priority[:n],
        arrival=arrivals.time[:n],
        deadline=arrivals.deadline[:n],
        size=arrivals.size[:n],
        done=np.array([r.done for r in requests], dtype=float),
        outcome=[label[r.outcome] for r in requests],
        source_names=arrivals.source_names,
        class_names=arrivals.class_names,
        stage_names=stages,
        enqueued=matrix("enqueued"),
        start=matrix("start"),
        end=matrix("end"),
        device=matrix("instance", dtype=np.int64),
        device_names=[d.name for d in output.devices],
        batch=optional("batch"),
        link=optional("link"),
        reply_link=(np.array([r.reply_link for r in requests], dtype=np.int64)
                    if requests and hasattr(requests[0], "reply_link") else None),
        link_names=[link.name for link in output.plan.links],
    )
    return frame, usage_of(output)


def usage_of(output: RunOutput) -> ResourceUsage:
    """How busy the devices, links and batchers were in the measurement window."""
    window = output.window.end - output.window.start
    busy: dict[str, float] = {}
    queue: dict[str, float] = {}
    capacity: dict[str, float] = {}
    batches: dict[int, list[int]] = {}
    for device in output.devices:
        device.account()
        busy[device.pool] = busy.get(device.pool, 0.0) + device.busy_time
        queue[device.pool] = queue.get(device.pool, 0.0) + device.queue_area / window
        capacity[device.pool] = capacity.get(device.pool, 0.0) + device.servers * window
        for stage, sq in device.services.items():
            counts = batches.setdefault(stage, [0, 0])
            counts[0] += sq.batches
            counts[1] += sq.batched_jobs
    stages = output.plan.stages
    return ResourceUsage(
        window=window,
        pool_utilisation={pool: busy[pool] / capacity[pool] for pool in busy},
        pool_queue=queue,
        link_utilisation={
            name: max((c.busy_time for c in channels), default=0.0) / window
            for name, channels in output.channels.items()
        },
        link_throughput={
            name: sum(c.bytes_moved for c in channels) / window for name, channels in output.channels.items()
        },
        stage_batch={stages[s].name: jobs / count for s, (count, jobs) in batches.items() if count},
        resilience=output.resilience,
    )
