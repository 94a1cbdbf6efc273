"""Streamed records: the model hands each request to a sink when it ends, and results do not change.

``dgsim run`` keeps only the requests in flight (plus compact summary columns) while it simulates;
the per-request rows go to Parquet row groups as requests end. The metrics must be exactly those of
the in-memory path, and the rows the same rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.experiment import RecordsTarget, simulate_replication
from sim.metrics.sink import RecordsChoice
from sim.model.system import System
from sim.scenario.builtin import scenario_path
from sim.scenario.load import load_scenario_file
from sim.workload import generate_arrivals


def plan(variant: str = "dpu-offload"):
    scenario = load_scenario_file(scenario_path(None), ["run.replications=1", "run.duration=3 s"])
    return scenario.plan(variant)


@pytest.mark.slow  # simulates both variants twice
def test_streamed_metrics_and_rows_equal_the_in_memory_ones(tmp_path: Path) -> None:
    for variant in ("cpu-path", "dpu-offload"):
        p = plan(variant)
        memory = simulate_replication(p, 0)
        streamed = simulate_replication(p, 0, records=RecordsTarget(RecordsChoice.parse("all"), tmp_path),
                                        variant=variant)
        assert streamed.metrics == memory.metrics
        rows = pd.read_parquet(streamed.records).sort_values("id").reset_index(drop=True)
        expected = memory.frame.reset_index(drop=True)
        assert len(rows) == len(expected)
        for name in ("id", "arrival", "done", "outcome", "infer__start", "infer__device", "infer__batch"):
            pd.testing.assert_series_equal(rows[name], expected[name], check_categorical=False, check_names=False)


def test_with_a_sink_every_request_is_handed_over_once_and_none_is_kept() -> None:
    p = plan()
    run = p.scenario.run
    arrivals = generate_arrivals(p.scenario.workload, run.duration, run.seed, 0)

    class Counting:
        """A sink that only counts, and watches how many requests the model still holds."""

        def __init__(self):
            self.ended = 0

        def add(self, request) -> None:
            self.ended += 1

    sink = Counting()
    output = System(p, arrivals, run.seed, 0, sink=sink).run()
    assert output.requests == []  # nothing kept beyond the run
    assert sink.ended == len(arrivals)  # every arrival handed over exactly once


ZERO_TIME_LINKS = """
name: zero-time-links
hardware:
  pools:
    first: {profile: bluefield-3, cores: 1}
    second: {profile: a100, streams: 1}
  links:
    - {name: ideal, between: [first, second], kind: pcie, bandwidth: 1e9 GB/s, latency: 0 s}
    - {name: front, between: [client, first], kind: tcp, bandwidth: 1e9 GB/s, latency: 0 s}
    - {name: back, between: [client, second], kind: tcp, bandwidth: 1e9 GB/s, latency: 0 s}
workload:
  sources:
    - {name: arrivals, kind: poisson, rate: 200/s, payload: 0 B}
pipeline:
  stages:
    - name: one
      costs: {dpu: {kind: exponential, mean: 1 ms}}
    - name: two
      costs: {gpu: {kind: exponential, mean: 1.25 ms}}
run: {duration: 0.5 s, warmup: 0.1 s, drain: 0.5 s, seed: 1, replications: 1}
"""


def test_a_reply_over_a_link_that_takes_no_time_keeps_its_link_in_streamed_rows(tmp_path: Path) -> None:
    # a message that takes no time must not be delivered (and the request ended and handed to the
    # sink) before the sender has recorded which link it took
    path = tmp_path / "zero.yaml"
    path.write_text(ZERO_TIME_LINKS)
    p = load_scenario_file(path).plan("base")
    memory = simulate_replication(p, 0)
    streamed = simulate_replication(p, 0, records=RecordsTarget(RecordsChoice.parse("all"), tmp_path), variant="v")
    rows = pd.read_parquet(streamed.records).sort_values("id").reset_index(drop=True)
    expected = memory.frame.reset_index(drop=True)
    assert (expected["reply_link"] == "back").all()
    for name in ("reply_link", "one__link", "two__link"):
        pd.testing.assert_series_equal(rows[name], expected[name], check_categorical=False, check_names=False)


def test_requests_that_end_while_their_merged_message_leaves_are_recorded(tmp_path: Path) -> None:
    # video-analytics-64 merges the jobs of a batch into one message; with every DPU-GPU link down, the
    # merged message fails as it leaves and its requests end there, before it has picked a link
    down = "{at: 0.5 s, for: 0.3 s}"
    overrides = ["run.replications=1", "run.duration=1.2 s", "run.warmup=0.2 s", "run.drain=0.5 s",
                 "failures=[" + ", ".join("{target: %s, %s" % (link, down[1:])
                                          for link in ("rdma", "dpu-shm", "dpu-grpc")) + "]"]
    scenario = load_scenario_file(scenario_path(None), overrides)
    p = scenario.plan("dpu-offload")
    assert p.scenario.policies.channel.merge
    streamed = simulate_replication(p, 0, records=RecordsTarget(RecordsChoice.parse("all"), tmp_path),
                                    variant="dpu-offload")
    rows = pd.read_parquet(streamed.records)
    assert (rows["outcome"] == "failed").any()
    assert len(rows) > 0 and streamed.metrics


TIMEOUT_MEETS_MERGE = """
name: timeout-meets-merge
hardware:
  pools:
    first: {profile: bluefield-3, cores: 1}
    second: {profile: a100, streams: 1}
  links:
    - {name: wire, between: [first, second], kind: pcie, bandwidth: 10 GB/s, latency: 0 s}
workload:
  sources:
    - {name: arrivals, kind: periodic, rate: 100/s, payload: 1 KB}
pipeline:
  stages:
    - name: one
      costs: {dpu: {kind: deterministic, value: 1 ms}}
    - name: two
      costs: {gpu: {kind: deterministic, value: 0.5 ms}}
policies:
  channel: {kind: fixed, use: pcie, merge: true}
resilience:
  timeout: 1 ms
run: {duration: 0.5 s, warmup: 0.1 s, drain: 0.2 s, seed: 1, replications: 1}
"""


def test_a_client_timeout_while_a_merged_message_waits_to_leave_is_recorded(tmp_path: Path) -> None:
    # stage one ends exactly when the client gives up: the request ends between the merge and the flush
    path = tmp_path / "timeout.yaml"
    path.write_text(TIMEOUT_MEETS_MERGE)
    p = load_scenario_file(path).plan("base")
    streamed = simulate_replication(p, 0, records=RecordsTarget(RecordsChoice.parse("all"), tmp_path), variant="v")
    rows = pd.read_parquet(streamed.records)
    assert (rows["outcome"] == "timed_out").all() and len(rows) > 10
    assert rows["two__link"].isna().all()  # the message never left for them
