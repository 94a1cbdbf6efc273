"""Running measurements: channels, worker processes, supervision, results.

For one replication the parent creates the channels (one each way per
transport kind), starts the front and the GPU-side worker with the "spawn"
method (probing CUDA and then forking is unsafe) with Ctrl-C ignored in
them, waits until both have opened their models and transports, and gives
them one start time on the monotonic clock they share. Then it only
watches: it relays a dead GPU side to the front (whose requests there then
fail with the exit status), feeds the live metrics, and turns Ctrl-C or
SIGTERM into a stop: the front stops issuing, waits up to a second for
requests in flight, writes what is left as unfinished and exits. Whatever
happens, the workers are stopped, terminated or killed, the channels are
closed (their shared-memory segments unlinked), and the results are built
from the event files the workers wrote as they went.

``measure`` runs every replication of every variant and writes the results
folder in the simulator's format, plus ``failures.json`` (every failed
request and why) and, per run, ``stream/<variant>/r<k>/`` with the raw
events and ``run.json`` (what ran where).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from hil.runner import worker
from hil.runner.layout import FRONT, GPU, Layout
from hil.runner.live import Live
from hil.runner.load import make_load
from hil.runner.ops import bank_settings
from hil.runner.stream import assemble, read_events
from hil.transports import create_channel
from sim.experiment import ExperimentResult, VariantResult
from sim.metrics.summary import combine, summarise
from sim.metrics.usage import ResourceUsage
from sim.results import write_results

START_DELAY = 0.2  # s between the start message and the start time, so both sides begin together
READY_TIMEOUT = 600.0  # s for a worker to open its models (a TensorRT engine build takes minutes)
STOP_WAIT = worker.GRACE + 4.0  # s to wait for the front after a stop


class HarnessError(RuntimeError):
    """A worker could not start; the message says why."""


@dataclass(frozen=True)
class Settings:
    """How to measure, the same for every variant."""

    mode: str
    kinds: tuple[str, ...]  # transports to open, in the order the channel policy falls back
    backend: str
    min_requests: int
    reply_timeout: float
    record: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Run:
    """One replication, measured."""

    frame: pd.DataFrame
    usage: ResourceUsage
    end: float
    failures: list[dict]
    workers: dict
    interrupted: bool
    failure: Optional[str]  # a worker that died or failed, and how


@dataclass
class Measurement:
    result: Optional[ExperimentResult] = None
    failures: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    workers: dict = field(default_factory=dict)  # variant -> what ran where (first replication)
    interrupted: bool = False


def measure(layouts: list[Layout], settings: Settings, out: Path, live: Optional[Live] = None,
            say: Callable[[str], None] = print, announce: Optional[Callable[[str, dict], None]] = None
            ) -> Measurement:
    """Measure every replication of every variant; write the results folder from what was measured.

    ``announce(variant, workers)`` is called once per variant when its workers are ready (what runs where).
    """
    m = Measurement()
    variants = {}
    for layout in layouts:
        runs: list[Run] = []
        for r in range(layout.scenario.run.replications):
            try:
                ready = (lambda w, v=layout.variant: announce(v, w)) if announce and r == 0 else None
                run = run_replication(layout, r, settings, out / "stream" / layout.variant / f"r{r}", live, ready)
            except KeyboardInterrupt:
                m.interrupted = True
                break
            runs.append(run)
            m.workers.setdefault(layout.variant, run.workers)
            m.failures += [{"variant": layout.variant, **f} for f in run.failures]
            if run.failure:
                m.problems.append(f"{layout.variant} #{r + 1}: {run.failure}")
            outcomes = run.frame["outcome"].value_counts()
            say(f"{layout.variant} #{r + 1}: {len(run.frame)} requests in {run.end:.1f} s ("
                + ", ".join(f"{n} {o}" for o, n in outcomes.items() if n) + ")")
            if run.interrupted:
                m.interrupted = True
                break
        if runs:
            variants[layout.variant] = _variant_result(layout, runs, settings)
        if m.interrupted:
            break
    if variants:
        first = next(iter(variants.values())).scenario
        m.result = ExperimentResult(first.name, "measurement", first.run.seed, variants)
        write_results(m.result, out, layouts[0].plan.base_dir)
        (out / "failures.json").write_text(json.dumps(m.failures, indent=1) + "\n")
    return m


def _variant_result(layout: Layout, runs: list[Run], settings: Settings) -> VariantResult:
    run = layout.scenario.run
    metrics = tuple(summarise(r.frame, r.usage, run.warmup, r.end) for r in runs)
    how = f"measured by dgsim hil run --mode {settings.mode}" + "".join(f"; {n}" for n in settings.notes)
    scenario = layout.scenario.model_copy(update={
        "run": run.model_copy(update={"duration": max(r.end for r in runs), "replications": len(runs)}),
        "hil": layout.settings,
        "description": f"{layout.scenario.description.strip()} [{how}]".strip(),
    })
    frame = pd.concat([r.frame for r in runs], ignore_index=True)
    return VariantResult(layout.variant, scenario, frame, metrics, combine(metrics))


def run_replication(layout: Layout, replication: int, settings: Settings, folder: Path,
                    live: Optional[Live] = None, ready: Optional[Callable[[dict], None]] = None) -> Run:
    """Measure one replication of ``layout``; the event files and run.json go to ``folder``."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    window = max(8, 2 * max(s.batching.max_batch for s in layout.stages))
    load = make_load(layout.scenario, settings.mode, replication, settings.min_requests, window,
                     layout.plan.base_dir)
    channels, forward, back = _channels(settings.kinds, _capacity(layout))
    context = mp.get_context("spawn")
    procs, conns = {}, {}
    status: dict = {}
    try:
        for side in (FRONT, GPU):
            config = worker.WorkerConfig(
                side, layout, replication, forward if side == FRONT else back, back if side == FRONT else forward,
                folder, settings.backend, settings.reply_timeout, settings.record, load if side == FRONT else None)
            conns[side], child = context.Pipe()
            process = context.Process(target=worker.main, args=(config, child), name=f"dgsim-hil-{side}", daemon=True)
            with _child_environment(len(layout.cores[side])):
                process.start()
            procs[side] = process
            child.close()
        workers = _await_ready(procs, conns)
        _write_info(folder, layout, replication, settings, workers, channels)
        if ready is not None:
            ready(workers)
        t0 = time.monotonic() + START_DELAY
        for conn in conns.values():
            conn.send(("start", t0))
        if live is not None:
            live.follow(folder, layout.variant, [s.name for s in layout.stages])
        status = _supervise(procs, conns, live)
    finally:
        with _sigint_ignored():
            _shutdown(procs, conns)
            for channel in channels:
                channel.close()
    events = read_events(folder)
    end = status.get("end")
    if end is None:  # the front died: the window ends at the last arrival it issued
        end = max((a[1] for a in events["a"]), default=layout.scenario.run.warmup) + 1e-9
    frame, usage, failures = assemble(events, layout, replication, end, status.get("lost"))
    return Run(frame, usage, end, failures, workers, status.get("interrupted", False),
               status.get("gpu") or status.get("lost"))


def _channels(kinds: tuple[str, ...], capacity: int):
    """One channel each way per transport kind: (all channels, front->gpu specs, gpu->front specs)."""
    made, forward, back = [], {}, {}
    try:
        for kind in kinds:
            for specs in (forward, back):
                channel = create_channel(kind, **({"capacity": capacity} if kind in ("shm", "rdma") else {})).create()
                made.append(channel)
                specs[kind] = channel.spec
    except BaseException:
        for channel in made:
            channel.close()
        raise
    return made, forward, back


def _capacity(layout: Layout) -> int:
    """Ring bytes: room for two batches of the largest message, so a sender rarely waits for room."""
    f = layout.settings.frames
    d = layout.settings.detector
    anchors = sum(3 * (d.input_size // s) ** 2 for s in (8, 16, 32))
    largest = max(f.height * f.width * 3, 12 * layout.tensor_size[0] * layout.tensor_size[1], anchors * 85 * 4,
                  *(s.output or 0 for s in layout.stages),
                  *(getattr(src, "payload", 0) for src in layout.scenario.workload.sources))
    in_flight = 2 * max(s.batching.max_batch for s in layout.stages) + 8  # a whole batch's replies, and more
    return -(-max(32 << 20, in_flight * (int(largest) + 4096)) // 64) * 64


@contextlib.contextmanager
def _child_environment(threads: int):
    """Start a worker with Ctrl-C ignored (the parent coordinates) and its BLAS threads = its cores."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: str(threads) for k in keys})
    try:
        with _sigint_ignored():
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _sigint_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_text(side: str, process) -> str:
    code = process.exitcode
    how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
    return f"the {side} worker process ended ({how})"


def _await_ready(procs: dict, conns: dict) -> dict:
    ready: dict = {}
    deadline = time.monotonic() + READY_TIMEOUT
    while len(ready) < len(procs):
        for side, conn in conns.items():
            if side in ready or not conn.poll(0.05):
                if side not in ready and not procs[side].is_alive() and not conn.poll():
                    raise HarnessError(_exit_text(side, procs[side]) + " while starting")
                continue
            try:
                kind, value = conn.recv()
            except EOFError:
                raise HarnessError(_exit_text(side, procs[side]) + " while starting") from None
            if kind == "error":
                raise HarnessError(value)
            ready[side] = value
        if time.monotonic() > deadline:
            raise HarnessError(f"the workers did not start within {READY_TIMEOUT:g} s")
    return {side: ready[side] for side in procs}


def _supervise(procs: dict, conns: dict, live: Optional[Live]) -> dict:
    """Wait for the front to finish; relay a dead GPU side; turn Ctrl-C into a stop."""
    status: dict = {"interrupted": False}
    front, deadline = conns[FRONT], math.inf
    while True:
        try:
            if front.poll(0.2):
                try:
                    kind, value = front.recv()
                except EOFError:
                    kind, value = "error", _exit_text(FRONT, procs[FRONT])
                if kind == "finished":
                    return {**status, **value}
                return {**status, "lost": value}
            if not procs[FRONT].is_alive() and not front.poll():
                return {**status, "lost": _exit_text(FRONT, procs[FRONT])}
            if "gpu" not in status:
                failure = _gpu_failure(procs[GPU], conns[GPU])
                if failure:
                    status["gpu"] = failure
                    _tell(front, ("peer-failed", failure))
            if live is not None:
                live.poll()
            if time.monotonic() > deadline:
                return {**status, "lost": "the front did not stop in time"}
        except KeyboardInterrupt:
            if status["interrupted"]:
                return status  # a second Ctrl-C: stop waiting (the cleanup still runs)
            status["interrupted"] = True
            for conn in conns.values():
                _tell(conn, ("stop",))
            deadline = time.monotonic() + STOP_WAIT


def _gpu_failure(process, conn) -> Optional[str]:
    if conn.poll():
        try:
            kind, value = conn.recv()
        except EOFError:
            return _exit_text(GPU, process) if not process.is_alive() else None
        return value if kind == "error" else None
    return None if process.is_alive() else _exit_text(GPU, process)


def _tell(conn, message: tuple) -> None:
    with contextlib.suppress(OSError, ValueError):
        conn.send(message)


def _shutdown(procs: dict, conns: dict) -> None:
    """Ask, then terminate, then kill: no worker outlives the run."""
    for conn in conns.values():
        _tell(conn, ("stop",))
    stop_by = time.monotonic() + 3.0
    for process in procs.values():
        process.join(max(0.0, stop_by - time.monotonic()))
    for process in procs.values():
        if process.is_alive():
            process.terminate()
            process.join(1.0)
        if process.is_alive():
            process.kill()
            process.join()
    for conn in conns.values():
        conn.close()


def _write_info(folder: Path, layout: Layout, replication: int, settings: Settings, workers: dict,
                channels: list) -> None:
    info = {
        "scenario": layout.scenario.name, "variant": layout.variant, "replication": replication,
        "mode": settings.mode, "backend": settings.backend, "transports": list(settings.kinds),
        "segments": [getattr(c.spec, "path", None) for c in channels if c.spec.kind == "shm"],
        "frames": bank_settings(layout), "tensor_size": list(layout.tensor_size),
        "models": {s.name: str(s.model) for s in layout.stages if s.model is not None},
        "workers": workers, "parent_pid": os.getpid(), "notes": list(settings.notes),
    }
    (folder / "run.json").write_text(json.dumps(info, indent=1) + "\n")
