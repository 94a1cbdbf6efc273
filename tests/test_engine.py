"""The event engine (sim.model.engine.Engine) against SimPy's own Environment.

Engine's timers and loop must leave events in exactly the order SimPy would
(the model's results depend on that order at equal times), stop a run where
SimPy's ``run(until=t)`` stops, and still run SimPy processes and crash on a
failed event.
"""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.model.engine import Engine
from sim.model.heap import COMPILED

# each engine test runs on both heaps: the compiled one (where it was built) and heapq's
HEAPS = [pytest.param(True, id="compiled-heap",
                      marks=pytest.mark.skipif(not COMPILED, reason="sim/model/_heap.pyx was not built here")),
         pytest.param(False, id="python-heap")]
# a delay drawn from few values, so many events share a time (ties are where order matters)
delays = st.sampled_from([0.0, 0.0, 0.25, 0.5, 1.0, 1.5])


def _trace(env: simpy.Environment, plan: list[tuple[float, list[float]]], stops: list[float], timer) -> list:
    """Run ``plan`` (each entry: a first delay, then the delays of the timers its callback sets) and a
    process, in ``env``, with ``run(until=...)`` at each of ``stops``; the (time, label) of every callback."""
    seen: list = []

    def fire(label: str, follow: list[float]):
        def callback(_event) -> None:
            seen.append((env.now, label))
            for k, delay in enumerate(follow):
                timer(env, delay, fire(f"{label}.{k}", []))
        return callback

    def process():
        for k in range(4):
            yield env.timeout(0.5)
            seen.append((env.now, f"process {k}"))
            if k == 1:
                env.process(child())

    def child():
        seen.append((env.now, "child"))
        yield env.timeout(0.0)
        seen.append((env.now, "child done"))

    for i, (first, follow) in enumerate(plan):
        timer(env, first, fire(str(i), follow))
    env.process(process())
    for stop in stops:
        if stop > env.now:
            env.run(until=stop)
            seen.append((env.now, "stopped"))
    env.run()
    seen.append((env.now, "end"))
    return seen


def _simpy_timer(env, delay, callback):
    env.timeout(delay).callbacks.append(callback)


def _engine_timer(env, delay, callback):
    env.call_after(delay, callback, "no event: the timer's argument")


@settings(max_examples=60, deadline=None)
@given(plan=st.lists(st.tuples(delays, st.lists(delays, max_size=3)), max_size=12),
       stops=st.lists(st.sampled_from([0.25, 0.5, 1.0, 1.2, 2.0, 2.5]), max_size=3).map(sorted))
def test_events_come_in_simpys_order_and_runs_stop_where_simpys_do(plan, stops):
    expected = _trace(simpy.Environment(), plan, stops, _simpy_timer)
    for compiled in [True, False] if COMPILED else [False]:
        assert _trace(Engine(compiled=compiled), plan, stops, _engine_timer) == expected
        # SimPy timeouts on an Engine interleave with its timers exactly as well
        assert _trace(Engine(compiled=compiled), plan, stops, _simpy_timer) == expected


@pytest.mark.parametrize("compiled", HEAPS)
def test_the_clock_after_run_until_is_simpys_even_where_now_plus_delay_rounds(compiled):
    engine, reference = Engine(compiled=compiled), simpy.Environment()
    for env in (engine, reference):
        env.run(until=0.2)
        env.run(until=0.7000000000000001)  # 0.2 + (0.7000000000000001 - 0.2) is 0.7
    assert engine.now == reference.now and engine.now != 0.7000000000000001


@pytest.mark.parametrize("compiled", HEAPS)
def test_a_failed_event_still_crashes_the_run(compiled):
    env = Engine(compiled=compiled)

    def broken():
        yield env.timeout(1.0)
        raise RuntimeError("device model bug")

    env.process(broken())
    with pytest.raises(RuntimeError, match="device model bug"):
        env.run(until=5.0)


def test_a_timer_cannot_be_set_in_the_past():
    with pytest.raises(ValueError, match="negative delay"):
        Engine().call_after(-1e-9, print)


@pytest.mark.parametrize("compiled", HEAPS)
def test_run_until_a_time_not_in_the_future_is_refused_as_simpy_refuses_it(compiled):
    env = Engine(compiled=compiled)
    env.run(until=1.0)
    with pytest.raises(ValueError, match="must be greater"):
        env.run(until=1.0)


@pytest.mark.parametrize("compiled", HEAPS)
def test_a_timer_calls_its_function_with_its_arguments_at_its_time(compiled):
    env, calls = Engine(compiled=compiled), []
    env.call_after(2.0, lambda *args: calls.append((env.now, args)), "b", 2)
    env.call_after(1.0, lambda *args: calls.append((env.now, args)))
    env.run()
    assert calls == [(1.0, ()), (2.0, ("b", 2))]


def test_an_ideal_link_passes_a_message_through_at_once_and_records_it(tmp_path):
    """tests/scenarios/tandem.yaml joins its stations by an ideal link (FIFO, no overhead, no latency) and
    sends 0 B: each request reaches the second station the instant the first ends, and its row names the
    link it crossed, the same in memory and streamed (the link is recorded before the message arrives)."""
    from pathlib import Path

    import pandas as pd

    from sim.experiment import RecordsTarget, run_replication, simulate_replication
    from sim.metrics.records import column
    from sim.metrics.sink import RecordsChoice
    from sim.plan import compile_plan
    from sim.scenario.load import load_scenario_file

    path = Path(__file__).parent / "scenarios" / "tandem.yaml"
    plan = compile_plan(load_scenario_file(path, ["run.duration=2 s"]).resolve("base"), str(path), path.parent)
    frame, _ = run_replication(plan, 0)
    served = frame[frame["outcome"] == "completed"]
    assert len(served) > 500
    assert (served[column("two", "enqueued")] == served[column("one", "end")]).all()
    assert (served[column("two", "link")] == "ideal").all()
    assert served[column("one", "link")].isna().all()  # from the client: no client link declared
    streamed = simulate_replication(plan, 0, records=RecordsTarget(RecordsChoice.parse("all"), tmp_path), variant="v")
    rows = pd.read_parquet(streamed.records)
    def links(table):
        return list(table[column("two", "link")].astype(object).fillna("none"))

    assert links(rows) == links(frame)
