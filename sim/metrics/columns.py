"""The few per-request columns the metrics read, as plain arrays.

``sim.metrics.summary.summarise`` needs, per request: its arrival (for the
measurement window), class, outcome and latency, and per stage whether
service started, the wait (``start - enqueued``) and the service time
(``end - start``). A ``RequestColumns`` holds exactly these, in one row
order, as numpy arrays: per request latency (float64), outcome (int8) and
per stage a started flag; per stage, wait and service (float64) only for the
rows whose service of the stage started, packed in row order (after a
prefilter most requests start no later stage, and only those the metrics
read); arrival and class may be views of the run's arrivals. Built from a
full per-request table (``of_frame``) or filled as a run goes
(``sim.metrics.sink.RequestSink``), it gives the same metrics, bit for bit:
the values are the same float64 differences, in the same row order, and the
means and percentiles are computed over the same arrays. A window of rows
in arrival order is a set of views (``rows`` with a slice): the packed values
of a window are a slice of the packed arrays.

Why float64 per-stage columns rather than running sums: ``numpy.mean``
sums pairwise over the whole (contiguous) array, so only the values
themselves, in row order, reproduce its result to the last bit (a running
sum would differ in the last digits and change summary.json). Wait and
service keep 16 bytes per started stage instead of the 24 of
enqueue/start/end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from sim.contract.outcomes import ENDINGS, LABELS
from sim.metrics.records import column, stage_names

# An outcome is stored as its ``Outcome`` value, which is also its index in LABELS (-1: none).
assert all(o.value == i for i, o in enumerate(ENDINGS))


@dataclass(frozen=True)
class RequestColumns:
    """Per request (rows in one order): what the summary reads; per-stage columns are tuples by stage.

    ``id`` is an array, or a ``range`` when row i is request ``id[i]`` of a contiguous run of ids (the
    sink's columns: no array of ids is held). ``arrival`` and ``klass`` may be views of the run's
    arrivals (``sim.workload.Arrivals``): the columns hold no copy of what the arrivals already hold."""

    id: np.ndarray | range  # int64 ids, or a range of them
    arrival: np.ndarray  # float64, seconds
    klass: np.ndarray  # codes into class_names
    class_names: tuple[str, ...]
    outcome: np.ndarray  # int8 Outcome values; -1: none
    latency: np.ndarray  # float64, done - arrival (NaN: no answer)
    stages: tuple[str, ...]
    started: tuple[np.ndarray, ...]  # per stage, bool per row: service of the stage started
    wait: tuple[np.ndarray, ...]  # per stage, float64 start - enqueued of the rows that started it, in row order
    service: tuple[np.ndarray, ...]  # per stage, float64 end - start of the same rows

    def __len__(self) -> int:
        return len(self.arrival)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> "RequestColumns":
        """From a per-request table (``sim.metrics.records``), keeping its row order."""
        n = len(frame)
        klass = frame["class"] if isinstance(frame["class"].dtype, pd.CategoricalDtype) \
            else frame["class"].astype("category")
        stages = tuple(stage_names(frame))

        def values(stage: str, field: str) -> np.ndarray:
            return frame[column(stage, field)].to_numpy(float)

        start = [values(s, "start") for s in stages]
        started = tuple(~np.isnan(t) for t in start)
        return cls(
            id=frame["id"].to_numpy(np.int64) if "id" in frame else range(n),
            arrival=frame["arrival"].to_numpy(float),
            klass=klass.cat.codes.to_numpy(),
            class_names=tuple(klass.cat.categories),
            outcome=pd.Categorical(frame["outcome"], categories=list(LABELS)).codes.astype(np.int8),
            latency=frame["latency"].to_numpy(float),
            stages=stages,
            started=started,
            wait=tuple((t - values(s, "enqueued"))[m] for s, t, m in zip(stages, start, started)),
            service=tuple((values(s, "end") - t)[m] for s, t, m in zip(stages, start, started)),
        )

    @property
    def ids(self) -> np.ndarray:
        """The request ids as an array (built here when ``id`` is a range)."""
        if isinstance(self.id, range):
            return np.arange(self.id.start, self.id.stop, self.id.step, dtype=np.int64)
        return self.id

    def window(self, warmup: float, end: float) -> "RequestColumns":
        """The rows that arrived in [warmup, end): views when rows are in arrival order (no copy)."""
        arrival = self.arrival
        if len(arrival) < 2 or bool(np.all(arrival[1:] >= arrival[:-1])):
            low, high = np.searchsorted(arrival, [warmup, end], side="left")
            return self.rows(slice(int(low), int(high)))
        return self.rows((arrival >= warmup) & (arrival < end))

    def rows(self, rows: slice | np.ndarray) -> "RequestColumns":
        """The rows a slice (step 1: views) or a boolean mask (copies) picks."""
        if isinstance(rows, slice):
            low, high, _ = rows.indices(len(self))
            high = max(low, high)
            ids = self.id[low:high]
            # per stage, the packed values of the started rows in [low, high): a slice of them
            first = [int(np.count_nonzero(s[:low])) for s in self.started]
            picks = [slice(a, a + int(np.count_nonzero(s[low:high]))) for a, s in zip(first, self.started)]
            rows = slice(low, high)
        else:
            ids = self.ids[rows]
            picks = [rows[s] for s in self.started]  # the mask restricted to the started rows
        return RequestColumns(ids, self.arrival[rows], self.klass[rows], self.class_names,
                              self.outcome[rows], self.latency[rows], self.stages,
                              tuple(a[rows] for a in self.started), tuple(a[p] for a, p in zip(self.wait, picks)),
                              tuple(a[p] for a, p in zip(self.service, picks)))

    def frame(self, replication: Optional[int] = None) -> pd.DataFrame:
        """id, arrival, class, outcome and latency as a table (with ``replication`` first when given)."""
        columns: dict[str, object] = {} if replication is None else {
            "replication": np.full(len(self), replication, dtype=np.int32)}
        columns |= {
            "id": self.ids,
            "arrival": self.arrival,
            "class": pd.Categorical.from_codes(self.klass.astype(np.int64), categories=list(self.class_names)),
            "outcome": pd.Categorical.from_codes(self.outcome.astype(np.int64), categories=list(LABELS)),
            "latency": self.latency,
        }
        return pd.DataFrame(columns)
