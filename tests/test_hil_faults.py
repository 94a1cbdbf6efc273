"""Faults injected for real in ``dgsim hil run``, and the front's reactions to them.

The fast tests check the pieces on their own: which declared faults the
harness can inject (and the one-line problems for those it cannot), the
workers' message and raise faults, the parent's injector on a real child
process (SIGSTOP/SIGCONT/SIGKILL), and the heartbeat watch. The slow test
runs the shipped failover scenario for a few seconds with the GPU-side
worker killed: the fallback variant answers ``degraded`` from the front's
classifier, the no-fallback variant fails requests, the run exits 1 because
that variant misses ``slo.availability_min``, and ``dgsim check --results``
judges availability on the measured results.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from hil.runner.faults import Fault, Health, Injector, InjectedFault, WorkerFaults
from hil.runner.layout import lay_out
from hil.runner.reactions import FrontReactions
from sim.contract.outcomes import ANSWERED_LABELS, Outcome
from sim.plan import compile_plan
from sim.policies.resilience import Fallback, GiveUp, Reason, Retry
from sim.results import read_summary
from sim.scenario.errors import ScenarioError
from sim.scenario.load import load_scenario_file

REPO = Path(__file__).resolve().parents[1]
FAILOVER = REPO / "scenarios" / "video-analytics-failover.yaml"


def layout_of(variant: str, *overrides: str):
    scenario = load_scenario_file(FAILOVER, list(overrides)).resolve(variant)
    return lay_out(compile_plan(scenario, variant, FAILOVER.parent), variant, variant, [0, 1])


def test_a_gpu_failure_becomes_a_kill_or_a_hang_of_the_gpu_worker() -> None:
    layout = layout_of("dpu-fallback")
    assert [(f.kind, f.at, f.until, f.target) for f in layout.faults] == [("kill", 20.0, 30.0, "gpu")]
    hung = layout_of("no-fallback", "hil.gpu_failure=hang")
    assert [f.kind for f in hung.faults] == ["hang"]
    # the fallback of the GPU stage runs on the front, as a stage of its own after the pipeline
    (fallback,) = layout.fallbacks
    assert (fallback.origin, fallback.index, fallback.pool, fallback.op) == (3, len(layout.stages), "dpu", "classify")
    link = layout_of("no-fallback", "failures=[{target: rdma, at: 1 s, for: 2 s}]")
    assert [(f.kind, f.directions) for f in link.faults] == [("drop", ("to-gpu", "to-front"))]


@pytest.mark.parametrize("failures, path, message", [
    ("[{target: gpu, mtbf: 10 s, mttr: 1 s}]", "failures[0].mtbf", "scheduled failures only"),
    ("[{target: dpu, at: 1 s, for: 1 s}]", "failures[0].target", "front process, which must survive"),
    ("[{target: net-host, at: 1 s, for: 1 s}]", "failures[0].target", "does not join the front and the GPU"),
    ("[{target: gpu, at: 1 s, for: 5 s}, {target: gpu, at: 2 s, for: 1 s}]", "failures[1]", "overlaps failures[0]"),
])
def test_faults_the_harness_cannot_inject_are_named(failures: str, path: str, message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        layout_of("no-fallback", f"failures={failures}")
    lines = [str(p) for p in error.value.problems]
    assert any(path in line and message in line for line in lines), lines


def test_hil_faults_kinds_and_their_checks() -> None:
    layout = layout_of("no-fallback", "failures=[]", "hil.faults=[{kind: raise, stage: infer, at: 1 s, for: 1 s}, "
                       "{kind: delay, delay: 5 ms, at: 0 s, direction: to-gpu}]")
    raising, delay = layout.faults
    assert raising.stage == 3 and math.isinf(delay.until)
    with pytest.raises(ScenarioError, match=r"hil\.faults\[0\]\.stage: unknown stage .nope."):
        layout_of("no-fallback", "hil.faults=[{kind: raise, stage: nope, at: 1 s}]")


def test_worker_faults_drop_delay_and_raise() -> None:
    faults = (Fault("drop", 1.0, 2.0, "x", directions=("to-gpu",), probability=0.5),
              Fault("delay", 0.0, 3.0, "y", directions=("to-gpu",), delay=0.005),
              Fault("raise", 1.0, 2.0, "z", stage=3))
    front = WorkerFaults(faults, "to-gpu", 1, 0, 0)
    assert front.on_send(0.5) == pytest.approx(0.005)
    sent = [front.on_send(1.5) for _ in range(2000)]
    lost = sum(d is None for d in sent)
    assert 800 < lost < 1200 and all(d == pytest.approx(0.005) for d in sent if d is not None)
    assert front.on_send(3.5) == 0.0
    gpu = WorkerFaults(faults, "to-front", 1, 0, 0)
    assert gpu.on_send(1.5) == 0.0  # the other direction is untouched
    gpu.check(3, 0.5)
    gpu.check(2, 1.5)
    with pytest.raises(InjectedFault, match="injected by z"):
        gpu.check(3, 1.5)


def test_injector_stops_continues_and_kills_a_real_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        injector = Injector((Fault("hang", 1.0, 2.0, "a"), Fault("kill", 3.0, 4.0, "b")))
        restarts = []
        injector.step(0.5, child.pid, lambda: restarts.append(1))
        assert _state(child.pid) not in "Tt"
        injector.step(1.0, child.pid, lambda: restarts.append(1))
        assert _wait_state(child.pid, "Tt"), "SIGSTOP did not stop the process"
        injector.step(2.0, child.pid, lambda: restarts.append(1))
        assert _wait_state(child.pid, "SR") and injector.resumed_at == 2.0
        injector.recovered(2.3)
        injector.step(3.0, child.pid, lambda: restarts.append(1))
        assert child.wait(10) == -signal.SIGKILL
        injector.step(4.0, child.pid, lambda: restarts.append(1))
        assert restarts == [1]
        assert [(o.fault.kind, o.start, o.end) for o in injector.outages] == [("hang", 1.0, 2.3), ("kill", 3.0, math.inf)]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _wait_state(pid: int, states: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _state(pid) in states:
            return True
        time.sleep(0.01)
    return False


def test_health_follows_death_silence_and_a_fresh_worker() -> None:
    health = Health(timeout=0.5)
    assert health.judge(0.0, True) is None  # up before the first beat
    health.beat(0.1)
    assert health.judge(0.5, True) is None
    assert health.judge(0.7, True) is False  # silent for more than 0.5 s: down
    health.beat(0.8)
    assert health.judge(0.8, True) is True
    assert health.judge(0.9, False) is False  # the process died
    health.restarted()
    assert health.judge(1.0, True) is None  # a fresh process is down until it beats
    health.beat(1.1)
    assert health.judge(1.1, True) is True


def test_front_reactions_refuse_when_down_and_keep_the_simulators_counts() -> None:
    layout = layout_of("retry")
    react = FrontReactions(layout.resilience, [s.side == "gpu" for s in layout.stages])
    assert react.admit(7, 3, 0.0, gpu_up=True) is None
    first = react.admit(7, 3, 1.0, gpu_up=False)  # health-aware: unhealthy, and the retry policy retries
    assert first == Retry(0.1, True) and react.retries == {7: 1}
    assert react.due(1.05) == [] and react.due(1.1) == [(7, 3)]
    assert react.failed(7, 3, 1.1, Reason.FAILED) == Retry(0.2, True)
    assert react.failed(7, 3, 1.3, Reason.FAILED) == Retry(0.4, True)
    assert react.failed(7, 3, 1.7, Reason.FAILED) == GiveUp(Outcome.FAILED)  # 3 retries spent, no fallback
    assert react.failed(8, 3, 1.7, Reason.TIMED_OUT) == Retry(0.1, True)  # another request counts its own
    fallback = FrontReactions(layout_of("dpu-fallback").resilience, [s.side == "gpu" for s in layout.stages])
    assert fallback.admit(1, 3, 1.0, gpu_up=False) == Fallback(Reason.UNHEALTHY)
    assert fallback.fallback == {1: Reason.UNHEALTHY} and fallback.retries == {}


# --- end to end: a real run with the GPU-side worker killed -------------------------------------------


def hil(*args) -> object:
    from hil.cli import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return CliRunner().invoke(app, ["hil", *map(str, args)])


@pytest.mark.slow
def test_a_killed_gpu_worker_is_answered_by_the_fronts_fallback_and_check_judges_availability(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    result = hil("run", FAILOVER, "--variant", "no-fallback", "--variant", "dpu-fallback", "--mode", "server",
                 "--rate", "10/s", "--duration", "4 s", "--warmup", "0.3 s", "--min-requests", "5",
                 "--transport", "shm", "--set", f"hil.cache={REPO / '.dgsim-cache'}", "--set", "hil.frames.count=16",
                 "--set", "failures=[{target: gpu, at: 2 s, for: 30 s}]", "--out", tmp_path)
    # no-fallback's failed requests break its availability budget: the run says so and exits 1
    assert result.exit_code == 1, result.output
    assert "unexpected failures: no-fallback" in result.output and "dpu-fallback: " not in result.output.split(
        "unexpected failures:")[-1]
    assert "injects failures[0]: SIGKILL the GPU-side worker at 2 s" in " ".join(result.output.split())
    summary = read_summary(tmp_path)
    verdicts = {}
    for variant in ("no-fallback", "dpu-fallback"):
        frame = pd.read_parquet(tmp_path / "requests" / f"{variant}.parquet")
        outages = [json.loads(line) for line in
                   (tmp_path / "stream" / variant / "r0" / "faults.jsonl").read_text().splitlines()]
        (_, target, down, up, what), = outages
        assert target == "gpu" and down >= 2.0 and up is None and what.startswith("kill")
        window = frame[(frame["arrival"] >= 0.3) & (frame["arrival"] < 4.0)]
        metrics = summary.variants[variant]
        assert metrics["availability"].mean == pytest.approx(window["outcome"].isin(ANSWERED_LABELS).mean())
        after = frame[frame["arrival"] > down + 0.1]  # arrived once the worker was dead
        assert len(after) and not after["outcome"].isin(["completed", "deadline_missed"]).any()
        verdicts[variant] = metrics["availability"].mean
        if variant == "no-fallback":
            assert (after["outcome"] == "failed").any() and metrics["requests.degraded"].mean == 0
        else:
            degraded = frame[frame["outcome"] == "degraded"]
            assert len(degraded) and not (frame["outcome"] == "failed").any()
            assert degraded["infer__device"].eq("dpu[0]").all()  # the front's fallback answered, on the DPU pool
            assert (degraded["infer__end"] > down).all()
            assert metrics["requests.degraded"].mean == (window["outcome"] == "degraded").sum()
            reasons = sum(metrics[f"fallbacks.{r}"].mean for r in ("failed", "unhealthy", "timed_out", "breaker_open"))
            assert reasons == (window["outcome"] == "degraded").sum()
            assert metrics["degraded_latency.p50"].mean > 0
            run = json.loads((tmp_path / "stream" / variant / "r0" / "run.json").read_text())
            assert "DEGRADED fallback: ONNX classifier" in run["workers"]["front"]["stages"]["infer.fallback"]
    assert verdicts["no-fallback"] < 0.999 and verdicts["dpu-fallback"] >= 0.999
    from sim.check.command import check_command

    app = typer.Typer()
    app.command("check")(check_command)
    app.callback()(lambda: None)
    checked = CliRunner().invoke(app, ["check", "--results", str(tmp_path), "--junit", str(tmp_path / "j.xml")])
    assert checked.exit_code == 1, checked.output
    junit = (tmp_path / "j.xml").read_text()
    failed_checks = [chunk for chunk in junit.split("<testcase")[1:] if "availability" in chunk.split(">")[0]]
    by_variant = {("no-fallback" if "no-fallback" in c.split(">")[0] else "dpu-fallback"): "<failure" in c
                  for c in failed_checks}
    assert by_variant == {"no-fallback": True, "dpu-fallback": False}, junit


@pytest.mark.slow
def test_a_stage_made_to_raise_on_the_gpu_side_falls_back_with_reason_failed(tmp_path: Path) -> None:
    """A raise fault on the detector: the GPU side reports the failure, the front's fallback answers."""
    pytest.importorskip("onnxruntime")
    result = hil("run", FAILOVER, "--variant", "dpu-fallback", "--mode", "server", "--rate", "10/s",
                 "--duration", "3 s", "--warmup", "0.3 s", "--min-requests", "5", "--transport", "tcp",
                 "--set", f"hil.cache={REPO / '.dgsim-cache'}", "--set", "hil.frames.count=16", "--set", "failures=[]",
                 "--set", "hil.faults=[{kind: raise, stage: infer, at: 1 s, for: 1 s}]", "--out", tmp_path)
    assert result.exit_code == 0, result.output  # nothing failed: the fallback answered
    assert "injects hil.faults[0]: make stage infer's op raise from 1 s to 2 s" in " ".join(result.output.split())
    frame = pd.read_parquet(tmp_path / "requests" / "dpu-fallback.parquet")
    folder = tmp_path / "stream" / "dpu-fallback" / "r0"
    assert not (folder / "faults.jsonl").exists()  # the process never went down
    fallbacks = [json.loads(line) for line in (folder / "front.jsonl").read_text().splitlines()
                 if line.startswith('["f"')]
    assert fallbacks and {f[4] for f in fallbacks} == {int(Reason.FAILED)}
    reasons = json.loads((tmp_path / "failures.json").read_text())
    assert reasons == []
    degraded = frame[frame["outcome"] == "degraded"]
    assert set(degraded["id"]) == {f[1] for f in fallbacks}
    assert (degraded["infer__device"] == "dpu[0]").all()
    # the attempts that raised ran while the fault was active; before and after it the detector answered
    served = frame[frame["outcome"].isin(["completed", "deadline_missed"])]
    assert (served["infer__device"] == "gpu[0]").all() and len(served)
    assert not ((served["infer__start"] >= 1.0) & (served["infer__start"] < 2.0)).any()


def test_a_fresh_gpu_worker_that_dies_while_starting_is_not_an_injected_death() -> None:
    # after a kill fault's restart the fresh worker opens its models; nothing injected kills it then
    from types import SimpleNamespace

    from hil.runner.faults import Outage
    from hil.runner.run import _Supervisor

    injector = Injector((Fault("kill", 1.0, 2.0, "hil.faults[0]"),))
    supervisor = SimpleNamespace(injector=injector, starting=True)
    injector.outages.append(Outage(injector.pending.pop(0), 1.0))
    assert not _Supervisor._expected_death(supervisor)  # restarted at 2 s: its death is the worker's own
    injector.current = injector.outages[-1]
    assert _Supervisor._expected_death(supervisor)  # while the kill lasts, the death is the fault's
