"""Per-request records that stream to Parquet while the run goes on.

A long run cannot hold one Python object per request until it ends. A
``RequestSink`` receives each request once, when it ends (``add``), keeps
at most ``rows_per_group`` of them in a buffer, and writes each full buffer
as one Parquet row group of the per-request table (``sim.metrics.records``,
the same columns ``request_frame`` builds). What the summary needs is kept
as compact columns stored by request id (``sim.metrics.columns.RequestColumns``:
outcome, latency, per stage whether it started and, for the requests that
started it, its wait and service times: 9 + stages + 16 x stages started
bytes per request, written in place into arrays as long as the run's
arrivals, whose time and source give arrival and class), so ``close``
returns, without copying, columns that ``sim.metrics.summary.summarise``
reads exactly as it reads the full table: percentiles and means stay exact,
to the last bit.

What is written is a ``RecordsChoice``: ``all`` (every request), ``sample:N``
(N requests chosen uniformly by reservoir sampling from a generator seeded
by the run, so the same run keeps the same requests; written at ``close``)
or ``none`` (no table; the summary is still exact).

The model calls ``add(request)`` when a request reaches its outcome (and,
when the run stops, once for every request still pending, after marking it
unfinished), then ``close()``. Rows are in the order requests ended; sort by
``id`` for arrival order. A request needs the fields of
``sim.model.request.Request``; ``batch_size`` (per stage) is used when the
request carries it, otherwise the column is null: a batch's size is known
when it is dispatched, not when its members' rows are written.

Until a row group is full its rows wait in a buffer: compiled
(``sim/metrics/_rows.pyx``, typed arrays written in place) where the
installation built it, else ``_Rows`` (lists); both give the same arrays,
bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from sim.metrics.columns import RequestColumns
from sim.metrics.records import parquet_options, request_frame

try:
    from sim.metrics._rows import CompiledRows
except ImportError:  # not built (no C compiler): ``_Rows`` below does the same in Python
    CompiledRows = None

COMPILED = CompiledRows is not None  # whether this installation has the compiled row buffer

if TYPE_CHECKING:
    from sim.workload import Arrivals


DEFAULT_ROWS_PER_GROUP = 65_536


class RecordsError(ValueError):
    """A ``--records`` value that is not ``all``, ``sample:N`` or ``none``."""


@dataclass(frozen=True)
class RecordsChoice:
    """Which per-request rows a run keeps: every one, a uniform sample of ``n``, or none."""

    kind: str  # "all", "sample" or "none"
    n: int = 0

    @classmethod
    def parse(cls, text: str) -> "RecordsChoice":
        text = text.strip()
        if text in ("all", "none"):
            return cls(text)
        name, _, count = text.partition(":")
        if name == "sample" and count.strip().isdigit() and int(count) > 0:
            return cls("sample", int(count))
        raise RecordsError(f"--records: expected all, sample:N (N > 0) or none, got {text!r}")

    def __str__(self) -> str:
        return f"sample:{self.n}" if self.kind == "sample" else self.kind


@dataclass(frozen=True)
class TableNames:
    """The labels the table's categorical columns draw from (fixed for a run, so row groups agree)."""

    stages: tuple[str, ...]
    devices: tuple[str, ...]
    links: tuple[str, ...]
    sources: tuple[str, ...]
    classes: tuple[str, ...]

    @classmethod
    def of(cls, plan, arrivals) -> "TableNames":
        """From a compiled plan and its arrivals (device instances in the plan's pool order)."""
        return cls(tuple(s.name for s in plan.stages),
                   tuple(n for pool in plan.pools.values() for n in pool.instance_names()),
                   tuple(link.name for link in plan.links), tuple(arrivals.source_names), tuple(arrivals.class_names))


@dataclass(frozen=True)
class SinkResult:
    columns: RequestColumns  # what ``summarise`` reads, every request in id (arrival) order
    written: int  # rows in the Parquet file
    path: Optional[Path]


class RequestSink:
    """Receives finished requests; streams the chosen rows to ``path`` in row groups."""

    def __init__(self, names: TableNames, arrivals: "Arrivals", replication: int, variant: str,
                 choice: RecordsChoice, path: Optional[Path], seed: int = 0,
                 rows_per_group: int = DEFAULT_ROWS_PER_GROUP, compiled: Optional[bool] = None):
        """``arrivals``: the run's (``sim.workload.Arrivals``); request ids index them. ``compiled``: buffer
        rows in ``sim.metrics._rows.CompiledRows`` (None: where built; the same rows either way)."""
        self.names, self.replication, self.variant, self.choice = names, replication, variant, choice
        self.arrivals = arrivals
        self.path = path if choice.kind != "none" else None
        self.rows_per_group = rows_per_group
        self._sample: list = []  # reservoir (sample:N); row snapshots
        self._seen = 0
        self._rng = np.random.default_rng([seed, replication, 0x5A3])
        self._writer = None
        self._written = 0
        self._columns = _ColumnStore(names.stages, len(arrivals))  # what the summary reads, every request
        self._rows = row_buffer(compiled)
        self._pending = self._new_group()  # ended requests, not yet stored (nor, with all, written)

    # -- the model's side -----------------------------------------------------

    def add(self, request) -> None:
        """``request`` has ended (or the run stopped with it pending, already marked unfinished)."""
        self._pending.add(request)
        if self._pending.count >= self.rows_per_group:
            self._store()
        if self.choice.kind == "sample":
            self._seen += 1
            if len(self._sample) < self.choice.n:
                self._sample.append(_Row.of(request))
            else:
                slot = int(self._rng.integers(0, self._seen))
                if slot < self.choice.n:
                    self._sample[slot] = _Row.of(request)

    def close(self) -> SinkResult:
        """Write what is buffered, close the file and return the summary columns."""
        if self._pending.count or (self.choice.kind == "all" and self._writer is None):
            self._store()
        if self.choice.kind == "sample":
            self._flush(self._rows.of(sorted(self._sample, key=lambda row: row.id), len(self.names.stages)))
        self._sample = []
        if self._writer is not None:
            self._writer.close()
        return SinkResult(self._columns.columns(self.arrivals), self._written, self.path)

    def abort(self) -> None:
        """The run failed: close the file and delete it (a Parquet file without its footer is no table)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    # -- internals --------------------------------------------------------------

    def _new_group(self):
        return self._rows(len(self.names.stages), min(self.rows_per_group, len(self.arrivals) + 1))

    def _flush(self, group: "_Rows") -> None:
        if self.path is None:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(rows_frame(group, self.names, self.replication, self.variant),
                                     preserve_index=False)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, table.schema, **parquet_options(table.schema))
        self._writer.write_table(table, row_group_size=max(group.count, 1))
        self._written += group.count

    def _store(self) -> None:
        """The pending rows' summary columns into the compact store and, with ``all``, the rows into the
        file as one row group: one set of arrays read from the rows serves both."""
        group, self._pending = self._pending, self._new_group()
        if group.count:
            self._columns.put(group)
        if self.choice.kind == "all":
            self._flush(group)


def rows_frame(group, names: TableNames, replication: int, variant: str) -> pd.DataFrame:
    """The request table of the rows in ``group`` (a ``row_buffer``), labelled by ``names``: the frame a
    row group of the Parquet file holds, and ``sim.model.collect``'s in-memory table."""
    matrix, each = group.matrix, group.each
    return request_frame(
        replication=replication, ids=each("id", np.int64), source=each("source", np.int64),
        klass=each("klass", np.int64), priority=each("priority", np.int32), arrival=each("arrival", float),
        deadline=each("deadline", float), size=each("size", float), done=each("done", float),
        outcome=each("outcome", np.int8),
        source_names=names.sources, class_names=names.classes, stage_names=names.stages,
        enqueued=matrix("enqueued"), start=matrix("start"), end=matrix("end"),
        device=matrix("instance", np.int64), device_names=names.devices,
        batch=matrix("batch", np.int64) if group.recorded("batch") else None,
        link=matrix("link", np.int64) if group.recorded("link") else None,
        reply_link=each("reply_link", np.int64), link_names=names.links,
        variant=variant, batch_size=matrix("batch_size", np.int64),  # the model's own batch sizes
    )


def row_buffer(compiled: Optional[bool] = None) -> type:
    """The row buffer: ``sim.metrics._rows.CompiledRows`` where built (``compiled=None`` or True), else (or
    with False) ``_Rows``; ``compiled=True`` where it was not built is an error. Either is made with
    ``(stages, capacity)``, takes ended requests with ``add`` and gives their fields as arrays."""
    if compiled is None:
        compiled = COMPILED
    if not compiled:
        return _Rows
    if CompiledRows is None:
        raise RuntimeError("the compiled row buffer (sim/metrics/_rows.pyx) was not built in this installation; "
                           "reinstall with a C compiler (pip install -e .) or use the Python one")
    return CompiledRows


class _ColumnStore:
    """The summary's columns of every request, in arrays as long as the run's arrivals, by request id.

    Requests end in any order; each is stored at its id, so the columns come out in arrival order
    (as the in-memory table has them: the same means to the last bit) without a sort, and the arrays
    written during the run are the columns returned at the end: nothing is concatenated or copied
    when the run ends. The arrays are allocated empty (``numpy.empty``: the operating system gives
    a page memory only when it is first written), so memory grows with the requests stored, not
    with the arrivals still to come.

    Per request: latency (float64), outcome (int8) and per stage a started flag, stored at the id;
    arrival and class are the arrivals' own (``sim.workload.Arrivals``). A stage's wait and service
    times (float64) are kept only for the requests whose service of the stage started (after a
    prefilter most requests start no later stage), packed in id order: they are gathered per block
    of ``block`` ids in an open block, and appended to the stage's packed arrays when every request
    of the block and of the blocks before it has ended. Open blocks are the ids still in flight (a
    request that never ends until the run stops keeps the blocks after it open)."""

    def __init__(self, stages: Sequence[str], size: int, block: int = 1 << 16):
        self.stages, self.size, self.block = tuple(stages), size, block
        self.latency = np.empty(size)
        self.outcome = np.empty(size, dtype=np.int8)
        self.started = tuple(np.empty(size, dtype=bool) for _ in self.stages)
        self.wait = tuple(np.empty(size) for _ in self.stages)  # packed: the started requests' values
        self.service = tuple(np.empty(size) for _ in self.stages)
        self.packed = [0] * len(self.stages)  # per stage, values in wait/service
        self._open: dict[int, list] = {}  # block -> [requests stored, wait (stages, block), service (stages, block)]
        self._next = 0  # the first block not yet packed
        self.count = 0  # requests stored
        self.top = 0  # 1 + the highest id stored

    def put(self, group: "_Rows") -> None:
        n, width = group.count, len(self.stages)
        if not n:
            return
        ids = group.each("id", np.int64)
        if int(ids.min()) < self._next * self.block or int(ids.max()) >= self.size:
            raise ValueError(f"request ids must be 0..{self.size - 1} (the run's arrivals), each stored once; "
                             f"got {int(ids.min())}..{int(ids.max())}")
        arrival = group.each("arrival", float)
        self.latency[ids] = group.each("done", float) - arrival  # as the table's done - arrival
        self.outcome[ids] = group.each("outcome", np.int8)
        start = group.matrix("start").T
        wait = start - group.matrix("enqueued").T
        service = group.matrix("end").T - start
        for j in range(width):
            self.started[j][ids] = ~np.isnan(start[j])
        blocks = ids // self.block
        for k in np.unique(blocks).tolist():
            mine = blocks == k
            at = ids[mine] - k * self.block
            entry = self._open.get(k)
            if entry is None:
                entry = self._open[k] = [0, np.empty((width, self.block)), np.empty((width, self.block))]
            entry[0] += len(at)
            entry[1][:, at], entry[2][:, at] = wait[:, mine], service[:, mine]
        self.count += n
        self.top = max(self.top, int(ids.max()) + 1)
        self._pack(self.size)

    def _pack(self, end: int) -> None:
        """Append, in id order, the blocks whose every request below ``end`` has ended."""
        while self._next in self._open:
            k, first = self._next, self._next * self.block
            length = min(self.block, end - first)
            stored, wait, service = self._open[k]
            if stored < length:
                return
            for j in range(len(self.stages)):
                mask = self.started[j][first:first + length]
                values, at = wait[j, :length][mask], self.packed[j]
                self.wait[j][at:at + len(values)] = values
                self.service[j][at:at + len(values)] = service[j, :length][mask]
                self.packed[j] = at + len(values)
            del self._open[k]
            self._next += 1

    @property
    def nbytes(self) -> int:
        """Bytes of the stored requests' columns and of the open blocks (what is in memory once written)."""
        per_request = self.latency.itemsize + self.outcome.itemsize + len(self.stages)
        packed = sum(self.packed) * (self.latency.itemsize * 2)
        return self.count * per_request + packed + sum(e[1].nbytes + e[2].nbytes for e in self._open.values())

    def columns(self, arrivals) -> RequestColumns:
        """Every stored request in id order: views of the stored arrays and of ``arrivals`` (no copy)."""
        if self.count != self.top:
            raise ValueError(f"request ids are not 0..{self.count - 1}: {self.top - self.count} missing")
        n = self.top
        self._pack(n)
        klass = arrivals.class_of.astype(np.int16 if len(arrivals.class_names) < 2**15 else np.int32)[
            arrivals.source[:n]]
        return RequestColumns(range(n), arrivals.time[:n], klass, tuple(arrivals.class_names),
                              self.outcome[:n], self.latency[:n], self.stages,
                              tuple(a[:n] for a in self.started),
                              tuple(a[:c] for a, c in zip(self.wait, self.packed)),
                              tuple(a[:c] for a, c in zip(self.service, self.packed)))


_SCALARS = ("id", "source", "klass", "priority", "arrival", "deadline", "size", "done", "outcome", "reply_link")
_PER_STAGE = ("enqueued", "start", "end", "instance", "batch", "batch_size", "link")


class _Rows:
    """Ended requests' fields, one flat list per field, appended to as each request ends (a per-stage
    field holds each request's stages in turn), and read as arrays once per row group. The Python twin
    of ``sim.metrics._rows.CompiledRows`` (the same arrays, written in place as each request ends),
    used where that was not built or with ``RequestSink(compiled=False)``.

    Appending a request's values copies them (the model may still write into an ended request's
    lists), and the lists hold plain numbers, which the garbage collector does not track: no object
    per request is kept."""

    def __init__(self, width: int, capacity: int = 0):
        """``capacity``: rows expected (the compiled buffer's first allocation; lists need none)."""
        self.width = width
        self.count = 0
        self.values: dict[str, list] = {name: [] for name in (*_SCALARS, *_PER_STAGE)}
        self.unrecorded: dict[str, int] = dict.fromkeys(_PER_STAGE, 0)  # rows without the field (-1 stored)
        self._arrays: dict[tuple, np.ndarray] = {}
        v = self.values
        self._id, self._source, self._klass, self._priority = v["id"].append, v["source"].append, \
            v["klass"].append, v["priority"].append
        self._arrival, self._deadline, self._size, self._done = v["arrival"].append, v["deadline"].append, \
            v["size"].append, v["done"].append
        self._outcome, self._reply_link = v["outcome"].append, v["reply_link"].append
        self._enqueued, self._start, self._end, self._instance = v["enqueued"].extend, v["start"].extend, \
            v["end"].extend, v["instance"].extend
        self._batch, self._batch_size, self._link = v["batch"].extend, v["batch_size"].extend, v["link"].extend

    @classmethod
    def of(cls, rows: Sequence["_Row"], width: int) -> "_Rows":
        """A group of rows already copied (``_Row``)."""
        group = cls(width)
        for row in rows:
            group.add(row)
        return group

    def add(self, r) -> None:
        """Append request (or ``_Row``) ``r``'s fields."""
        self.count += 1
        self._id(r.id)
        self._source(r.source)
        self._klass(r.klass)
        self._priority(r.priority)
        self._arrival(r.arrival)
        self._deadline(r.deadline)
        self._size(r.size)
        self._done(r.done)
        self._outcome(int(r.outcome))
        self._reply_link(int(getattr(r, "reply_link", -1)))
        self._enqueued(r.enqueued)
        self._start(r.start)
        self._end(r.end)
        self._instance(r.instance)
        batch, batch_size, link = getattr(r, "batch", None), getattr(r, "batch_size", None), getattr(r, "link", None)
        if batch is None or batch_size is None or link is None:  # optional: a row without one records none
            self._without((("batch", batch), ("batch_size", batch_size), ("link", link)))
            return
        self._batch(batch)
        self._batch_size(batch_size)
        self._link(link)

    def _without(self, fields) -> None:
        for name, values in fields:
            if values is None:
                self.unrecorded[name] += 1
                values = (-1,) * self.width
            self.values[name].extend(values)

    def recorded(self, name: str) -> bool:
        """Whether some row has the per-stage field ``name``."""
        return self.unrecorded[name] < self.count

    def matrix(self, attr: str, dtype=float) -> np.ndarray:
        """The per-stage field ``attr``, (rows, width)."""
        key = (attr, dtype)
        found = self._arrays.get(key)
        if found is None:
            found = self._arrays[key] = np.fromiter(self.values[attr], dtype, self.count * self.width).reshape(
                self.count, self.width)
        return found

    def each(self, attr: str, dtype) -> np.ndarray:
        """The field ``attr`` of every row."""
        key = (attr, dtype)
        found = self._arrays.get(key)
        if found is None:
            found = self._arrays[key] = np.fromiter(self.values[attr], dtype, self.count)
        return found


class _Row(NamedTuple):
    """What the table needs of one sampled request (``sample:N``'s reservoir), copied when it ends (the
    model may still write into an ended request's lists)."""

    id: int
    source: int
    klass: int
    priority: int
    arrival: float
    deadline: float
    size: float
    done: float
    outcome: int
    enqueued: tuple
    start: tuple
    end: tuple
    instance: tuple
    batch: Optional[tuple]
    batch_size: Optional[tuple]
    link: Optional[tuple]
    reply_link: int

    @classmethod
    def of(cls, r) -> "_Row":
        batch, batch_size, link = getattr(r, "batch", None), getattr(r, "batch_size", None), getattr(r, "link", None)
        return cls(r.id, r.source, r.klass, r.priority, r.arrival, r.deadline, r.size, r.done, int(r.outcome),
                   tuple(r.enqueued), tuple(r.start), tuple(r.end), tuple(r.instance),
                   tuple(batch) if batch is not None else None,
                   tuple(batch_size) if batch_size is not None else None,
                   tuple(link) if link is not None else None, int(getattr(r, "reply_link", -1)))
