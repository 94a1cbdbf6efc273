"""A streamed run holds what is in flight plus compact columns, whatever its simulated duration.

Counts, not times: how many ``Request`` objects are alive during a run (sampled at the
progress steps) must not grow with the simulated duration, and the summary's column store
must hold a fixed number of bytes per request. The store puts each request at its id, so
the columns come out in arrival order whatever order requests end in, and the summary read
from them equals the summary of the full table bit for bit.
"""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest

from sim.metrics.columns import RequestColumns
from sim.metrics.sink import RecordsChoice, RequestSink, TableNames, _ColumnStore, _Row, _Rows
from sim.metrics.summary import summarise
from sim.model.collect import collect
from sim.model.request import Request
from sim.model.system import System
from sim.scenario.load import load_scenario_file
from sim.workload import Arrivals, generate_arrivals

SCENARIO = """\
name: bounded
hardware:
  pools:
    cpu: {profile: host-cpu, servers: 2}
    gpu: {profile: a100}
  links:
    - {name: pcie, between: [cpu, gpu], profile: pcie-gen4-x16}
workload:
  sources:
    - {name: reqs, kind: poisson, rate: 400/s, payload: 10 KB, deadline: 20 ms}
pipeline:
  stages:
    - {name: pre, pass_probability: 0.8, costs: {cpu: {kind: exponential, mean: 2 ms}}}
    - {name: infer, costs: {gpu: {kind: deterministic, value: 3 ms}}}
policies:
  placement: {strategy: cpu-path}
  batching: {infer: {kind: dynamic, max_batch: 4, max_delay: 2 ms}}
run: {duration: 1 s, warmup: 0.2 s, drain: 0.2 s, seed: 5, replications: 1}
"""


def _plan(tmp_path, duration: float):
    path = tmp_path / "bounded.yaml"
    path.write_text(SCENARIO)
    return load_scenario_file(path, [f"run.duration={duration} s"]).plan("base")


def _live_requests() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is Request)


def _peak_live(plan, tmp_path) -> tuple[int, int, int]:
    """Peak live Request objects during a streamed run, the arrivals, and the store's bytes at the end."""
    r = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, r.duration, r.seed, 0)
    sink = RequestSink(TableNames.of(plan, arrivals), arrivals, 0, "base", RecordsChoice.parse("none"), None,
                       rows_per_group=256)
    peak, calls = [0], [0]
    gc.collect()
    before = _live_requests()  # held by earlier tests' fixtures, not by this run

    def progress(_fraction: float) -> None:  # 50 calls; count at every fifth (a scan of every object)
        calls[0] += 1
        if calls[0] % 5 == 0:
            peak[0] = max(peak[0], _live_requests() - before)

    System(plan, arrivals, r.seed, 0, sink=sink).run(progress)
    stored = sink._columns.nbytes
    sink.close()
    return peak[0], len(arrivals), stored


def test_live_requests_do_not_grow_with_the_simulated_duration(tmp_path):
    short_peak, short_n, _ = _peak_live(_plan(tmp_path, 1), tmp_path)
    long_peak, long_n, _ = _peak_live(_plan(tmp_path, 5), tmp_path)
    assert long_n > 4 * short_n  # five times the requests ...
    assert long_peak <= 2 * short_peak + 20  # ... but no more alive at once than in flight
    assert long_peak < long_n / 20


def test_the_column_store_holds_a_fixed_number_of_bytes_per_request():
    """9 + stages bytes per request, and 16 per stage a request started (every fifth skips the last)."""
    stages = ("a", "b", "c")
    store = _ColumnStore(stages, 10_000, block=100)
    for n in (100, 1000, 10_000):
        store.put(_Rows.of([_row(i, len(stages)) for i in range(store.top, n)], len(stages)))
        started = 3 * n - n // 5
        assert store.nbytes == n * (8 + 1 + 3) + started * 16  # whole blocks: none left open
        assert store.packed == [n, n, n - n // 5]


def test_a_block_is_packed_once_every_request_before_its_end_has_ended():
    store = _ColumnStore(("a", "b"), 30, block=10)
    store.put(_Rows.of([_row(i, 2) for i in range(1, 20)], 2))  # request 0 is still in flight: nothing packed
    assert store.packed == [0, 0] and len(store._open) == 2
    store.put(_Rows.of([_row(0, 2)], 2))  # both blocks pack, in id order
    assert store.packed == [20, 20 - 4] and not store._open
    with pytest.raises(ValueError, match="each stored once"):
        store.put(_Rows.of([_row(5, 2)], 2))


def _arrivals(rows) -> Arrivals:
    """The arrivals the rows came from (two sources, one class each)."""
    return Arrivals(time=np.array([r.arrival for r in rows]), source=np.array([r.source for r in rows], np.int16),
                    source_names=("s0", "s1"), class_names=("x", "y"), class_of=np.array([0, 1], np.int32),
                    priority_of=np.zeros(2, np.int32), deadline_of=np.full(2, math.inf), payload_of=np.ones(2))


def test_columns_come_out_in_id_order_whatever_order_requests_end_in():
    width = 2
    rows = [_row(i, width) for i in range(50)]
    order = np.random.default_rng(3).permutation(50)
    store = _ColumnStore(("a", "b"), 50, block=8)
    for start in range(0, 50, 7):  # batches of 7, in a shuffled order, across blocks
        store.put(_Rows.of([rows[i] for i in order[start:start + 7]], width))
    arrivals = _arrivals(rows)
    columns = store.columns(arrivals)
    assert list(columns.ids) == list(range(50))
    assert list(columns.arrival) == [r.arrival for r in rows]
    assert list(columns.klass) == [r.klass for r in rows] and columns.class_names == ("x", "y")
    assert list(columns.latency) == [r.done - r.arrival for r in rows]
    assert list(columns.outcome) == [r.outcome for r in rows]
    assert list(columns.started[1]) == [not math.isnan(r.start[1]) for r in rows]
    started = [r for r in rows if not math.isnan(r.start[1])]  # wait and service: of these, in id order
    assert list(columns.wait[1]) == [r.start[1] - r.enqueued[1] for r in started]
    assert list(columns.service[1]) == [r.end[1] - r.start[1] for r in started]
    assert list(columns.wait[0]) == [r.start[0] - r.enqueued[0] for r in rows]
    window = columns.window(10, 30)  # views; the packed values of rows 10..29
    assert list(window.wait[1]) == [r.start[1] - r.enqueued[1] for r in started if 10 <= r.arrival < 30]
    assert np.shares_memory(window.wait[1], columns.wait[1])
    picked = columns.rows((columns.arrival >= 10) & (columns.arrival < 30))  # a mask (rows in any order) ...
    for mine, theirs in zip((*picked.wait, *picked.service, *picked.started), (*window.wait, *window.service,
                                                                              *window.started)):
        assert list(mine) == list(theirs)  # ... picks the same rows and packed values
    assert list(picked.ids) == list(window.ids) == list(range(10, 30))
    # the end of the run copies nothing: the columns are the arrays written while it ran, and the arrivals'
    assert np.shares_memory(columns.latency, store.latency) and np.shares_memory(columns.wait[1], store.wait[1])
    assert np.shares_memory(columns.arrival, arrivals.time)


def test_a_missing_request_is_an_error_not_a_gap():
    store = _ColumnStore(("a",), 8)
    store.put(_Rows.of([_row(i, 1) for i in (0, 1, 3)], 1))
    with pytest.raises(ValueError, match="missing"):
        store.columns(_arrivals([_row(i, 1) for i in range(8)]))


def test_a_request_beyond_the_arrivals_is_an_error():
    store = _ColumnStore(("a",), 8)
    with pytest.raises(ValueError, match="0..7"):
        store.put(_Rows.of([_row(8, 1)], 1))


def test_summary_of_the_sink_columns_equals_the_summary_of_the_full_table(tmp_path):
    plan = _plan(tmp_path, 1)
    r = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, r.duration, r.seed, 0)
    output = System(plan, arrivals, r.seed, 0).run()
    frame, usage = collect(output, 0)
    sink = RequestSink(TableNames.of(plan, arrivals), arrivals, 0, "base", RecordsChoice.parse("none"), None,
                       rows_per_group=5)
    for request in reversed(output.requests):  # the opposite of arrival order
        sink.add(request)
    columns = sink.close().columns
    assert summarise(columns, usage, r.warmup, r.duration) == summarise(frame, usage, r.warmup, r.duration)
    from_frame = RequestColumns.of_frame(frame)
    assert np.array_equal(columns.latency, from_frame.latency, equal_nan=True)
    for mine, theirs in zip(columns.wait, from_frame.wait):
        assert np.array_equal(mine, theirs, equal_nan=True)


def _row(i: int, width: int) -> _Row:
    """A request that ended: stage j started (except every fifth request's last stage)."""
    skipped = i % 5 == 0
    start = tuple(math.nan if skipped and j == width - 1 else i + 0.25 + j for j in range(width))
    return _Row(i, i % 2, i % 2 if width == 2 else 0, 0, float(i), math.inf, 1.0, i + 1.5, i % 4,
                tuple(i + 0.125 + j for j in range(width)), start, tuple(s + 0.5 for s in start),
                (0,) * width, None, None, None, -1)


def test_arrivals_hold_a_time_and_a_source_per_request_and_give_the_same_fields(tmp_path):
    from sim.scenario.schema import Workload

    workload = Workload.model_validate({"sources": [
        {"name": "cams", "kind": "periodic", "streams": 8, "rate": "25/s", "jitter": "2 ms", "payload": "33 KB",
         "deadline": "100 ms", "class": "video"},
        {"name": "api", "kind": "poisson", "rate": "200/s", "payload": "1 KB", "priority": 2}]})
    arrivals = generate_arrivals(workload, 2.0, seed=3)
    assert arrivals.sizes is None  # no trace sizes: nothing per request beyond time and source
    assert arrivals.time.nbytes + arrivals.source.nbytes == len(arrivals) * 10
    whole = (arrivals.source, arrivals.klass, arrivals.priority, arrivals.time, arrivals.deadline, arrivals.size)
    for i in range(len(arrivals)):
        assert arrivals.request(i) == tuple(column[i] for column in whole)
    assert set(np.unique(arrivals.priority)) == {0, 2} and np.isinf(arrivals.deadline).sum() > 0
