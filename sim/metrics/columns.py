"""The few per-request columns the metrics read, as plain arrays.

``sim.metrics.summary.summarise`` needs, per request: its arrival (for the
measurement window), class, outcome and latency, and per stage whether
service started, the wait (``start - enqueued``) and the service time
(``end - start``). A ``RequestColumns`` holds exactly these, in one row
order, as numpy arrays: about ``27 + 17 x stages`` bytes per request
(id, arrival and latency as 64-bit numbers, class and outcome as small integers, per
stage a flag and two float64s). Built from a full per-request table
(``of_frame``) or filled as a run goes (``sim.metrics.sink.RequestSink``),
it gives the same metrics, bit for bit: the values are the same float64
differences, in the same row order, and the means and percentiles are
computed over the same arrays.

Why float64 per-stage columns rather than running sums: ``numpy.mean``
sums pairwise over the whole array, so only the values themselves, in
row order, reproduce its result to the last bit (a running sum would
differ in the last digits and change summary.json). Wait and service
keep 16 bytes per stage instead of the 24 of enqueue/start/end.
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
    started: tuple[np.ndarray, ...]  # per stage, bool: service of the stage started
    wait: tuple[np.ndarray, ...]  # per stage, float64: start - enqueued (NaN where not started)
    service: tuple[np.ndarray, ...]  # per stage, float64: end - start (NaN where not started)

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
        return cls(
            id=frame["id"].to_numpy(np.int64) if "id" in frame else range(n),
            arrival=frame["arrival"].to_numpy(float),
            klass=klass.cat.codes.to_numpy(),
            class_names=tuple(klass.cat.categories),
            outcome=pd.Categorical(frame["outcome"], categories=list(LABELS)).codes.astype(np.int8),
            latency=frame["latency"].to_numpy(float),
            stages=stages,
            started=tuple(~np.isnan(t) for t in start),
            wait=tuple(t - values(s, "enqueued") for s, t in zip(stages, start)),
            service=tuple(values(s, "end") - t for s, t in zip(stages, start)),
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
        """The rows a slice (views) or a boolean mask (copies) picks."""
        ids = self.id[rows] if isinstance(rows, slice) or not isinstance(self.id, range) else self.ids[rows]
        return RequestColumns(ids, self.arrival[rows], self.klass[rows], self.class_names,
                              self.outcome[rows], self.latency[rows], self.stages,
                              tuple(a[rows] for a in self.started), tuple(a[rows] for a in self.wait),
                              tuple(a[rows] for a in self.service))

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
