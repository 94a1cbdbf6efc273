"""Failures in the simulator: what happens to work on a device or link that goes down.

- availability of one server with exponential up and down times equals
  MTBF / (MTBF + MTTR) (Poisson arrivals see time averages) within the
  replications' 95% confidence interval;
- a scheduled outage fails exactly the requests that reach the device
  while it is down, and those it held when it failed; none is lost;
- retries, a fallback (degraded answers), requeueing and link failures
  each end every arrival in exactly one outcome;
- a scenario with empty ``failures`` and ``resilience`` compiles to a plan
  without either, so the model runs exactly as before.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.contract.outcomes import LABELS
from sim.experiment import run_replication
from sim.metrics.summary import estimate
from sim.plan import compile_plan
from sim.scenario.errors import ScenarioError
from sim.scenario.schema import Scenario


def scenario(**extra) -> Scenario:
    document = {
        "name": "failing",
        "hardware": {"pools": {"dpu": {"profile": "bluefield-3"}, "gpu": {"profile": "a100", "streams": 1, "count": 2}},
                     "links": [{"name": "rdma", "between": ["dpu", "gpu"], "profile": "roce-200g"}]},
        "workload": {"sources": [{"name": "cams", "kind": "poisson", "rate": "400/s", "payload": "10 KB",
                                  "deadline": "200 ms"}]},
        "pipeline": {"stages": [
            {"name": "pre", "costs": {"dpu": "1 ms"}},
            {"name": "infer", "costs": {"gpu": {"kind": "exponential", "mean": "2 ms"}}},
            {"name": "post", "costs": {"dpu": "0.5 ms"}},
        ]},
        "policies": {"placement": {"strategy": "explicit", "map": {"pre": "dpu", "infer": "gpu", "post": "dpu"}}},
        "run": {"duration": "3 s", "warmup": "0.5 s", "drain": "1 s", "replications": 1, "seed": 3},
    }
    document.update(extra)
    return Scenario.model_validate(document)


def run(scn: Scenario, replication: int = 0):
    plan = compile_plan(scn)
    frame, metrics = run_replication(plan, replication)
    return frame, metrics


def assert_one_outcome_each(frame):
    assert frame["id"].is_unique and (np.sort(frame["id"].to_numpy()) == np.arange(len(frame))).all()
    assert frame["outcome"].notna().all() and set(frame["outcome"].unique()) <= set(LABELS)
    finished = frame["outcome"] != "unfinished"
    assert frame.loc[finished, "done"].notna().all()


@pytest.mark.slow
def test_availability_of_one_server_matches_mtbf_over_mtbf_plus_mttr():
    mtbf, mttr = 1.0, 0.25
    document = {
        "name": "one-server",
        "hardware": {"pools": {"cpu": {"profile": "host-cpu", "servers": 1}}},
        "workload": {"sources": [{"name": "load", "kind": "poisson", "rate": "100/s", "payload": "1 KB"}]},
        "pipeline": {"stages": [{"name": "work", "costs": {"cpu": "100 us"}}]},
        "failures": [{"target": "cpu", "mtbf": f"{mtbf} s", "mttr": f"{mttr} s"}],
        "run": {"duration": "120 s", "warmup": "1 s", "drain": "1 s", "replications": 6, "seed": 11},
    }
    plan = compile_plan(Scenario.model_validate(document))
    values = [run_replication(plan, r)[1]["availability"] for r in range(6)]
    result = estimate(values)
    expected = mtbf / (mtbf + mttr)
    assert result.low <= expected <= result.high, (expected, result)
    assert result.half_width < 0.05  # the interval is tight enough to mean something


def test_a_scheduled_gpu_outage_fails_what_reaches_it_and_nothing_else():
    frame, metrics = run(scenario(failures=[{"target": "gpu", "at": "1 s", "for": "0.5 s"}]))
    assert_one_outcome_each(frame)
    failed = frame[frame["outcome"] == "failed"]
    assert len(failed) > 100
    # a request fails only if its infer attempt was under way when the GPU went down or began while it was down
    reached = failed["infer__enqueued"].fillna(failed["pre__end"])
    assert (reached >= 1.0 - 0.05).all() and (reached < 1.5 + 1e-9).all()
    assert (frame.loc[frame["arrival"] > 1.6, "outcome"] == "completed").all()
    assert metrics["availability"] < 1.0 and metrics["recovery_time"] > 0.4


def test_requests_in_service_and_waiting_when_the_device_fails_fail_with_it():
    # a single slow GPU instance with a queue: the outage catches jobs in service and waiting
    scn = scenario(failures=[{"target": "gpu[0]", "mtbf": "0.2 s", "mttr": "0.05 s"}],
                   policies={"placement": {"strategy": "explicit", "map": {"pre": "dpu", "infer": "gpu", "post": "dpu"}},
                             "routing": {"kind": "round-robin"}},
                   resilience={"health_aware": False})
    frame, _ = run(scn)
    assert_one_outcome_each(frame)
    caught = frame[(frame["outcome"] == "failed") & frame["infer__start"].notna()]
    assert len(caught) >= 1  # started service, then its device failed: never ended
    assert caught["infer__end"].isna().all()
    assert (caught["infer__device"] == "gpu[0]").all()


def test_retry_on_another_instance_saves_requests_and_counts_retries():
    failures = [{"target": "gpu[0]", "at": "1 s", "for": "1 s"}]
    plain_frame, plain = run(scenario(failures=failures, resilience={"health_aware": False}))
    frame, metrics = run(scenario(failures=failures, resilience={
        "health_aware": False, "retry": {"kind": "fixed", "attempts": 2, "backoff": "1 ms", "target": "other"}}))
    assert_one_outcome_each(frame)
    assert plain["availability"] < 0.9
    assert metrics["availability"] > plain["availability"] and metrics["availability"] > 0.99
    assert metrics["retries_per_request"] > 0


def test_health_aware_routing_avoids_the_down_instance():
    frame, metrics = run(scenario(failures=[{"target": "gpu[0]", "at": "1 s", "for": "1 s"}]))
    assert_one_outcome_each(frame)
    assert metrics["availability"] > 0.99  # only the jobs on it when it failed are lost


def test_dpu_fallback_answers_degraded_while_the_gpu_is_down():
    fallback = {"stages": {"infer": {"fallback": {"pools": ["dpu"], "costs": {"dpu": "4 ms"}}}}}
    frame, metrics = run(scenario(failures=[{"target": "gpu", "at": "1 s", "for": "0.5 s"}], resilience=fallback))
    assert_one_outcome_each(frame)
    degraded = frame[frame["outcome"] == "degraded"]
    assert len(degraded) > 100 and metrics["degraded_rate"] > 0
    assert degraded["infer__device"].astype(str).str.startswith("dpu").all()
    assert metrics["fallbacks.unhealthy"] + metrics["fallbacks.failed"] == len(
        degraded[(degraded["arrival"] >= 0.5) & (degraded["arrival"] < 3.0)])
    assert metrics["degraded_latency.p50"] > 0.004
    assert "failed" not in set(frame["outcome"]) or (frame["outcome"] == "failed").sum() < 5


def test_requeue_sends_waiting_jobs_elsewhere():
    failures = [{"target": "gpu[0]", "at": "1 s", "for": "0.5 s", "in_flight": "requeue"}]
    frame, metrics = run(scenario(failures=failures))
    assert_one_outcome_each(frame)
    assert (frame["outcome"] == "failed").sum() <= 1  # at most the one job in service


def test_a_failed_link_fails_the_messages_sent_over_it():
    frame, metrics = run(scenario(failures=[{"target": "rdma", "at": "1 s", "for": "0.3 s"}]))
    assert_one_outcome_each(frame)
    failed = frame[frame["outcome"] == "failed"]
    assert len(failed) > 50 and metrics["availability"] < 0.95
    assert (failed["arrival"] > 0.9).all() and (failed["arrival"] < 1.35).all()


def test_client_and_stage_timeouts_end_requests_timed_out():
    slow = scenario(resilience={"timeout": "3 ms"})
    frame, metrics = run(slow)
    assert_one_outcome_each(frame)
    assert metrics["timeout_rate"] > 0.5
    staged, staged_metrics = run(scenario(resilience={"stages": {"infer": {"timeout": "1 ms"}}}))
    assert_one_outcome_each(staged)
    assert staged_metrics["timeout_rate"] > 0


def test_no_failures_no_resilience_plan_and_no_new_metrics():
    plan = compile_plan(scenario())
    assert plan.resilience is None
    frame, metrics = run(scenario())
    assert "availability" not in metrics and (frame["outcome"] == "completed").all()


def test_unknown_failure_target_and_fallback_pool_are_reported():
    bad = scenario(failures=[{"target": "tpu", "at": "1 s", "for": "1 s"}],
                   resilience={"stages": {"infer": {"fallback": {"pools": ["fpga"]}}}, "retry": {"kind": "fixed"}})
    with pytest.raises(ScenarioError) as error:
        compile_plan(bad)
    text = str(error.value)
    assert "failures[0].target" in text and "resilience.stages.infer.fallback.pools" in text


def test_a_failure_needs_a_schedule_or_rates():
    with pytest.raises(ValueError, match="either 'at' and 'for'"):
        scenario(failures=[{"target": "gpu"}])


def test_slo_availability_budget_is_a_floor_on_the_availability_metric():
    from sim.check.budgets import MIN, MAX, budgets_of
    from sim.scenario.schema import Slo

    slo = Slo.model_validate({"availability_min": 0.999, "degraded_rate_max": 0.05,
                              "classes": {"video": {"timeout_rate_max": 0.01}}})
    found = {b.metric: b.direction for b in budgets_of(slo)}
    assert found == {"availability": MIN, "degraded_rate": MAX, "class.video.timeout_rate": MAX}


def test_failover_to_another_pool_is_not_degraded():
    # edge -> cloud: the same model on another pool answers as usual while the first pool is down
    hardware = {"pools": {"dpu": {"profile": "bluefield-3"}, "gpu": {"profile": "a100", "streams": 1},
                          "cloud": {"profile": "a100", "streams": 2}},
                "links": [{"name": "rdma", "between": ["dpu", "gpu"], "profile": "roce-200g"},
                          {"name": "wan", "between": ["dpu", "cloud"], "kind": "wan", "bandwidth": "1 Gbit/s",
                           "latency": "20 ms"}]}
    frame, metrics = run(scenario(hardware=hardware, failures=[{"target": "gpu", "at": "1 s", "for": "0.5 s"}],
                                  resilience={"stages": {"infer": {"fallback": {"pools": ["cloud"], "degraded": False}}}}))
    assert_one_outcome_each(frame)
    assert set(frame["outcome"].unique()) <= {"completed", "deadline_missed"}
    cloud = frame[frame["infer__device"].astype(str).str.startswith("cloud")]
    assert len(cloud) > 100 and (cloud["latency"] > 0.040).all()  # two WAN hops of 20 ms each
    assert metrics["availability"] == 1.0 and metrics["degraded_rate"] == 0.0


def test_an_open_breaker_sends_requests_straight_to_the_fallback():
    resilience = {"health_aware": False, "stages": {"infer": {
        "breaker": {"kind": "consecutive", "failures": 3, "open_for": "100 ms"},
        "fallback": {"pools": ["dpu"], "costs": {"dpu": "4 ms"}}}}}
    frame, metrics = run(scenario(failures=[{"target": "gpu", "at": "1 s", "for": "0.5 s"}], resilience=resilience))
    assert_one_outcome_each(frame)
    assert metrics["fallbacks.breaker_open"] > 100 and metrics["fallbacks.failed"] >= 3
    # after the GPU is back, a half-open probe succeeds and the breaker closes: late arrivals complete
    assert (frame.loc[frame["arrival"] > 1.7, "outcome"] == "completed").all()


def test_a_stage_timeout_falls_back_softly_and_the_abandoned_attempt_writes_nowhere():
    slow = {"name": "infer", "costs": {"gpu": "30 ms"}}
    stages = [{"name": "pre", "costs": {"dpu": "1 ms"}}, slow, {"name": "post", "costs": {"dpu": "0.5 ms"}}]
    resilience = {"stages": {"infer": {"timeout": "10 ms", "fallback": {"pools": ["dpu"], "costs": {"dpu": "2 ms"}}}}}
    frame, metrics = run(scenario(pipeline={"stages": stages}, resilience=resilience,
                                  workload={"sources": [{"name": "cams", "kind": "poisson", "rate": "50/s",
                                                         "payload": "10 KB", "deadline": "200 ms"}]}))
    assert_one_outcome_each(frame)
    assert (frame["outcome"] == "degraded").all()
    assert metrics["fallbacks.timed_out"] > 0
    assert frame["infer__device"].astype(str).str.startswith("dpu").all()  # the GPU attempt's stamps were not kept
    assert ((frame["infer__end"] - frame["infer__start"]) < 0.005).all()


def test_the_harness_refuses_failures_it_cannot_inject() -> None:
    """Never a silent fallback: a measured run of a fault the harness cannot reproduce is refused, saying why
    (exit 2). The faults it can inject, and the reactions, run for real: tests/test_hil_faults.py."""
    from pathlib import Path

    import typer
    from typer.testing import CliRunner

    from hil.cli import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "video-analytics-failover.yaml"
    result = CliRunner().invoke(app, ["hil", "run", str(scenario), "--variant", "retry", "--set",
                                      "failures=[{target: gpu, mtbf: 10 s, mttr: 1 s}, {target: dpu, at: 1 s, for: 1 s}]"])
    assert result.exit_code == 2, result.output
    assert "failures[0].mtbf: the harness injects scheduled failures only" in result.output
    assert "failures[1].target: 'dpu' is on the front process" in result.output
    assert "Traceback" not in result.output


def test_a_device_with_background_and_copy_work_can_fail() -> None:
    """Copies and background jobs waiting on a failed device are not stage attempts: the run goes on,
    a request whose message was being copied there fails, and every arrival still ends once."""
    from pathlib import Path

    from sim.experiment import simulate_replication
    from sim.scenario.load import load_scenario_file

    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "video-analytics-failover.yaml"
    loaded = load_scenario_file(scenario, [
        "run.duration=0.8 s", "run.warmup=0.1 s", "run.replications=1",
        "hardware.pools.dpu.background={load: 0.5, job: 1 ms}",
        "failures=[{target: dpu, at: 0.3 s, for: 0.2 s, in_flight: fail}]",
    ])
    done = simulate_replication(loaded.plan("no-fallback"), 0)
    frame = done.frame
    assert frame["id"].is_unique and len(frame) > 0
    assert set(frame["outcome"].astype(str)) <= set(LABELS)
    assert (frame["outcome"] == "failed").any()  # the outage cost something
