"""Request arrivals, drawn before the run as plain arrays.

The arrival sequence of a scenario depends only on its workload section, the
seed and the replication number: each source draws from its own random
stream (keyed by the source's name), so two designs compared in one file see
the very same requests (common random numbers), and the hardware harness
replays exactly what the simulator drew for that seed.

Sources:
- ``periodic``: cameras, each at its own rate (drawn from a range), a random
  phase and Gaussian jitter on every frame;
- ``poisson``: exponential gaps (MLPerf's Server scenario);
- ``gamma``: gamma gaps with a chosen coefficient of variation (burstiness);
- ``mmpp``: a Markov-modulated Poisson process cycling through rate states;
- ``trace``: timestamps (and optionally sizes) replayed from a CSV file.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim.scenario.schema import (
    GammaSource,
    MmppSource,
    PeriodicSource,
    PoissonSource,
    TraceSource,
    Workload,
)

_TIME_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def stream_rng(seed: int, replication: int, name: str) -> np.random.Generator:
    """The random stream of one named model component in one replication."""
    return np.random.default_rng(np.random.SeedSequence([seed, replication, zlib.crc32(name.encode())]))


@dataclass(frozen=True)
class Arrivals:
    """Every request of a run, sorted by arrival time (request id = position)."""

    time: np.ndarray
    source: np.ndarray
    klass: np.ndarray
    size: np.ndarray
    deadline: np.ndarray  # absolute; inf when the source sets none
    priority: np.ndarray
    source_names: tuple[str, ...]
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.time)


def generate_arrivals(
    workload: Workload, duration: float, seed: int, replication: int = 0, base_dir: Path = Path(".")
) -> Arrivals:
    class_names = tuple(dict.fromkeys(s.class_ for s in workload.sources))
    parts = []
    for index, source in enumerate(workload.sources):
        rng = stream_rng(seed, replication, f"source:{source.name}")
        times, sizes = _draw(source, duration, rng, base_dir)
        keep = (times >= 0) & (times < duration)
        times, sizes = times[keep], sizes[keep]
        parts.append((times, np.full(len(times), index), sizes))
    time = np.concatenate([p[0] for p in parts])
    source = np.concatenate([p[1] for p in parts]).astype(np.int32)
    size = np.concatenate([p[2] for p in parts]).astype(float)
    order = np.lexsort((source, time))
    time, source, size = time[order], source[order], size[order]
    specs = workload.sources
    deadline_of = np.array([s.deadline if s.deadline is not None else math.inf for s in specs])
    return Arrivals(
        time=time,
        source=source,
        klass=np.array([class_names.index(s.class_) for s in specs], dtype=np.int32)[source],
        size=size,
        deadline=time + deadline_of[source],
        priority=np.array([s.priority for s in specs], dtype=np.int32)[source],
        source_names=tuple(s.name for s in specs),
        class_names=class_names,
    )


def _draw(source, duration: float, rng: np.random.Generator, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(source, TraceSource):
        return _trace(source, base_dir)
    if isinstance(source, PeriodicSource):
        times = _periodic(source, duration, rng)
    elif isinstance(source, PoissonSource):
        times = _renewal(lambda n: rng.exponential(1 / source.rate, n), source.rate, duration)
    elif isinstance(source, GammaSource):
        shape = 1 / source.cv**2
        times = _renewal(lambda n: rng.gamma(shape, 1 / (source.rate * shape), n), source.rate, duration)
    elif isinstance(source, MmppSource):
        times = _mmpp(source, duration, rng)
    else:
        raise TypeError(f"unknown source {source!r}")
    return times, np.full(len(times), source.payload)


def _periodic(source: PeriodicSource, duration: float, rng: np.random.Generator) -> np.ndarray:
    low, high = source.rate if isinstance(source.rate, tuple) else (source.rate, source.rate)
    rates = rng.uniform(low, high, source.streams)
    out = []
    for rate in rates:
        period = 1 / rate
        phase = rng.uniform(0, period)
        count = int(math.ceil((duration - phase) / period)) + 1
        ticks = phase + period * np.arange(count)
        if source.jitter > 0:
            ticks = ticks + rng.normal(0, source.jitter, count)
        out.append(ticks)
    return np.sort(np.concatenate(out))


def _renewal(gaps, rate: float, duration: float) -> np.ndarray:
    """Cumulative gaps until ``duration``, drawn in blocks."""
    chunks, total = [], 0.0
    block = int(rate * duration + 10 * math.sqrt(rate * duration) + 16)
    while total < duration:
        times = total + np.cumsum(gaps(block))
        chunks.append(times)
        total = float(times[-1])
    times = np.concatenate(chunks)
    return times[times < duration]


def _mmpp(source: MmppSource, duration: float, rng: np.random.Generator) -> np.ndarray:
    dwell = np.asarray(source.dwell)
    state = int(rng.choice(len(dwell), p=dwell / dwell.sum()))
    t, out = 0.0, []
    while t < duration:
        stay = rng.exponential(dwell[state])
        rate = source.rates[state]
        if rate > 0:
            count = rng.poisson(rate * stay)
            out.append(t + np.sort(rng.uniform(0, stay, count)))
        t += stay
        state = (state + 1) % len(dwell)
    return np.concatenate(out) if out else np.empty(0)


def _trace(source: TraceSource, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    path = base_dir / source.file
    columns = [source.time_column] + ([source.size_column] if source.size_column else [])
    try:
        table = pd.read_csv(path, usecols=columns)
    except ValueError as error:
        raise TraceError(f"{path}: {error}; expected columns {columns}") from None
    raw = pd.to_numeric(table[source.time_column], errors="coerce").to_numpy(float)
    if np.isnan(raw).any():
        raise TraceError(f"{path}: column '{source.time_column}' must hold numbers ({source.time_unit})")
    times = (raw - raw.min()) * _TIME_UNIT[source.time_unit] / source.speedup
    if source.size_column:
        sizes = pd.to_numeric(table[source.size_column], errors="coerce").to_numpy(float)
        if np.isnan(sizes).any() or (sizes < 0).any():
            raise TraceError(f"{path}: column '{source.size_column}' must hold sizes in bytes >= 0")
    else:
        sizes = np.full(len(times), source.payload)
    order = np.argsort(times, kind="stable")
    return times[order], sizes[order]


class TraceError(ValueError):
    """A trace file whose columns cannot be read as arrivals."""
