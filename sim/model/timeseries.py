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
run of 6 s plus 2 s of drain sampled every 20 ms (``DEFAULT_INTERVAL``)
with 3 pools and 4 links gives about 2,800 rows: under 10 kB of Parquet.

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
from sim.model.device import DeviceInstance, Window
from sim.model.engine import Engine

DEFAULT_INTERVAL = 0.02  # s of simulated time between samples
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
    """Samples pools and links every ``interval`` seconds of simulated time.

    A tick only copies raw counters into lists (per device: free servers and
    waiting jobs; per channel: messages in flight and bytes moved); ``table``
    aggregates them per pool and link afterwards, with numpy and pandas.
    """

    def __init__(self, env: Engine, devices: Sequence[DeviceInstance], channels: ChannelsProvider,
                 window: Window, interval: float = DEFAULT_INTERVAL, until: Optional[float] = None):
        if not interval > 0:
            raise ValueError(f"time-series interval must be > 0 s, got {interval!r}")
        self.env = env
        self.window = window
        self.interval = interval
        self.until = until
        self._channels = channels
        self._devices = list(devices)
        self.pools = list(dict.fromkeys(d.pool for d in self._devices))
        # Devices that share one queue (a station) are read once for the queue length.
        self._queues = list({id(getattr(d, "station", d)): d for d in self._devices}.values())
        self.times: list[float] = []
        self._device_rows: list[list[int]] = []  # per sample: free per device, then waiting per queue
        self._channel_rows: list[tuple[int, str, int, float]] = []  # (sample, link, in flight, bytes moved)
        self._link_names: dict[str, None] = {}
        self._readers: dict[int, tuple] = {}  # id(channel) -> (in-flight reader, account, channel kept alive)

    def start(self) -> "Sampler":
        self.env.call_after(0, self._tick)
        return self

    def _tick(self) -> None:
        now = self.env.now
        sample = len(self.times)
        self.times.append(now)
        self._device_rows.append([d.free for d in self._devices] + [d.waiting for d in self._queues])
        provided = self._channels()
        if not isinstance(provided, Mapping):
            grouped: dict[str, list] = {}
            for channel in provided:
                grouped.setdefault(channel.name, []).append(channel)
            provided = grouped
        readers, rows = self._readers, self._channel_rows
        for name, channels in provided.items():
            if name not in self._link_names:
                self._link_names[name] = None
            for channel in channels:
                reader = readers.get(id(channel))
                if reader is None:
                    reader = readers[id(channel)] = (in_flight_reader(channel), getattr(channel, "account", None),
                                                     channel)
                if reader[1] is not None:
                    reader[1]()  # its counters up to now
                rows.append((sample, name, reader[0](), channel.bytes_moved))
        following = now + self.interval
        if self.until is None or following <= self.until:
            self.env.call_after(self.interval, self._tick)

    def table(self, replication: int = 0) -> pd.DataFrame:
        """The samples as a long frame (see ``COLUMNS``): each pool's samples in time order, then each link's."""
        n = len(self.times)
        links = sorted(self._link_names)
        resources = [*self.pools, *links]
        if not n or not resources:
            return empty_table()
        raw = np.asarray(self._device_rows, dtype=np.int64).reshape(n, len(self._devices) + len(self._queues))
        free, waiting = raw[:, :len(self._devices)], raw[:, len(self._devices):]
        zeros = np.zeros(n)
        busy, capacity, queue, flight, moved = [], [], [], [], []
        for pool in self.pools:
            mine = [k for k, d in enumerate(self._devices) if d.pool == pool]
            servers = sum(self._devices[k].servers for k in mine)
            busy.append(servers - free[:, mine].sum(axis=1))
            capacity.append(np.full(n, servers))
            queue.append(waiting[:, [k for k, d in enumerate(self._queues) if d.pool == pool]].sum(axis=1))
            flight.append(zeros)
            moved.append(zeros)
        code = {name: k for k, name in enumerate(links)}
        rows = self._channel_rows
        sample = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        link = np.fromiter((code[r[1]] for r in rows), dtype=np.int64, count=len(rows))
        flights = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
        sums = np.zeros((4, len(links), n))  # busy channels, channels, in flight, bytes moved so far
        for k, values in enumerate((flights > 0, np.ones(len(rows)), flights,
                                    np.fromiter((r[3] for r in rows), dtype=np.float64, count=len(rows)))):
            np.add.at(sums[k], (link, sample), values)
        for k in range(len(links)):
            busy.append(sums[0, k])
            capacity.append(sums[1, k])
            queue.append(zeros)
            flight.append(sums[2, k])
            moved.append(np.diff(sums[3, k], prepend=0.0))
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


def attach(env: Engine, devices: Sequence[DeviceInstance], channels_provider: ChannelsProvider,
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
