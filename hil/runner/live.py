"""Live metrics while a run is in progress: a Prometheus endpoint.

The parent process serves ``/metrics`` (on 127.0.0.1 unless told
otherwise) and follows the workers' event files a few times a second, so
the workers pay nothing for it. Metrics, labelled by ``variant``:

    dgsim_hil_arrivals_total                  requests issued
    dgsim_hil_requests_total{outcome}         requests ended, by outcome
    dgsim_hil_latency_seconds                 end-to-end latency of answered requests (histogram)
    dgsim_hil_stage_seconds{stage,part}       per stage: part="wait" (queue) or "service" (histogram)
    dgsim_hil_batch_size{stage}               jobs per launched batch (histogram)
    dgsim_hil_queue_depth{stage}              jobs waiting at each stage now (gauge)
    dgsim_hil_transport_bytes_total{transport} bytes moved between the two processes
"""

from __future__ import annotations

import json
from pathlib import Path

from sim.metrics.records import SERVED


class Live:
    """A Prometheus endpoint fed from the event files of the run in progress."""

    def __init__(self, host: str, port: int):
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            start_http_server,
        )

        r = self.registry = CollectorRegistry()
        self.arrivals = Counter("dgsim_hil_arrivals", "requests issued", ["variant"], registry=r)
        self.requests = Counter("dgsim_hil_requests", "requests ended, by outcome", ["variant", "outcome"], registry=r)
        self.latency = Histogram("dgsim_hil_latency_seconds", "end-to-end latency of answered requests",
                                 ["variant"], registry=r,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.stage = Histogram("dgsim_hil_stage_seconds", "per stage: queue wait or service time",
                               ["variant", "stage", "part"], registry=r,
                               buckets=(.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1))
        self.batch = Histogram("dgsim_hil_batch_size", "jobs per launched batch", ["variant", "stage"], registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.depth = Gauge("dgsim_hil_queue_depth", "jobs waiting at each stage", ["variant", "stage"], registry=r)
        self.moved = Counter("dgsim_hil_transport_bytes", "bytes moved between the processes",
                             ["variant", "transport"], registry=r)
        self.server, self.thread = start_http_server(port, addr=host, registry=r)
        self.port = self.server.server_port
        self.files: dict[Path, int] = {}

    def follow(self, folder: Path, variant: str, stage_names: list[str]) -> None:
        """Start reading the event files of a new run."""
        self.poll()
        self.files = {folder / f"{side}.jsonl": 0 for side in ("front", "gpu")}
        self.variant, self.names, self.arrived = variant, stage_names, {}

    def poll(self) -> None:
        for path, offset in self.files.items():
            try:
                with open(path, "rb") as file:
                    file.seek(offset)
                    chunk = file.read()
            except FileNotFoundError:
                continue
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self.files[path] = offset + len(complete)
            for line in complete.splitlines():
                self._event(json.loads(line))

    def _event(self, e: list) -> None:
        v = self.variant
        kind = e[0]
        if kind == "a":
            self.arrivals.labels(v).inc()
            self.arrived[e[1]] = e[2]
        elif kind == "d":
            self.requests.labels(v, e[3]).inc()
            arrival = self.arrived.pop(e[1], None)
            if e[3] in SERVED and arrival is not None:
                self.latency.labels(v).observe(e[2] - arrival)
        elif kind == "s":
            name = self.names[e[2]]
            self.stage.labels(v, name, "wait").observe(e[4] - e[3])
            self.stage.labels(v, name, "service").observe(e[5] - e[4])
        elif kind == "b":
            self.batch.labels(v, self.names[e[1]]).observe(e[2])
        elif kind == "q":
            for name, depth in e[2].items():
                self.depth.labels(v, name).set(depth)
        elif kind == "h":
            self.moved.labels(v, e[2]).inc(e[3])

    def close(self) -> None:
        self.poll()
        self.server.shutdown()
        self.server.server_close()
