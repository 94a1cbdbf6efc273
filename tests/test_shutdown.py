"""SIGTERM or Ctrl-C to ``dgsim run -j 2`` stops everything it started, promptly.

The run starts in its own session (so every process it starts, the
forkserver, the resource tracker and the replication workers included,
shares its session id); once two workers are simulating, the test sends
the signal and expects exit 143 (SIGTERM) or 130 (SIGINT, sent to the
whole process group as a terminal does) within a generous 30 s, a single
``error:`` line, no results folder, and no process of that session left
after the exit (given 10 s for the forkserver to see its parent gone).
The run is sized to take minutes, so the signal always lands mid-run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "scenarios" / "video-analytics-64.yaml"


def _dgsim() -> list[str]:
    exe = shutil.which("dgsim")
    return [exe] if exe else [sys.executable, "-m", "sim.cli"]


def _session_processes(sid: int) -> list[psutil.Process]:
    out = []
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getsid(process.pid) == sid and process.status() != psutil.STATUS_ZOMBIE:
                out.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return out


def _workers_running(pid: int) -> bool:
    """At least two replication workers (grandchildren, under the forkserver) are alive."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    return sum(1 for p in descendants if p.ppid() != pid) >= 2


RUN = ["run", str(SCENARIO), "-j", "2", "--duration", "600 s", "--set", "run.replications=2", "--max-work", "1e9"]
CHECK = ["check", str(SCENARIO), "-j", "2", "--set", "run.duration=600 s", "--variant", "cpu-path"]


@pytest.mark.slow
@pytest.mark.parametrize("command, signum, code, whole_group, said", [
    (RUN, signal.SIGTERM, 143, False, "no results written"),
    (RUN, signal.SIGINT, 130, True, "no results written"),
    (CHECK, signal.SIGTERM, 143, False, "SIGTERM: stopped"),  # any command: the handler is dgsim's, not run's
])
def test_a_signal_stops_a_parallel_run_and_leaves_no_process(tmp_path, command, signum, code, whole_group, said):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [*_dgsim(), *command, *(["--out", str(out)] if command[0] == "run" else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not _workers_running(process.pid):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the replication workers never started"
            time.sleep(0.2)
        time.sleep(1.0)  # the workers are inside their replications now
        if whole_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip() and "simulating replications" not in line]
    assert len(lines) == 1 and lines[0].startswith("error:") and said in lines[0], stderr
    assert not out.exists()
    deadline = time.monotonic() + 10
    while _session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_processes(process.pid) == []


@pytest.mark.slow
def test_a_killed_worker_is_one_line_and_exit_1_and_no_process_stays(tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen([*_dgsim(), *RUN, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not _workers_running(process.pid):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the replication workers never started"
            time.sleep(0.2)
        worker = next(p for p in psutil.Process(process.pid).children(recursive=True) if p.ppid() != process.pid)
        worker.kill()  # as the kernel's out-of-memory killer would
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "worker process died" in lines[0] and "Traceback" not in stderr, stderr
    assert not out.exists()
    deadline = time.monotonic() + 10
    while _session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _session_processes(process.pid) == []
