"""``dgsim hil run``: the pipeline for real, measured in the simulator's format.

Every test here runs on a 2-core machine with no GPU and no RDMA. The runs
are short (2-3 s of load at ~27 frames/s: one camera stream of
video-analytics-64) and use small frames and the models cached in the
repository's ``.dgsim-cache``. A run starts two worker processes, which
takes a few seconds, so the end-to-end checks share runs where they can:
one shm run answers the format, prefilter and detector questions. Those
runs are marked ``slow`` (``pytest -m "not slow"`` leaves them out). How
fast the harness goes is benchmarks/hil_overhead.py's question, not a test's:
the tests ask only what a slow machine must also do (every request ends
one way, the counts add up).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
import yaml
from typer.testing import CliRunner

ort = pytest.importorskip("onnxruntime")

from hil.cli import register
from hil.models import prefilter_probabilities, to_model_input
from hil.runner.layout import GPU, lay_out
from hil.runner.ops import FrameBank
from hil.runner.station import channel_policy, process_station
from hil.transports import available_channel_kinds
from sim.contract.outcomes import LABELS, SERVED_LABELS, Outcome
from sim.experiment import run_variant
from sim.metrics.records import column
from sim.plan import compile_plan
from sim.policies import admission, batching, channel, queueing
from sim.station import Station
from sim.results import read_summary
from sim.scenario.load import load_scenario_file
from sim.scenario.schema import Scenario
from sim.workload import generate_arrivals

REPO = Path(__file__).resolve().parents[1]
# Real harness runs (worker processes, onnxruntime, seconds of load each): the full suite only.
SLOW = pytest.mark.slow
SCENARIO = REPO / "scenarios" / "video-analytics-64.yaml"
SMALL = ["--variant", "dpu-offload", "--scale", "0.02", "--warmup", "0.5 s", "--min-requests", "20",
         "--set", f"hil.cache={REPO / '.dgsim-cache'}", "--set", "hil.frames.count=16"]


def hil(*args) -> object:
    """``dgsim hil ...`` in this process (saves the interpreter start-up of a subprocess)."""
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return CliRunner().invoke(app, ["hil", *map(str, args)])


def hil_process(*args) -> subprocess.Popen:
    """``dgsim hil ...`` as its own session, as a terminal would run it (for signals)."""
    return subprocess.Popen([sys.executable, "-m", "sim.cli", "hil", *map(str, args)], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)


def wait_for_arrivals(folder: Path, process: subprocess.Popen | None = None, timeout: float = 90.0) -> dict:
    """run.json once the front has logged requests (the run is measuring)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        front = folder / "front.jsonl"
        if front.exists() and '["a"' in front.read_text():
            return json.loads((folder / "run.json").read_text())
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the run ended early ({process.returncode}): {process.stdout.read()}")
        time.sleep(0.2)
    raise AssertionError(f"no requests were issued within {timeout} s")


@pytest.fixture(scope="module")
def shm_run(tmp_path_factory) -> Path:
    if "shm" not in available_channel_kinds():
        pytest.skip("no POSIX shared memory here")
    out = tmp_path_factory.mktemp("shm")
    result = hil("run", SCENARIO, *SMALL, "--transport", "shm", "--duration", "3 s", "--record", "40", "--out", out)
    assert result.exit_code == 0, result.output
    return out


@SLOW
def test_shm_run_writes_the_simulators_format(shm_run: Path) -> None:
    summary = read_summary(shm_run)
    assert summary.source == "measurement" and set(summary.variants) == {"dpu-offload"}
    metrics = summary.variants["dpu-offload"]
    frame = pd.read_parquet(shm_run / "requests" / "dpu-offload.parquet")
    scenario = load_scenario_file(SCENARIO, ["run.duration=0.3 s", "run.warmup=0.1 s", "run.replications=1"])
    simulated = run_variant(scenario, "dpu-offload", replications=range(1)).frame
    assert list(frame.columns) == list(simulated.columns)
    resolved = Scenario.model_validate(yaml.safe_load((shm_run / "resolved" / "dpu-offload.yaml").read_text()))
    drawn = generate_arrivals(resolved.workload, resolved.run.duration, resolved.run.seed, 0, SCENARIO.parent)
    np.testing.assert_array_equal(frame["arrival"].to_numpy(), drawn.time)  # what the simulator draws for it
    # Every request issued has exactly one ending, and the summary counts are the table's (how many end
    # which way depends on how loaded this machine is, so no test asks for a rate: see benchmarks/).
    assert frame["outcome"].isin(LABELS).all()
    warmup, end = resolved.run.warmup, resolved.run.duration
    window = frame[(frame["arrival"] >= warmup) & (frame["arrival"] < end)]
    counts = window["outcome"].value_counts()
    for label in LABELS:
        assert metrics[f"requests.{label}"].mean == counts.get(label, 0), label
    assert metrics["requests.arrived"].mean == len(window) == sum(counts.get(label, 0) for label in LABELS)
    handled = window["outcome"].isin([*SERVED_LABELS, Outcome.FILTERED.label]).sum()
    assert handled > 0 and metrics["throughput"].mean == pytest.approx(handled / (end - warmup))
    assert 0 < metrics["utilisation.pool.dpu"].mean <= 1 and 0 <= metrics["utilisation.pool.gpu"].mean <= 1
    served = frame[frame["outcome"].isin(SERVED_LABELS)]
    assert served[column("postprocess", "end")].notna().all() and served[column("infer", "device")].eq("gpu[0]").all()
    order = ["arrival", *(column(s, t) for s in ("parse", "preprocess", "prefilter", "infer", "postprocess")
                          for t in ("enqueued", "start", "end")), "done"]
    times = served[order].to_numpy()
    assert (np.diff(times, axis=1) >= -1e-9).all(), "per-stage timestamps out of order"
    if len(served):
        assert metrics["latency.p50"].mean > 0
    assert metrics["rate.filter"].mean == pytest.approx((window["outcome"] == "filtered").mean())
    info = json.loads((shm_run / "stream" / "dpu-offload" / "r0" / "run.json").read_text())
    assert info["transports"] == ["shm"] and info["workers"]["front"]["cores"] != info["workers"]["gpu"]["cores"]
    assert json.loads((shm_run / "failures.json").read_text()) == []


@SLOW
def test_prefilter_decisions_equal_a_direct_onnxruntime_call(shm_run: Path) -> None:
    frame = pd.read_parquet(shm_run / "requests" / "dpu-offload.parquet")
    info = json.loads((shm_run / "stream" / "dpu-offload" / "r0" / "run.json").read_text())
    reached = frame[frame["prefilter__end"].notna()]
    bank = FrameBank(**info["frames"])
    session = ort.InferenceSession(info["models"]["prefilter"], providers=["CPUExecutionProvider"])
    images = np.stack([bank.frame(int(i)) for i in reached["id"]])
    direct = prefilter_probabilities(session, images) >= 0.5
    assert len(reached) > 20 and 0 < direct.mean() < 1
    np.testing.assert_array_equal(reached["outcome"].to_numpy() != "filtered", direct)


@SLOW
def test_detector_outputs_match_a_direct_call(shm_run: Path) -> None:
    folder = shm_run / "stream" / "dpu-offload" / "r0"
    info = json.loads((folder / "run.json").read_text())
    recorded = np.load(folder / "gpu-outputs.npz")
    bank = FrameBank(**info["frames"])
    session = ort.InferenceSession(info["models"]["infer"], providers=["CPUExecutionProvider"])
    keys = [k for k in recorded.files if k.startswith("infer:")]
    assert keys, "no recorded detector outputs"
    for key in keys:
        x = to_model_input(bank.frame(int(key.split(":")[1]))[None], *info["tensor_size"])
        np.testing.assert_allclose(recorded[key], session.run(None, {"images": x})[0][0], rtol=1e-4, atol=1e-4)


@SLOW
def test_tcp_run_end_to_end(tmp_path: Path) -> None:
    result = hil("run", SCENARIO, *SMALL, "--transport", "tcp", "--duration", "2 s", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "what runs where" in result.output and "latency p99 ms" in result.output
    frame = pd.read_parquet(tmp_path / "requests" / "dpu-offload.parquet")
    assert (frame["outcome"].isin(["completed", "deadline_missed"])).any()
    hops = [json.loads(line) for line in (tmp_path / "stream" / "dpu-offload" / "r0" / "gpu.jsonl").open()
            if line.startswith('["h"')]
    assert hops and {h[2] for h in hops} == {"tcp"}
    metrics = read_summary(tmp_path).variants["dpu-offload"]
    scenario = load_scenario_file(SCENARIO, []).resolve("dpu-offload")
    between = [link.name for link in scenario.hardware.links if set(link.between) == {"dpu", "gpu"}]
    assert sum(metrics[f"bytes_per_s.link.{name}"].mean for name in between) > 0  # the scenario's dpu-gpu links


def test_policy_objects_are_the_simulators() -> None:
    overrides = ["policies.queue.kind=edf", "policies.admission.kind=queue-cap",
                 "policies.batching.infer.kind=deadline", "policies.channel.kind=by-size"]
    scenario = load_scenario_file(SCENARIO, overrides).resolve("dpu-offload")
    layout = lay_out(compile_plan(scenario, "test", SCENARIO.parent), "dpu-offload", "test", [0, 1])
    process = process_station(layout, GPU)
    infer = next(s for s in layout.stages if s.name == "infer")
    station = process.station
    assert isinstance(station, Station)  # the simulator's own class, not a copy
    assert isinstance(station.batchers[infer.index], batching.DeadlineAwareBatch)
    assert isinstance(station.discipline, queueing.EarliestDeadlineFirst)
    assert station.admission == admission.QueueCap(scenario.policies.admission.cap)
    assert isinstance(channel_policy(layout), channel.BySize)
    assert set(station.queues) == {s.index for s in layout.side_stages(GPU)}
    assert all(isinstance(q, queueing.PolicyQueue) for q in station.queues.values())


@SLOW
def test_sigint_stops_cleanly_and_keeps_the_results(tmp_path: Path) -> None:
    process = hil_process("run", SCENARIO, *SMALL, "--duration", "60 s", "--out", tmp_path)
    try:
        wait_for_arrivals(tmp_path / "stream" / "dpu-offload" / "r0", process)
        time.sleep(1.0)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, output
    assert "Traceback" not in output and "interrupted" in output
    frame = pd.read_parquet(tmp_path / "requests" / "dpu-offload.parquet")
    assert len(frame) > 0 and frame["outcome"].isin(LABELS).all()  # every request issued before Ctrl-C has an ending
    metrics = read_summary(tmp_path).variants["dpu-offload"]
    assert metrics["requests.arrived"].mean == sum(metrics[f"requests.{label}"].mean for label in LABELS)
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(f"dgsim-ring-{process.pid}-")]
    deadline = time.monotonic() + 10
    while _session_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _session_members(process.pid), "processes of the run outlived it"


def test_sigint_reaches_the_run_when_started_with_it_ignored(tmp_path: Path, monkeypatch) -> None:
    """A CI runner or a script's background job starts dgsim with SIGINT ignored; Ctrl-C must still stop it.

    Python installs no KeyboardInterrupt handler in a process that inherits SIGINT ignored, so the handler is
    the command's own (as ``dgsim run``'s). ``measure`` is replaced by one that signals itself and says whether
    the signal arrived: the signal plumbing is the question, the runs are the slow tests'.
    """
    import hil.runner.run as runner

    def measure(*args, **kwargs) -> runner.Measurement:
        try:
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)  # the Python-level handler runs here at the latest
        except KeyboardInterrupt:
            return runner.Measurement(interrupted=True)
        return runner.Measurement()

    monkeypatch.setattr(runner, "measure", measure)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = hil("run", SCENARIO, *SMALL, "--duration", "1 s", "--out", tmp_path)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the command gave back what it found
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.exit_code == 130 and "interrupted" in result.output, result.output


def _session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes in session ``sid``."""
    members = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


@SLOW
def test_a_dead_gpu_side_fails_its_requests_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "stream" / "dpu-offload" / "r0"

    def kill_gpu_side() -> None:
        info = wait_for_arrivals(folder)
        time.sleep(0.5)
        os.kill(info["workers"]["gpu"]["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_gpu_side, daemon=True)
    killer.start()
    result = hil("run", SCENARIO, *SMALL, "--duration", "3 s", "--out", tmp_path)
    killer.join()
    assert result.exit_code == 1, result.output
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert failures and all("gpu worker process ended (killed by SIGKILL)" in f["reason"] for f in failures)
    frame = pd.read_parquet(tmp_path / "requests" / "dpu-offload.parquet")
    assert set(frame.loc[frame["outcome"] == "failed", "id"]) == {f["id"] for f in failures}


@SLOW
def test_a_hung_backend_times_out_with_the_reason(tmp_path: Path) -> None:
    slow = ["--set", "pipeline.stages.infer.hil.op=emulate", "--set", "pipeline.stages.infer.costs.gpu=1 s",
            "--reply-timeout", "0.3 s"]
    result = hil("run", SCENARIO, *SMALL, *slow, "--duration", "1.5 s", "--out", tmp_path)
    # requests failed and the scenario injects no faults (nor sets an availability budget): exit 1 (issue 13)
    assert result.exit_code == 1, result.output
    assert "unexpected failures: dpu-offload" in result.output and "worker failure" not in result.output
    assert "EMULATED" in result.output
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert failures and all("no reply from the GPU side within 0.3 s" in f["reason"] for f in failures)


@pytest.mark.parametrize("args, message", [
    (["--transport", "rdma"], "--transport rdma: not available here: "),
    (["--backend", "tensorrt"], "--backend tensorrt: not available here: "),
    (["--mode", "server"], "--mode server needs --rate"),
    (["--set", "hil.detector.input_size=100"], "hil.detector.input_size: must be a multiple of 32"),
    (["--set", "hil.cores.front=[0]", "--set", "hil.cores.gpu=[0]"], "front and gpu cores overlap"),
    (["--set", "pipeline.stages.infer.hil.model=missing.onnx"], "missing.onnx does not exist"),
])
def test_bad_input_exits_2_with_one_clear_line(args: list[str], message: str) -> None:
    from hil.backends import TensorRTBackend
    from hil.transports.rdma import probe_rdma

    if "rdma" in args and all(c.available for c in probe_rdma()):
        pytest.skip("this machine has an RDMA device")
    if "tensorrt" in args and TensorRTBackend.probe().available:
        pytest.skip("this machine can run TensorRT")
    result = hil("run", SCENARIO, *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_missing_scenario_exits_2(tmp_path: Path) -> None:
    result = hil("run", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "file not found" in result.output


@SLOW
def test_check_accepts_measured_results(shm_run: Path) -> None:
    command = pytest.importorskip("sim.check.command")
    app = typer.Typer()
    app.command("check")(command.check_command)
    app.callback()(lambda: None)
    result = CliRunner().invoke(app, ["check", "--results", str(shm_run)])
    assert result.exit_code in (0, 1), result.output
    assert "video-analytics-64" in result.output and "dpu-offload" in result.output


def test_live_metrics_follow_the_event_files(tmp_path: Path) -> None:
    from urllib.request import urlopen

    from hil.runner.live import Live

    events = [["a", 0, 0.1, 0, 0, 0, 0.2, 100.0], ["s", 0, 0, 0.1, 0.11, 0.12], ["b", 0, 1, 0.11, 0.12],
              ["q", 0.2, {"parse": 3}], ["h", 0, "shm", 4096, 0.12, 0.121], ["d", 0, 0.15, "completed", ""]]
    (tmp_path / "front.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events) + '["a", 1')
    live = Live("127.0.0.1", 0)
    try:
        live.follow(tmp_path, "v", ["parse"])
        live.poll()
        text = urlopen(f"http://127.0.0.1:{live.port}/metrics", timeout=5).read().decode()
    finally:
        live.close()
    for line in ('dgsim_hil_arrivals_total{variant="v"} 1.0', 'dgsim_hil_requests_total{outcome="completed",variant="v"} 1.0',
                 'dgsim_hil_queue_depth{stage="parse",variant="v"} 3.0', 'dgsim_hil_latency_seconds_count{variant="v"} 1.0',
                 'dgsim_hil_stage_seconds_count{part="wait",stage="parse",variant="v"} 1.0',
                 'dgsim_hil_batch_size_count{stage="parse",variant="v"} 1.0',
                 'dgsim_hil_transport_bytes_total{transport="shm",variant="v"} 4096.0'):
        assert line in text, line
