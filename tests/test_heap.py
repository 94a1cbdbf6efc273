"""The engine's event heaps (sim.model.heap): the compiled one and heapq's pop the same entries in the
same order as sorting them would, through any mix of pushes and pops, so a run is the same bytes on
either; an installation that lacks the compiled heap says so when asked for it."""

from __future__ import annotations

import heapq

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.model import heap
from sim.model.heap import COMPILED, PythonHeap, new_heap

needs_compiled = pytest.mark.skipif(not COMPILED, reason="sim/model/_heap.pyx was not built here (no C compiler "
                                                         "at install, or DGSIM_PURE_PYTHON set)")

# few distinct times and both priorities, so most comparisons fall through to the priority or the id
times = st.sampled_from([0.0, 0.0, 0.1, 0.1 + 0.2, 0.3, 1.0, 2.5, float("inf")])
operations = st.lists(st.one_of(st.tuples(st.just("push"), times, st.sampled_from([0, 1]), st.booleans()),
                                st.just(("pop",))), max_size=400)


def _replay(target, ops) -> list:
    """Apply ``ops`` to a heap (push: an event entry or a timer entry, ids in push order, as the engine's
    counter gives them); the popped entries, then the rest popped in turn."""
    popped, ids = [], 0
    for op in ops:
        if op[0] == "push":
            _, time, priority, timer = op
            ids += 1
            target.push((time, priority, ids, print, ()) if timer else (time, priority, ids, "event"))
        elif len(target):
            popped.append(target.pop())
    while len(target):
        popped.append(target.pop())
    return popped


def _heapq_reference(ops) -> list:
    entries: list = []

    class Reference:
        push = staticmethod(lambda entry: heapq.heappush(entries, entry))
        pop = staticmethod(lambda: heapq.heappop(entries))
        __len__ = staticmethod(lambda: len(entries))

    reference = Reference()
    return _replay(reference, ops)


@settings(max_examples=200, deadline=None)
@given(ops=operations)
def test_the_python_heap_pops_in_heapq_order(ops):
    assert _replay(PythonHeap(), ops) == _heapq_reference(ops)


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(ops=operations)
def test_the_compiled_heap_pops_the_same_entries_in_the_same_order(ops):
    expected = _heapq_reference(ops)
    popped = _replay(new_heap(compiled=True), ops)
    assert [e[2] for e in popped] == [e[2] for e in expected]
    assert all(a is b or a == b for a, b in zip(popped, expected))


@needs_compiled
def test_the_compiled_heap_grows_past_its_first_block_and_peeks_the_first_time():
    compiled = new_heap(compiled=True)
    assert compiled.first_time() == float("inf")
    for i in range(5000):  # (starts with room for 256)
        compiled.push(((i * 7919) % 5003 / 10.0, 1, i, "event"))
    assert len(compiled) == 5000 and compiled.first_time() == 0.0
    times = [compiled.pop()[0] for _ in range(5000)]
    assert times == sorted(times) and len(compiled) == 0
    with pytest.raises(IndexError):
        compiled.pop()


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=needs_compiled), False])
def test_run_stops_before_the_first_entry_after_the_urgent_stop_and_dispatches_events(compiled):
    class Clock:
        now = 0.0

    target, calls = new_heap(compiled=compiled), []
    target.push((1.0, 1, 1, lambda *a: calls.append(("timer", a)), ("x", 2)))
    target.push((1.0, 1, 5, "an event", ))
    target.push((2.0, 0, 3, lambda: calls.append("at the stop, urgent, before it"), ()))
    target.push((2.0, 0, 9, lambda: calls.append("at the stop, urgent, after it"), ()))
    target.push((2.0, 1, 4, lambda: calls.append("at the stop, normal"), ()))
    clock = Clock()
    target.run(clock, 2.0, 7, lambda event: calls.append(("dispatched", event, clock.now)))
    assert calls == [("timer", ("x", 2)), ("dispatched", "an event", 1.0), "at the stop, urgent, before it"]
    assert clock.now == 2.0 and len(target) == 2


def test_asking_for_the_compiled_heap_where_it_was_not_built_is_an_error(monkeypatch):
    monkeypatch.setattr(heap, "CompiledHeap", None)
    with pytest.raises(RuntimeError, match="not built"):
        new_heap(compiled=True)
    assert isinstance(new_heap(compiled=False), PythonHeap)


@needs_compiled
@pytest.mark.parametrize("name, variant", [("video-analytics-failover.yaml", "dpu-fallback"),
                                           ("edge-cloud.yaml", "local-first")])
def test_a_whole_run_is_the_same_on_either_heap(monkeypatch, name, variant):
    """Failures (SimPy processes), retries, links and batching: every request's row and every metric."""
    from functools import partial
    from pathlib import Path

    import pandas as pd

    from sim.experiment import run_replication
    from sim.model import system
    from sim.model.engine import Engine
    from sim.plan import compile_plan
    from sim.scenario.load import load_scenario_file

    path = Path(__file__).parent.parent / "scenarios" / name
    plan = compile_plan(load_scenario_file(path, ["run.duration=3 s"]).resolve(variant), str(path), path.parent)
    frame, metrics = run_replication(plan, 0)
    monkeypatch.setattr(system, "Engine", partial(Engine, compiled=False))
    python_frame, python_metrics = run_replication(plan, 0)
    assert len(frame) > 1000
    pd.testing.assert_frame_equal(frame, python_frame)
    assert metrics == python_metrics
