"""Time series of a run: how busy and how queued each pool and link was, over time.

A ``Sampler`` reads the live counters of the model at a fixed interval of
simulated time, driven by a chain of SimPy timeouts (one event per
sample, whatever the load), and keeps one row per resource and sample:

- a pool: ``busy`` servers (cores, GPU streams) of ``capacity``, and
  ``queue``, the jobs waiting in its devices' queues;
- a link: ``busy`` channels (directions, or per-pair channels) with a
  message on the wire, of ``capacity`` channels opened so far,
  ``in_flight`` messages on the wire, and ``bytes``: bytes delivered in
  the measurement window since the previous sample.

Values are instantaneous readings (the way a gauge is scraped), not
averages over the interval; utilisation over time is ``busy / capacity``
and its mean over many samples converges on the run's utilisation. A
6-second run sampled every 10 ms (``DEFAULT_INTERVAL``) with 3 pools and 4
links gives about 6,000 rows: a few tens of kB of Parquet.

``attach`` starts a sampler on an environment; ``Sampler.table`` turns
the samples into a compact frame; ``write_timeseries`` saves a variant's
frame as ``timeseries/<variant>.parquet`` in the results folder, and
``read_timeseries`` reads it back (None when the run recorded none, as
measured runs do not).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import simpy

from sim.model.device import DeviceInstance, Window

DEFAULT_INTERVAL = 0.01  # s of simulated time between samples
COLUMNS = ("replication", "time", "kind", "resource", "busy", "capacity", "queue", "in_flight", "bytes")
KINDS = ("pool", "link")

ChannelsProvider = Callable[[], "Mapping[str, Sequence] | Iterable"]


def in_flight_reader(channel) -> Callable[[], int]:
    """How to read the messages on a channel's wire: its ``in_flight`` where it has one, else the length
    of its pending messages (``FifoChannel._queue``, ``SharedChannel._tags``)."""
    if hasattr(type(channel), "in_flight") or hasattr(channel, "in_flight"):
        return lambda: int(channel.in_flight() if callable(channel.in_flight) else channel.in_flight)
    for attr in ("_queue", "_tags", "_active"):
        pending = getattr(channel, attr, None)
        if pending is not None:
            return pending.__len__
    return lambda: 0


class Sampler:
    """Samples pools and links every ``interval`` seconds of simulated time."""

    def __init__(self, env: simpy.Environment, devices: Sequence[DeviceInstance], channels: ChannelsProvider,
                 window: Window, interval: float = DEFAULT_INTERVAL, until: Optional[float] = None):
        if not interval > 0:
            raise ValueError(f"time-series interval must be > 0 s, got {interval!r}")
        self.env = env
        self.window = window
        self.interval = interval
        self.until = until
        self._channels = channels
        pools: dict[str, list[DeviceInstance]] = {}
        for device in devices:
            pools.setdefault(device.pool, []).append(device)
        self.pools = list(pools)
        self._pool_devices = [pools[p] for p in self.pools]
        # Devices that share one queue (a station) are read once for the queue length.
        self._pool_queues = [list({id(getattr(d, "station", d)): d for d in pools[p]}.values()) for p in self.pools]
        self._capacity = [sum(d.servers for d in pools[p]) for p in self.pools]
        self.times: list[float] = []
        self._pool_rows: list[tuple[int, ...]] = []  # per sample: busy..., queue...
        self._link_rows: list[dict[str, tuple[int, int, int, float]]] = []
        self._readers: dict[int, tuple] = {}  # id(channel) -> (in-flight reader, channel kept alive)

    def start(self) -> "Sampler":
        self.env.timeout(0).callbacks.append(self._tick)
        return self

    def _links(self) -> dict[str, list]:
        provided = self._channels()
        if isinstance(provided, Mapping):
            return {name: list(chs) for name, chs in provided.items()}
        grouped: dict[str, list] = {}
        for channel in provided:
            grouped.setdefault(channel.name, []).append(channel)
        return grouped

    def _tick(self, _event) -> None:
        now = self.env.now
        self.times.append(now)
        busy = [sum(d.servers - d.free for d in devices) for devices in self._pool_devices]
        queue = [sum(d.waiting for d in devices) for devices in self._pool_queues]
        self._pool_rows.append((*busy, *queue))
        links = {}
        readers = self._readers
        for name, channels in self._links().items():
            flights = []
            for channel in channels:
                reader = readers.get(id(channel))
                if reader is None:
                    reader = readers[id(channel)] = (in_flight_reader(channel), channel)
                flights.append(reader[0]())
            links[name] = (sum(1 for f in flights if f), len(channels), sum(flights),
                           float(sum(c.bytes_moved for c in channels)))
        self._link_rows.append(links)
        following = now + self.interval
        if self.until is None or following <= self.until:
            self.env.timeout(self.interval).callbacks.append(self._tick)

    def table(self, replication: int = 0) -> pd.DataFrame:
        """The samples as a long frame (see ``COLUMNS``): each pool's samples in time order, then each link's."""
        n = len(self.times)
        links = sorted({name for sample in self._link_rows for name in sample})
        resources = [*self.pools, *links]
        if not n or not resources:
            return empty_table()
        pools = np.asarray(self._pool_rows, dtype=np.int64).reshape(n, 2 * len(self.pools))
        zeros = np.zeros(n)
        busy, capacity, queue, flight, moved = [], [], [], [], []
        for k in range(len(self.pools)):
            busy.append(pools[:, k])
            capacity.append(np.full(n, self._capacity[k]))
            queue.append(pools[:, len(self.pools) + k])
            flight.append(zeros)
            moved.append(zeros)
        for name in links:
            values = np.array([sample.get(name, (0, 0, 0, np.nan)) for sample in self._link_rows], dtype=float)
            total = pd.Series(values[:, 3]).ffill().fillna(0.0).to_numpy()
            busy.append(values[:, 0])
            capacity.append(values[:, 1])
            queue.append(zeros)
            flight.append(values[:, 2])
            moved.append(np.diff(total, prepend=0.0))
        order = sorted(resources)
        codes = np.repeat([order.index(r) for r in resources], n)
        return pd.DataFrame({
            "replication": np.full(n * len(resources), replication, dtype=np.int32),
            "time": np.tile(np.asarray(self.times, dtype=np.float64), len(resources)),
            "kind": pd.Categorical.from_codes(np.repeat([0] * len(self.pools) + [1] * len(links), n),
                                              categories=list(KINDS)),
            "resource": pd.Categorical.from_codes(codes, categories=order),
            "busy": np.concatenate(busy).astype(np.int32),
            "capacity": np.concatenate(capacity).astype(np.int32),
            "queue": np.concatenate(queue).astype(np.int32),
            "in_flight": np.concatenate(flight).astype(np.int32),
            "bytes": np.concatenate(moved).astype(np.float64),
        })


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    resources = sorted(frame["resource"].astype(str).unique()) if len(frame) else []
    return pd.DataFrame({
        "replication": frame["replication"].astype(np.int32),
        "time": frame["time"].astype(np.float64),
        "kind": pd.Categorical(frame["kind"].astype(str) if len(frame) else [], categories=list(KINDS)),
        "resource": pd.Categorical(frame["resource"].astype(str) if len(frame) else [], categories=resources),
        "busy": frame["busy"].astype(np.int32),
        "capacity": frame["capacity"].astype(np.int32),
        "queue": frame["queue"].astype(np.int32),
        "in_flight": frame["in_flight"].astype(np.int32),
        "bytes": frame["bytes"].astype(np.float64),
    })


def empty_table() -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in COLUMNS}))


def attach(env: simpy.Environment, devices: Sequence[DeviceInstance], channels_provider: ChannelsProvider,
           window: Window, interval: float = DEFAULT_INTERVAL, until: Optional[float] = None) -> Sampler:
    """Start sampling ``devices`` and the channels ``channels_provider()`` returns (a mapping link name ->
    channels, or channels with a ``name``; called at every sample since channels open on demand)."""
    return Sampler(env, devices, channels_provider, window, interval, until).start()


def combine_tables(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One variant's replications in one frame (categories unified)."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return empty_table()
    return _typed(pd.concat([t.astype({"kind": str, "resource": str}) for t in tables], ignore_index=True))


def timeseries_path(folder: Path, variant: str) -> Path:
    return Path(folder) / "timeseries" / f"{variant}.parquet"


def write_timeseries(folder: Path, variant: str, table: pd.DataFrame) -> Path:
    """Save a variant's time series as ``timeseries/<variant>.parquet`` (atomically; same data, same bytes)."""
    path = timeseries_path(folder, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    table.to_parquet(tmp, index=False, compression="zstd")
    os.replace(tmp, path)
    return path


def read_timeseries(folder: Path, variant: str) -> Optional[pd.DataFrame]:
    path = timeseries_path(folder, variant)
    return pd.read_parquet(path) if path.exists() else None
