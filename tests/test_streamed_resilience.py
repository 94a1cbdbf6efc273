"""The resilience metrics of a streamed run equal those of the in-memory table, bit for bit.

A small run with GPU outages, retries and a degraded fallback, two classes: its requests are fed to a
``RequestSink`` in the order they ended, with tiny row groups, and the summary read from the sink's
columns (views of arrays filled during the run and of the arrivals) must equal the summary of the
full per-request table: availability, timeouts, retries, fallbacks by reason, degraded latency and
recovery time, for the whole workload and per class.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from sim.metrics.sink import RecordsChoice, RequestSink, TableNames
from sim.metrics.summary import summarise
from sim.model.collect import collect
from sim.model.system import System
from sim.scenario.load import load_scenario_file
from sim.workload import generate_arrivals

FAILING = """
name: failing
hardware:
  pools:
    dpu: {profile: bluefield-3}
    gpu: {profile: a100}
  links:
    - {name: pcie, between: [dpu, gpu], profile: pcie-gen4-x16}
workload:
  sources:
    - {name: cams, kind: poisson, rate: 300/s, class: video, deadline: 50 ms, payload: 10 KB}
    - {name: api, kind: poisson, rate: 100/s, class: api, deadline: 30 ms, payload: 2 KB}
pipeline:
  stages:
    - name: pre
      costs: {dpu: {kind: lognormal, mean: 0.5 ms, cv: 0.3}}
    - name: infer
      costs: {gpu: {kind: lognormal, mean: 2 ms, cv: 0.5}}
policies:
  placement: {strategy: dpu-offload}
failures:
  - {target: gpu, at: 0.3 s, for: 0.25 s}
  - {target: gpu, at: 0.8 s, for: 0.05 s}
resilience:
  health_aware: true
  timeout: 60 ms
  retry: {kind: exponential, attempts: 2, backoff: 15 ms, multiplier: 2, target: other}
  stages:
    infer:
      fallback: {pools: [dpu], costs: {dpu: 1 ms}, degraded: true}
run: {duration: 1.2 s, warmup: 0.1 s, drain: 0.2 s, seed: 3, replications: 1}
"""


def _nan_as_none(metrics: dict[str, float]) -> dict[str, float | None]:
    return {name: None if math.isnan(value) else value for name, value in metrics.items()}


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("failing") / "failing.yaml"
    path.write_text(FAILING)
    plan = load_scenario_file(path).plan("base")
    r = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, r.duration, r.seed, 0, plan.base_dir)
    output = System(plan, arrivals, r.seed, 0).run()
    return plan, arrivals, output


def test_resilience_metrics_from_the_sink_columns_equal_those_of_the_full_table(failing_run, tmp_path):
    plan, arrivals, output = failing_run
    r = plan.scenario.run
    frame, usage = collect(output, 0)
    sink = RequestSink(TableNames.of(plan, arrivals), arrivals, 0, "base", RecordsChoice.parse("all"),
                       tmp_path / "rows.parquet", rows_per_group=37)
    for request in sorted(output.requests, key=lambda q: (q.done if not math.isnan(q.done) else math.inf, q.id)):
        sink.add(request)
    streamed = summarise(sink.close().columns, usage, r.warmup, r.duration)
    in_memory = summarise(frame, usage, r.warmup, r.duration)
    assert _nan_as_none(streamed) == _nan_as_none(in_memory)  # NaN (e.g. a stage whose service failed) as NaN
    # the run exercises what is compared: outages hurt requests, fallbacks answered degraded, per class
    assert 0 < in_memory["availability"] < 1
    assert in_memory["recovery_time"] > 0
    assert in_memory["degraded_rate"] > 0 and in_memory["timeout_rate"] > 0 and "degraded_latency.p99" in in_memory
    assert any(name.startswith("class.api.") and "availability" in name for name in in_memory)
    rows = pd.read_parquet(tmp_path / "rows.parquet").sort_values("id").reset_index(drop=True)
    assert rows["id"].tolist() == list(range(len(arrivals)))


def test_the_streamed_replication_keeps_an_empty_table_with_the_columns(failing_run, tmp_path):
    from sim.experiment import RecordsTarget, simulate_replication

    plan, arrivals, _ = failing_run
    streamed = simulate_replication(plan, 0, records=RecordsTarget(RecordsChoice.parse("none"), tmp_path),
                                    variant="base")
    assert streamed.metrics["availability"] < 1 and streamed.records is None
    assert len(streamed.frame) == 0
    assert list(streamed.frame.columns) == ["replication", "id", "arrival", "class", "outcome", "latency"]
    assert list(streamed.frame["class"].cat.categories) == list(arrivals.class_names)


def test_a_run_streamed_as_it_goes_summarises_as_the_same_run_kept_in_memory(failing_run, tmp_path):
    """The sink takes each request's row when it ends; a request whose client gave up may still be served
    later (its jobs were queued), and that service must not reach its row in memory either, or the two
    paths' stage waits and service times differ."""
    plan, arrivals, output = failing_run
    r = plan.scenario.run
    frame, usage = collect(output, 0)
    sink = RequestSink(TableNames.of(plan, arrivals), arrivals, 0, "base", RecordsChoice.parse("all"),
                       tmp_path / "rows.parquet", rows_per_group=37)
    System(plan, arrivals, r.seed, 0, sink=sink).run()
    streamed = summarise(sink.close().columns, usage, r.warmup, r.duration)
    in_memory = summarise(frame, usage, r.warmup, r.duration)
    assert _nan_as_none(streamed) == _nan_as_none(in_memory)
    timed_out = frame[frame["outcome"] == "timed_out"]
    assert len(timed_out) > 0
    # no stage of a timed-out request started after its client gave up
    starts = timed_out[[c for c in frame.columns if c.endswith("__start")]]
    assert (starts.max(axis=1).fillna(-1.0) <= timed_out["done"]).all()
