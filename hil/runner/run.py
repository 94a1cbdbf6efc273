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
from hil.runner.faults import Health, Injector
from hil.runner.layout import FRONT, GPU, Layout
from hil.runner.live import Live
from hil.runner.load import make_load
from hil.runner.ops import bank_settings
from hil.runner.stream import assemble, read_events
from hil.transports import create_channel
from sim.contract.metric_keys import Kind, MetricKey
from sim.contract.outcomes import ANSWERED_LABELS, Outcome
from sim.experiment import ExperimentResult, VariantResult
from sim.metrics.summary import combine, summarise
from sim.metrics.usage import ResourceUsage
from sim.results import write_results

START_DELAY = 0.2  # s between the start message and the start time, so both sides begin together
READY_TIMEOUT = 600.0  # s for a worker to open its models (a TensorRT engine build takes minutes)
STOP_WAIT = worker.GRACE + 4.0  # s to wait for the front after a stop
POLL = 0.02  # s between the parent's looks at the workers: fault times and health changes are this precise


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
    unexpected: list[str] = field(default_factory=list)  # variants whose failed requests the scenario did not expect


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
        m.unexpected = unexpected_failures(m.result, layouts)
        write_results(m.result, out, layouts[0].plan.base_dir)
        (out / "failures.json").write_text(json.dumps(m.failures, indent=1) + "\n")
    return m


def unexpected_failures(result: ExperimentResult, layouts: list[Layout]) -> list[str]:
    """Variants whose requests failed or timed out although the scenario did not expect it, one line each.

    With ``slo.availability_min`` the budget decides: failures are expected while the measured availability
    (mean over replications) meets it. Without one, failures are expected when the variant injects faults
    (``failures:`` or ``hil.faults``) and unexpected otherwise.
    """
    lines = []
    for layout in layouts:
        v = result.variants.get(layout.variant)
        if v is None:
            continue
        counts = v.frame["outcome"].value_counts()
        lost = int(counts.get(Outcome.FAILED.label, 0) + counts.get(Outcome.TIMED_OUT.label, 0))
        if not lost:
            continue
        floor = layout.scenario.slo.availability_min
        if floor is None:
            if not layout.faults:
                lines.append(f"{layout.variant}: {lost} request(s) failed or timed out, and the scenario injects "
                             "no faults")
            continue
        estimate = v.estimates.get(MetricKey(Kind.AVAILABILITY).name)
        availability = estimate.mean if estimate is not None else float(
            v.frame["outcome"].isin(ANSWERED_LABELS).mean())
        if not availability >= floor:
            lines.append(f"{layout.variant}: {lost} request(s) failed or timed out; availability "
                         f"{availability:.2%} is below slo.availability_min {floor:.2%}")
    return lines


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
    if "rdma" in settings.kinds and any(f.kind == "kill" and math.isfinite(f.until) for f in layout.faults):
        raise HarnessError("a killed GPU-side worker is restarted over shm or tcp only (an RDMA queue pair "
                           "needs both ends at once): use --transport shm or tcp")
    window = max(8, 2 * max(s.batching.max_batch for s in layout.stages))
    load = make_load(layout.scenario, settings.mode, replication, settings.min_requests, window,
                     layout.plan.base_dir)
    channels, forward, back = _channels(settings.kinds, _capacity(layout))
    context = mp.get_context("spawn")
    sup = _Supervisor(layout, replication, settings, folder, context, channels)
    status: dict = {}
    try:
        for side in (FRONT, GPU):
            sup.start(side, forward if side == FRONT else back, back if side == FRONT else forward,
                      load if side == FRONT else None)
        workers = _await_ready(sup.procs, sup.conns)
        _write_info(folder, layout, replication, settings, workers, channels)
        if ready is not None:
            ready(workers)
        sup.t0 = time.monotonic() + START_DELAY
        for conn in sup.conns.values():
            conn.send(("start", sup.t0))
        if live is not None:
            live.follow(folder, layout.variant, [s.name for s in (*layout.stages, *layout.fallbacks)])
        status = sup.supervise(live)
    finally:
        with _sigint_ignored():
            _shutdown(sup.all_procs(), sup.all_conns())
            for channel in channels:
                channel.close()
            sup.write_outages()
    events = read_events(folder)
    end = status.get("end")
    if end is None:  # the front died: the window ends at the last arrival it issued
        end = max((a[1] for a in events["a"]), default=layout.scenario.run.warmup) + 1e-9
    frame, usage, failures = assemble(events, layout, replication, end, status.get("lost"))
    return Run(frame, usage, end, failures, workers, status.get("interrupted", False),
               status.get("gpu") or status.get("lost"))


class _Supervisor:
    """The parent during a run: watches both workers, injects the process faults, restarts a killed GPU side."""

    def __init__(self, layout: Layout, replication: int, settings: Settings, folder: Path, context, channels: list):
        self.layout, self.replication, self.settings, self.folder = layout, replication, settings, folder
        self.context, self.channels = context, channels
        self.procs: dict = {}
        self.conns: dict = {}
        self.retired: list = []  # (process, conn) of GPU-side workers killed on purpose
        self.generation = 0
        self.forward: dict = {}
        self.t0 = 0.0
        self.injector = Injector(layout.faults)
        self.health = Health()
        self.starting = False  # a fresh GPU-side worker is opening its models

    def start(self, side: str, send: dict, receive: dict, load=None) -> None:
        config = worker.WorkerConfig(side, self.layout, self.replication, send, receive, self.folder,
                                     self.settings.backend, self.settings.reply_timeout, self.settings.record, load,
                                     self.generation if side == GPU else 0)
        self.conns[side], child = self.context.Pipe()
        process = self.context.Process(target=worker.main, args=(config, child), name=f"dgsim-hil-{side}",
                                       daemon=True)
        with _child_environment(len(self.layout.cores[side])):
            process.start()
        self.procs[side] = process
        child.close()

    def all_procs(self) -> dict:
        return {**{f"retired{k}": p for k, (p, _) in enumerate(self.retired)}, **self.procs}

    def all_conns(self) -> dict:
        return {**{f"retired{k}": c for k, (_, c) in enumerate(self.retired)}, **self.conns}

    def now(self) -> float:
        return time.monotonic() - self.t0

    def restart(self) -> None:
        """A fresh GPU-side worker on fresh channels (the killed one's rings may be torn)."""
        self.retired.append((self.procs.pop(GPU), self.conns.pop(GPU)))
        made, forward, back = _channels(self.settings.kinds, _capacity(self.layout))
        self.channels += made
        self.generation += 1
        _tell(self.conns[FRONT], ("reconnect-receive", back))
        self.start(GPU, back, forward)
        self.forward, self.starting = forward, True
        self.health.restarted()

    def supervise(self, live: Optional[Live]) -> dict:
        """Wait for the front to finish; inject faults; relay the GPU side's health; turn Ctrl-C into a stop."""
        status: dict = {"interrupted": False}
        front, deadline = self.conns[FRONT], math.inf
        procs = self.procs
        while True:
            try:
                if front.poll(POLL):
                    try:
                        kind, value = front.recv()
                    except EOFError:
                        kind, value = "error", _exit_text(FRONT, procs[FRONT])
                    if kind == "finished":
                        return {**status, **value}
                    return {**status, "lost": value}
                if not procs[FRONT].is_alive() and not front.poll():
                    return {**status, "lost": _exit_text(FRONT, procs[FRONT])}
                now = self.now()
                self.injector.step(now, procs[GPU].pid, self.restart)
                self._watch_gpu(now, status)
                if live is not None:
                    live.poll()
                if time.monotonic() > deadline:
                    return {**status, "lost": "the front did not stop in time"}
            except KeyboardInterrupt:
                if status["interrupted"]:
                    return status  # a second Ctrl-C: stop waiting (the cleanup still runs)
                status["interrupted"] = True
                for conn in self.conns.values():
                    _tell(conn, ("stop",))
                deadline = time.monotonic() + STOP_WAIT

    def _watch_gpu(self, now: float, status: dict) -> None:
        """Beats, readiness and death of the GPU side; tell the front when it goes down or comes back."""
        process, conn = self.procs[GPU], self.conns[GPU]
        ended = False
        while True:
            try:
                if not conn.poll():
                    break
                kind, *value = conn.recv()
            except (EOFError, OSError):
                ended = True
                break
            if kind == "beat":
                self.health.beat(now)
            elif kind == "ready" and self.starting:
                self.starting = False
                _tell(self.conns[FRONT], ("reconnect-send", self.forward))
                _tell(conn, ("start", self.t0))
            elif kind == "error":
                status.setdefault("gpu", value[0])
        alive = process.is_alive() and not ended
        if not alive and "gpu" not in status and not self._expected_death():
            status["gpu"] = _exit_text(GPU, process)
        if self.injector.resumed_at is not None:  # SIGCONT: what it held is stale
            _tell(conn, ("resumed", self.injector.resumed_at))
            self.injector.resumed_at = None
        change = self.health.judge(now, alive)
        if change is False:
            why = _exit_text(GPU, process) if not alive else (
                f"the GPU side stopped answering (no heartbeat for {self.health.timeout:g} s)")
            _tell(self.conns[FRONT], ("peer-down", why))
        elif change is True:
            _tell(self.conns[FRONT], ("peer-up",))
            self.injector.recovered(now)

    def _expected_death(self) -> bool:
        """The GPU side died because a kill fault killed it (then it is restarted, or stays dead by design)."""
        current = self.injector.current
        return (current is not None and current.fault.kind == "kill") or any(
            o.fault.kind == "kill" and math.isinf(o.fault.until) for o in self.injector.outages)

    def write_outages(self) -> None:
        """The injected process faults as they happened, for the results (faults.jsonl)."""
        if not self.injector.outages:
            return
        with open(self.folder / "faults.jsonl", "w", encoding="utf-8") as file:
            for o in self.injector.outages:
                end = None if math.isinf(o.end) else o.end
                file.write(json.dumps(["o", o.fault.target, o.start, end, f"{o.fault.kind} ({o.fault.source})"]) + "\n")


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
