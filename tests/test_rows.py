"""The request sink's row buffers (sim.metrics.sink): the compiled one (sim/metrics/_rows.pyx) and the
Python one give the same arrays, bit for bit, for any rows, and a sink writes the same Parquet bytes and
the same summary columns with either; an installation that lacks the compiled buffer says so when asked
for it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.metrics import sink as sink_module
from sim.metrics.sink import COMPILED, RecordsChoice, RequestSink, TableNames, _Row, _Rows, row_buffer
from sim.model.request import Outcome
from sim.model.system import System
from sim.scenario.builtin import scenario_path
from sim.scenario.load import load_scenario_file
from sim.workload import generate_arrivals

needs_compiled = pytest.mark.skipif(not COMPILED, reason="sim/metrics/_rows.pyx was not built here (no C compiler "
                                    "at install, or DGSIM_PURE_PYTHON=1); the Python row buffer is used")

SCALARS = ("id", "source", "klass", "priority", "arrival", "deadline", "size", "done", "outcome", "reply_link")
INT_TYPES = {"id": np.int64, "source": np.int64, "klass": np.int64, "priority": np.int32, "outcome": np.int8,
             "reply_link": np.int64}
PER_STAGE_TIMES = ("enqueued", "start", "end")
PER_STAGE_CODES = ("instance", "batch", "batch_size", "link")

times = st.floats(allow_nan=True, allow_infinity=True, width=64)
codes = st.integers(-1, 2**62)


@st.composite
def rows(draw):
    width = draw(st.integers(1, 6))
    count = draw(st.integers(0, 40))

    def per_stage(values, optional=False):
        if optional and draw(st.booleans()) and draw(st.booleans()):
            return None
        return tuple(draw(st.lists(values, min_size=width, max_size=width)))

    made = [_Row(draw(codes), draw(st.integers(0, 100)), draw(st.integers(0, 10)), draw(st.integers(-5, 5)),
                 draw(times), draw(times), draw(times), draw(times), int(draw(st.sampled_from(list(Outcome)))),
                 per_stage(times), per_stage(times), per_stage(times), per_stage(codes),
                 per_stage(codes, True), per_stage(codes, True), per_stage(codes, True), draw(codes))
            for _ in range(count)]
    return width, made, draw(st.integers(1, 8))  # and a first capacity (the buffer grows past it)


def _arrays(group) -> dict:
    found = {name: group.each(name, INT_TYPES.get(name, float)) for name in SCALARS}
    found.update({name: group.matrix(name) for name in PER_STAGE_TIMES})
    found.update({name: group.matrix(name, np.int64) for name in PER_STAGE_CODES})
    found.update({f"recorded {name}": group.recorded(name) for name in (*PER_STAGE_TIMES, *PER_STAGE_CODES)})
    found["count"] = group.count
    return found


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
            assert a[name].tobytes() == b[name].tobytes(), name  # bit for bit (NaNs included)
        else:
            assert a[name] == b[name], name


@needs_compiled
@settings(max_examples=150, deadline=None)
@given(rows())
def test_the_compiled_buffer_gives_the_python_buffers_arrays(case):
    width, made, capacity = case
    python, compiled = _Rows(width), row_buffer(True)(width, capacity)
    for row in made:
        python.add(row)
        compiled.add(row)
    _same(_arrays(compiled), _arrays(python))
    _same(_arrays(row_buffer(True).of(made, width)), _arrays(_Rows.of(made, width)))


def test_the_python_buffer_keeps_each_rows_values():
    row = _Row(7, 1, 2, 3, 0.5, 1.5, 100.0, 0.75, 0, (0.1, 0.2), (0.2, math.nan), (0.3, math.nan), (4, -1),
               None, (2, -1), (1, -1), 5)
    group = _Rows.of([row], 2)
    assert group.each("id", np.int64).tolist() == [7] and group.each("done", float).tolist() == [0.75]
    assert group.matrix("instance", np.int64).tolist() == [[4, -1]]
    assert group.matrix("batch", np.int64).tolist() == [[-1, -1]]  # no batches: -1 stored, and said
    assert not group.recorded("batch") and group.recorded("link")


def test_asking_for_the_compiled_buffer_where_it_was_not_built_is_an_error(monkeypatch):
    monkeypatch.setattr(sink_module, "CompiledRows", None)
    with pytest.raises(RuntimeError, match=r"_rows\.pyx\) was not built"):
        row_buffer(True)
    assert row_buffer(False) is _Rows


@needs_compiled
@pytest.mark.parametrize("choice", ["all", "sample:50"])
def test_a_sink_writes_the_same_bytes_with_either_buffer(tmp_path, choice):
    """The seed scenario's DPU variant (prefilter, batching, links) for two simulated seconds."""
    plan = load_scenario_file(scenario_path("video-analytics-64"), ["run.duration=2 s"]).plan("dpu-offload")
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir)
    results = {}
    for compiled in (False, True):
        sink = RequestSink(TableNames.of(plan, arrivals), arrivals, 0, "dpu-offload", RecordsChoice.parse(choice),
                           tmp_path / f"{compiled}.parquet", seed=11, rows_per_group=37, compiled=compiled)
        System(plan, arrivals, run.seed, 0, sink=sink).run()
        results[compiled] = sink.close()
    python, compiled = results[False], results[True]
    assert python.written == compiled.written > 0
    assert python.path.read_bytes() == compiled.path.read_bytes()
    for name in ("latency", "outcome", "started", "wait", "service"):
        a, b = getattr(python.columns, name), getattr(compiled.columns, name)
        a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
        assert [x.tobytes() for x in a] == [x.tobytes() for x in b], name
