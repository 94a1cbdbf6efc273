"""From a finished simulation to the common result format.

Turns the requests of a ``RunOutput`` into the per-request table and the
devices, links and batchers into a ``ResourceUsage``.
"""

from __future__ import annotations

import pandas as pd

from sim.metrics.sink import TableNames, row_buffer, rows_frame
from sim.metrics.usage import ResourceUsage
from sim.model.system import RunOutput


def collect(output: RunOutput, replication: int) -> tuple[pd.DataFrame, ResourceUsage]:
    """The run's request table (in id order) and its resource usage. The requests pass through the
    sink's row buffer (``sim.metrics.sink.row_buffer``) into the frame a streamed run writes, so the
    in-memory table and the streamed file are built by the same code."""
    requests = output.requests
    group = row_buffer()(len(output.plan.stages), len(requests))
    add = group.add
    for request in requests:
        add(request)
    names = TableNames.of(output.plan, output.arrivals)
    return rows_frame(group, names, replication, variant=""), usage_of(output)


def usage_of(output: RunOutput) -> ResourceUsage:
    """How busy the devices, links and batchers were in the measurement window."""
    window = output.window.end - output.window.start
    busy: dict[str, float] = {}
    queue: dict[str, float] = {}
    capacity: dict[str, float] = {}
    batches: dict[int, list[int]] = {}
    for channels in output.channels.values():
        for channel in channels:
            channel.account()
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
