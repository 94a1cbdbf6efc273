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

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from sim.contract import streams
from sim.scenario.safe_yaml import YamlProblem, read_text_file
from sim.scenario.schema import (
    GammaSource,
    MmppSource,
    PeriodicSource,
    PoissonSource,
    TraceSource,
    Workload,
)

_TIME_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_BLOCK = 1 << 20  # gaps drawn at a time: no single array sized by rate x duration
ARRIVALS_CEILING = 200_000_000  # per replication (~7 GB of arrays): refused before drawing


class WorkloadTooLarge(ValueError):
    """A workload whose expected arrivals exceed the ceiling; nothing was drawn."""




@dataclass(frozen=True)
class Arrivals:
    """Every request of a run, sorted by arrival time (request id = position).

    Held compactly, as a run may have many millions: per request only its time and source
    (about 10 bytes; also its size when a trace gives sizes); what a source fixes (class,
    priority, payload, relative deadline) is looked up by source. ``klass``, ``priority``,
    ``deadline`` and ``size`` are whole-array views built on demand; ``request(i)`` gives one
    request's fields without building them."""

    time: np.ndarray
    source: np.ndarray
    source_names: tuple[str, ...]
    class_names: tuple[str, ...]
    class_of: np.ndarray  # per source: index into class_names
    priority_of: np.ndarray  # per source
    deadline_of: np.ndarray  # per source: seconds after arrival; inf when none
    payload_of: np.ndarray  # per source: bytes
    sizes: Optional[np.ndarray] = None  # per request, when a trace gives sizes (else the source's payload)

    def __len__(self) -> int:
        return len(self.time)

    @property
    def klass(self) -> np.ndarray:
        return self.class_of[self.source]

    @property
    def priority(self) -> np.ndarray:
        return self.priority_of[self.source]

    @property
    def deadline(self) -> np.ndarray:
        """Absolute deadlines (inf when the source sets none)."""
        return self.time + self.deadline_of[self.source]

    @property
    def size(self) -> np.ndarray:
        return self.sizes if self.sizes is not None else self.payload_of[self.source]

    def request(self, i: int) -> tuple[int, int, int, float, float, float]:
        """Request ``i``: source, class, priority, arrival time, absolute deadline, size."""
        source, time = int(self.source[i]), float(self.time[i])
        size = float(self.sizes[i]) if self.sizes is not None else float(self.payload_of[source])
        return (source, int(self.class_of[source]), int(self.priority_of[source]), time,
                float(time + self.deadline_of[source]), size)


def generate_arrivals(
    workload: Workload, duration: float, seed: int, replication: int = 0, base_dir: Path = Path("."),
    max_arrivals: float = ARRIVALS_CEILING,
) -> Arrivals:
    """Every request of one replication; WorkloadTooLarge before drawing anything above ``max_arrivals``.

    ``sim.scenario.work.estimate_work`` judges a run before it starts; this
    ceiling is the last guard for callers that did not ask it (a trace is
    bounded by its file's size limit instead).
    """
    from sim.scenario.work import expected_arrivals

    expected = sum(expected_arrivals(s, duration) for s in workload.sources if not isinstance(s, TraceSource))
    if expected > max_arrivals:
        raise WorkloadTooLarge(f"the workload would draw about {expected:.3g} arrivals in {duration:g} s, "
                               f"more than the {max_arrivals:.3g} one replication may hold; shorten "
                               "run.duration or lower the rates")
    class_names = tuple(dict.fromkeys(s.class_ for s in workload.sources))
    kind = np.int16 if len(workload.sources) < 2**15 else np.int32
    parts = []
    sized = False  # whether a source gives sizes of its own (a trace with a size column)
    for index, source in enumerate(workload.sources):
        rng = streams.stream_rng(seed, replication, streams.arrivals(source.name))
        times, sizes = _draw(source, duration, rng, base_dir)
        keep = (times >= 0) & (times < duration)
        times, sizes = times[keep], (sizes[keep] if sizes is not None else None)
        sized = sized or sizes is not None
        parts.append((times, index, sizes))
    specs = workload.sources
    payload_of = np.array([float(s.payload) if not isinstance(s, TraceSource) or not s.size_column else 0.0
                           for s in specs], dtype=float)
    if len(parts) == 1:
        time, source = parts[0][0], np.zeros(len(parts[0][0]), dtype=kind)
        size = parts[0][2]
    else:
        time = np.concatenate([p[0] for p in parts])
        source = np.concatenate([np.full(len(p[0]), p[1], dtype=kind) for p in parts])
        order = np.lexsort((source, time))
        time, source = time[order], source[order]
        size = (np.concatenate([p[2] if p[2] is not None else np.full(len(p[0]), payload_of[p[1]]) for p in parts])[order]
                if sized else None)
    return Arrivals(
        time=time,
        source=source,
        source_names=tuple(s.name for s in specs),
        class_names=class_names,
        class_of=np.array([class_names.index(s.class_) for s in specs], dtype=np.int32),
        priority_of=np.array([s.priority for s in specs], dtype=np.int32),
        deadline_of=np.array([s.deadline if s.deadline is not None else math.inf for s in specs], dtype=float),
        payload_of=payload_of,
        sizes=size.astype(float) if size is not None else None,
    )


def _draw(source, duration: float, rng: np.random.Generator,
          base_dir: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Arrival times, and sizes when the source gives its own (a trace with a size column)."""
    if isinstance(source, TraceSource):
        times, sizes = read_trace(source, base_dir / source.file)
        return times, (sizes if source.size_column else None)
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
    return times, None


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
    expected = rate * duration
    block = int(min(expected + 10 * math.sqrt(expected) + 16, _BLOCK))
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


MAX_TRACE_BYTES = 1_000_000_000  # a CSV trace file; more is not a trace a run could replay


class TraceError(ValueError):
    """A trace file that cannot be read as arrivals: ``field`` is the source's field at fault."""

    def __init__(self, file: Path, field: str, message: str):
        self.file, self.field, self.message = file, field, message
        super().__init__(f"{file}: {message}")


def read_trace(source: TraceSource, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times (seconds from the first row, sorted) and sizes from ``path``, the source's CSV file.

    Every way a CSV can be wrong is a TraceError naming the file, the column
    and the row (data rows count from 1, after the header): not found, too
    big, NUL bytes or not UTF-8, empty, a header and no rows, a row with
    more fields than the header (pandas' C parser refuses it) or fewer (a
    missing value), a value that is not a finite number, a negative size.
    """
    columns = [source.time_column] + ([source.size_column] if source.size_column else [])
    try:
        text = read_text_file(path, what="CSV text", max_bytes=MAX_TRACE_BYTES)
    except FileNotFoundError:
        raise TraceError(path, "file", "trace file not found") from None
    except OSError as error:
        raise TraceError(path, "file", f"cannot read: {error.strerror}") from None
    except YamlProblem as problem:
        raise TraceError(path, "file", f"{problem.where}: {problem.message}" if problem.where else problem.message) from None
    try:
        header = pd.read_csv(io.StringIO(text), nrows=0).columns.tolist()
    except pd.errors.EmptyDataError:
        raise TraceError(path, "file", f"is empty; expected a header row naming the columns {columns}") from None
    except pd.errors.ParserError as error:
        raise TraceError(path, "file", f"not valid CSV: {_first_line(error)}") from None
    for field, column in (("time_column", source.time_column), ("size_column", source.size_column)):
        if column is not None and column not in header:
            raise TraceError(path, field, f"has no column '{column}'; its columns: {', '.join(map(str, header)) or 'none'}")
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[])
    except pd.errors.ParserError as error:  # e.g. "Expected 2 fields in line 4, saw 3"
        raise TraceError(path, "file", f"every row must have the header's {len(header)} fields: "
                         f"{_first_line(error)}") from None
    if table.empty:
        raise TraceError(path, "file", "has a header but no rows; expected one row per request")
    raw = _numbers(table, source.time_column, path, "time_column", f"a finite time in {source.time_unit}")
    times = (raw - raw.min()) * _TIME_UNIT[source.time_unit] / source.speedup
    if not np.isfinite(times).all():
        raise TraceError(path, "time_column", f"column '{source.time_column}': the timestamps span more than a "
                         "float can hold; expected arrival times of one run")
    if source.size_column:
        sizes = _numbers(table, source.size_column, path, "size_column", "a finite size in bytes >= 0")
        negative = np.flatnonzero(sizes < 0)
        if len(negative):
            row = int(negative[0])
            raise TraceError(path, "size_column", f"column '{source.size_column}', row {row + 1}: expected a size "
                             f"in bytes >= 0, got {table[source.size_column].iloc[row]!r}")
    else:
        sizes = np.full(len(times), source.payload)
    order = np.argsort(times, kind="stable")
    return times[order], sizes[order]


def _numbers(table: pd.DataFrame, column: str, path: Path, field: str, expected: str) -> np.ndarray:
    text = table[column]
    values = pd.to_numeric(text, errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        row = int(bad[0])
        found = text.iloc[row]
        got = "a missing value (the row has fewer fields than the header)" if found is None or found != found \
            else ("an empty value (a row shorter than the header?)" if found == "" else repr(found))
        more = f" ({len(bad)} such rows)" if len(bad) > 1 else ""
        raise TraceError(path, field, f"column '{column}', row {row + 1}: expected {expected}, got {got}{more}")
    return values


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[-1].removeprefix("Error tokenizing data. C error: ")
