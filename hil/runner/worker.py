"""The two worker processes: the front (the DPU's side) and the GPU side.

Each is one process pinned to its own cores, running one loop: take in
what arrived (new requests on the front, messages from the other process
on both), ask the ``Station`` which batch to run, run it with the stage's
op, and pass each job on: to the next stage here, across the transport to
the other process, or out of the pipeline. No threads: the process is one
server, as a pool's core (or GPU stream) is in the simulator.

The front owns the requests: it issues them from the load generator,
decides their outcome (completed or deadline missed, filtered, dropped,
failed, timed out, degraded, unfinished) and watches the ones the GPU side
holds. Every attempt at a stage goes through the scenario's reactions
(``hil.runner.reactions``, the simulator's own objects): a request the GPU
side does not hand back within ``reply_timeout`` (or the stage's timeout),
every request it held when the parent reports it down (dead, or its
heartbeat silent), and every one that would reach it while it is down, is
a failed attempt: retried on a timer, run by the stage's fallback on the
front (a degraded answer), or ended with the reason. The GPU side answers
every request it was sent (the next stage's input, or a notice of how the
request ended) and beats every ``HEARTBEAT`` seconds on its pipe to the
parent.

Messages carry the request id, the stage to run next as the tag
(``DONE``: the pipeline's result; ``ENDED``: the request ended otherwise,
the payload being "outcome\nstage\nreason"), and the deadline and priority
in two stamp slots. The transport for each message is chosen by the
scenario's channel policy from its size, among the transports opened;
injected message faults (``hil.runner.faults``) drop or hold it first.
"""

from __future__ import annotations

import abc
import contextlib
import heapq
import math
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.backends.ort_cpu import pin_process
from hil.runner.faults import HEARTBEAT, WorkerFaults
from hil.runner.layout import FRONT, GPU, Layout
from hil.runner.ops import FrameBank, PassDraws, Routes, honest, open_op, side_role
from hil.runner.reactions import Classify, FrontReactions
from hil.runner.station import Job, channel_policy, process_station
from hil.runner.stream import EventLog, log_name
from sim.contract.outcomes import Outcome
from sim.policies.resilience import Fallback, GiveUp, Reaction, Reason, Retry
from sim.station import Launch
from hil.transports import (
    ChannelClosed,
    ChannelSpec,
    Message,
    TransportError,
    choose_transport,
)

MIN_PAUSE, MAX_PAUSE = 20e-6, 1e-3  # idle polling: back off from 20 us to 1 ms
GRACE = 1.0  # after a stop, how long the front waits for requests in flight
DONE, ENDED = -1, -2  # message tags from the GPU side: the result, or another ending


@dataclass(frozen=True)
class WorkerConfig:
    side: str
    layout: Layout
    replication: int
    send: dict[str, ChannelSpec]
    receive: dict[str, ChannelSpec]
    folder: Path
    backend: str
    reply_timeout: float
    record: int = 0
    load: Any = None  # front only: hil.runner.load.Scheduled or ClosedLoop
    generation: int = 0  # GPU side: 0, then 1, 2, ... for each fresh worker after a kill


def main(config: WorkerConfig, conn) -> None:
    """Process entry: set up, say ready, run from the start time the parent sends, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    side = None
    try:
        side = (Front if config.side == FRONT else Back)(config)
        conn.send(("ready", side.describe()))
        message = conn.recv()
        if message[0] == "start":
            result = side.run(message[1], conn)
            with SEND_LOCK:
                conn.send(("finished", result))
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone
    except BaseException as exc:  # report, keep the traceback on disk, never print it
        (config.folder / f"{log_name(config.side, config.generation)}-error.txt").write_text(traceback.format_exc())
        with contextlib.suppress(OSError), SEND_LOCK:
            conn.send(("error", f"{config.side} side: {type(exc).__name__}: {exc}"))
    finally:
        if side is not None:
            side.close()


def _beat(conn, stop: threading.Event) -> None:
    """The GPU side's heartbeat to the parent, until ``stop`` (the parent judges silence: hil.runner.faults)."""
    while not stop.is_set():
        try:
            with SEND_LOCK:
                conn.send(("beat",))
        except (OSError, ValueError):
            return
        stop.wait(HEARTBEAT)


SEND_LOCK = threading.Lock()  # the heartbeat thread and the main thread share the pipe to the parent


class Side(abc.ABC):
    """What both processes do: queue, batch, run, pass on."""

    def __init__(self, c: WorkerConfig):
        self.c = c
        layout = c.layout
        pin_process(layout.cores[c.side])
        self.stages = layout.stages
        self.n = len(self.stages)
        self.mine = layout.side_stages(c.side)
        self.log = EventLog(c.folder / f"{log_name(c.side, c.generation)}.jsonl")
        fallbacks = layout.fallbacks if c.side == FRONT else ()
        needs_bank = (c.side == FRONT and (layout.uses_frames or bool(fallbacks))) or any(
            s.op in ("parse", "prefilter") for s in self.mine)
        self.frames = FrameBank.of(layout) if needs_bank else None
        self.station = process_station(layout, c.side)
        self.channel = channel_policy(layout)
        self.ops = {s.index: open_op(s, layout, self.frames, c.backend, c.replication) for s in self.mine}
        for f in fallbacks:  # the front's stand-ins for GPU-side stages
            self.ops[f.index] = (Classify(f, self.frames, layout.cores[FRONT], layout.settings.cache)
                                 if f.op == "classify" else open_op(f, layout, self.frames, c.backend, c.replication))
        self.runs = {s.index: s for s in (*self.stages, *fallbacks)}
        seed = layout.scenario.run.seed
        self.faults = WorkerFaults(layout.faults, "to-gpu" if c.side == FRONT else "to-front", seed, c.replication,
                                   c.generation)
        self.held: list[tuple[float, int, Job, int, np.ndarray]] = []  # delayed messages: (due, seq, job, tag, data)
        self.held_seq = 0
        self.draws = {s.index: PassDraws.of(s, seed, c.replication) for s in self.mine
                      if s.pass_probability < 1 and s.op != "prefilter"}
        self.routes = Routes(layout, seed, c.replication)  # entries per class, branches
        self.senders, self.receivers = {}, {}
        for what in (("send", "receive") if c.side == FRONT else ("receive", "send")):  # RDMA pairs in this order
            self.open_ends(what, getattr(c, what))
        self.recorded: dict[str, np.ndarray] = {}
        self.t0 = 0.0
        self.stopping: float | None = None

    def open_ends(self, what: str, specs: dict) -> None:
        """Open this side's senders ("send") or receivers ("receive") on ``specs``, closing any before them."""
        ends = self.senders if what == "send" else self.receivers
        for end in ends.values():
            with contextlib.suppress(Exception):
                end.close()
        ends.clear()
        for kind, spec in specs.items():
            ends[kind] = spec.open_sender() if what == "send" else spec.open_receiver()

    def describe(self) -> dict:
        cores = self.c.layout.cores[self.c.side]
        return {"pid": os.getpid(), "cores": list(cores), "role": side_role(self.c.side, self._backend_kind()),
                "stages": {self.runs[i].name: honest(op.describe(), self.c.side) + self.routes.describe(i, op)
                           for i, op in self.ops.items()}}

    def _backend_kind(self) -> str | None:
        return next((op.backend.kind for op in self.ops.values() if hasattr(op, "backend")), None)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self, t0: float, conn) -> dict:
        self.t0 = t0
        while time.monotonic() < t0:
            time.sleep(min(1e-3, max(0.0, t0 - time.monotonic())))
        beating = threading.Event()
        if self.c.side == GPU:  # a thread: it beats while a long batch runs, and stops only with the process
            beater = threading.Thread(target=_beat, args=(conn, beating), name="heartbeat", daemon=True)
            beater.start()
        try:
            return self.loop(conn)
        finally:
            beating.set()

    def loop(self, conn) -> dict:
        pause = MIN_PAUSE
        while True:
            now = self.now()
            busy = self.tick(now)
            busy |= self.release(now)
            busy |= self.poll()
            while conn.poll():
                self.control(conn.recv(), now)
            decision = self.station.poll(self.now())
            if isinstance(decision, Launch):
                self.execute(decision)
                busy = True
            if self.log.due(now):
                self.log.add("q", now, {self.runs[i].name: d for i, d in self.station.depths().items()})
                self.log.flush(now)
            if self.finished(self.now()):
                return self.wrap_up()
            if busy:
                pause = MIN_PAUSE
                continue
            wait = min(decision, self.wake(), self.held[0][0] if self.held else math.inf) - self.now()
            time.sleep(max(0.0, min(pause, wait)))
            pause = min(2 * pause, MAX_PAUSE)

    def poll(self) -> bool:
        got = False
        for kind, receiver in list(self.receivers.items()):
            for _ in range(32):
                try:
                    msg = receiver.recv(timeout=0, copy=True)
                except ChannelClosed:
                    del self.receivers[kind]
                    break
                if msg is None:
                    break
                got = True
                received = msg.received_at - self.t0
                self.log.add("h", msg.request_id, kind, int(msg.array.nbytes), msg.sent_at - self.t0, received)
                self.deliver(msg, received)
        return got

    def execute(self, launch: Launch) -> None:
        index, jobs = launch.stage, launch.jobs
        stage = self.runs[index]
        start = self.now()
        try:
            self.faults.check(index, start)
            outputs, passed = self.ops[index](jobs)
        except Exception as exc:
            reason = f"stage {stage.name} ({stage.op}) failed: {type(exc).__name__}: {exc}"
            for job in jobs:
                self.attempt_failed(job, self.now(), reason)
            return
        end = self.now()
        self.station.done(launch, end - start)
        if stage.origin >= 0:  # a fallback: logged under the stage it stands in for, on its own pool
            self.log.add("b", index, len(jobs), start, end, stage.pool)
            for job in jobs:
                self.log.add("s", job.id, stage.origin, job.enqueued, start, end, stage.pool)
                self.fallback_done(job, outputs, end)
            return
        self.log.add("b", index, len(jobs), start, end)
        if passed is None and index in self.draws:
            passed = self.draws[index]([j.id for j in jobs]) < stage.pass_probability
        following = self.routes.after(index, [j.id for j in jobs], self.ops[index])
        for k, job in enumerate(jobs):
            self.log.add("s", job.id, index, job.enqueued, start, end)
            self.stage_succeeded(index, end, end - job.enqueued)
            if job.id < self.c.record:
                self.recorded[f"{stage.name}:{job.id}"] = np.array(outputs[k])
            if passed is not None and not passed[k]:
                self.finish(job, Outcome.FILTERED, end)
            else:
                self.forward(job, following[k], outputs[k], end)

    def stage_succeeded(self, stage: int, now: float, latency: float) -> None:
        """An attempt at one of this process's stages succeeded (the front tells its breaker)."""

    def attempt_failed(self, job: Job, now: float, reason: str) -> None:
        """A stage raised: the request ends failed (the front asks its reactions first)."""
        self.finish(job, Outcome.FAILED, now, reason)

    def fallback_done(self, job: Job, outputs, now: float) -> None:
        raise AssertionError("only the front runs fallbacks")

    def forward(self, job: Job, stage: int, data: np.ndarray, now: float) -> None:
        if stage == self.n:
            self.finish(job, Outcome.COMPLETED, now, data=data)
        elif self.stages[stage].side == self.c.side:
            self.enter(job, stage, data, now)
        else:
            self.send(job, stage, data)

    def enter(self, job: Job, stage: int, data: np.ndarray, now: float) -> None:
        job.stage, job.data, job.enqueued = stage, data, now
        if not self.station.offer(job, now):
            self.finish(job, Outcome.DROPPED, now, "refused by the admission policy")

    def send(self, job: Job, tag: int, data: np.ndarray) -> bool:
        """Send ``data`` for ``job`` to the other process; an injected fault may drop or hold it (still True)."""
        delay = self.faults.on_send(self.now())
        if delay is None:
            return True  # lost on the way: the front finds out by a timeout
        if delay > 0:
            heapq.heappush(self.held, (self.now() + delay, self.held_seq, job, tag, np.array(data)))
            self.held_seq += 1
            return True
        return self.transmit(job, tag, data)

    def release(self, now: float) -> bool:
        """Send the held messages that are due."""
        sent = False
        while self.held and self.held[0][0] <= now:
            _, _, job, tag, data = heapq.heappop(self.held)
            self.transmit(job, tag, data)
            sent = True
        return sent

    def transmit(self, job: Job, tag: int, data: np.ndarray) -> bool:
        data = np.ascontiguousarray(data)
        kind = "none"
        try:
            kind = choose_transport(data.nbytes, self.channel, tuple(self.senders))
            stamps = (0.0, 0.0, job.deadline, float(job.priority))
            self.senders[kind].send(Message(job.id, data, tag, stamps), timeout=self.c.reply_timeout)
        except TransportError as exc:
            self.transport_failed(job, kind, exc)
            return False
        return True

    def close(self) -> None:
        for end in (*self.senders.values(), *self.receivers.values(), *self.ops.values()):
            with contextlib.suppress(Exception):
                end.close()
        self.log.close()
        if self.recorded:
            np.savez(self.c.folder / f"{log_name(self.c.side, self.c.generation)}-outputs.npz", **self.recorded)

    # what differs between the two sides
    @abc.abstractmethod
    def tick(self, now: float) -> bool:
        """Side-specific work each turn (issuing, time-outs); True if anything happened."""

    @abc.abstractmethod
    def deliver(self, msg: Message, received: float) -> None:
        """A message from the other process."""

    @abc.abstractmethod
    def finish(self, job: Job, outcome: Outcome, now: float, reason: str = "", data=None) -> None:
        """The request left the pipeline here (completed, filtered, dropped, failed)."""

    @abc.abstractmethod
    def transport_failed(self, job: Job, kind: str, exc: Exception) -> None:
        """A message for ``job`` could not be sent."""

    @abc.abstractmethod
    def control(self, message: tuple, now: float) -> None:
        """A message from the parent: ("stop",) or ("peer-failed", reason)."""

    @abc.abstractmethod
    def finished(self, now: float) -> bool:
        """Whether this process's part of the run is over."""

    @abc.abstractmethod
    def wake(self) -> float:
        """The next time something is due here without a message arriving."""

    @abc.abstractmethod
    def wrap_up(self) -> dict:
        """Last words before exiting; what the parent gets back."""


class Back(Side):
    """The GPU side: runs what it is sent, answers every request."""

    discard_before = -math.inf  # after a hang: messages sent before this are stale (their requests moved on)

    def tick(self, now: float) -> bool:
        return False

    def deliver(self, msg: Message, received: float) -> None:
        if msg.sent_at - self.t0 < self.discard_before:
            return
        job = Job(msg.request_id, msg.tag, msg.stamps[2], int(msg.stamps[3]), msg.array)
        self.enter(job, msg.tag, msg.array, received)

    def finish(self, job: Job, outcome: Outcome, now: float, reason: str = "", data=None) -> None:
        if outcome is Outcome.COMPLETED:
            self.send(job, DONE, data)
        else:
            self.send(job, ENDED, np.frombuffer(f"{outcome.label}\n{job.stage}\n{reason}".encode(), np.uint8))

    def transport_failed(self, job: Job, kind: str, exc: Exception) -> None:
        pass  # the front times the request out with the reason

    def control(self, message: tuple, now: float) -> None:
        if message[0] == "stop":
            self.stopping = now
        elif message[0] == "resumed":  # continued after a hang: what it held, the front has given up on
            self.discard_before = message[1]
            self.station.drain()
            self.held.clear()

    def finished(self, now: float) -> bool:
        return self.stopping is not None or not self.receivers

    def wake(self) -> float:
        return math.inf

    def wrap_up(self) -> dict:
        return {}


@dataclass(frozen=True, slots=True)
class Remote:
    """An attempt the GPU side holds: since when, at which stage."""

    sent: float
    stage: int


class Front(Side):
    """The DPU side: issues the load, owns every request's outcome, reacts to failed attempts."""

    def __init__(self, c: WorkerConfig):
        super().__init__(c)
        self.load = c.load
        self.live: dict[int, Job] = {}
        self.remote: dict[int, Remote] = {}  # attempts the GPU side holds, oldest first
        self.gpu_up = True
        self.down_reason = ""
        resilience = c.layout.resilience
        self.react = FrontReactions(resilience, [s.side == GPU for s in self.stages])
        self.timeouts = [min(c.reply_timeout, t) if t is not None else c.reply_timeout
                         for t in (r.timeout for r in resilience.stages)] if resilience else [c.reply_timeout] * self.n
        self.shortest = min(self.timeouts, default=c.reply_timeout)
        self.client_timeout = resilience.timeout if resilience else None
        self.gives_up: list[tuple[float, int]] = []  # (when the client gives up, id), in issue order
        self.drain = c.layout.scenario.run.drain

    def tick(self, now: float) -> bool:
        issued = self.load.due(now, len(self.live)) if self.stopping is None else []
        for rid, t, source, klass, priority, size, deadline in issued:
            self.log.add("a", rid, t, source, klass, priority, deadline, size)
            data = self.frames.frame(rid) if self.frames is not None else np.zeros(int(size), np.uint8)
            job = self.live[rid] = Job(rid, 0, deadline, priority, data)
            if self.client_timeout is not None:
                self.gives_up.append((t + self.client_timeout, rid))
            self.forward(job, self.routes.entry(klass), data, t)
        busy = bool(issued)
        expired = []
        for rid, remote in self.remote.items():
            if now - remote.sent < self.shortest:
                break
            if now - remote.sent >= self.timeouts[remote.stage]:
                expired.append(rid)
        for rid in expired:
            remote = self.remote.pop(rid)
            if remote.sent + self.c.reply_timeout <= now:
                reason, text = Reason.FAILED, (f"no reply from the GPU side within {self.c.reply_timeout:g} s "
                                               "(backend hung, crashed or too slow)")
            else:
                reason, text = Reason.TIMED_OUT, (f"stage {self.stages[remote.stage].name} timed out after "
                                                  f"{self.timeouts[remote.stage]:g} s")
            self.fail_attempt(self.live[rid], remote.stage, now, reason, now - remote.sent, text)
        k = 0
        while k < len(self.gives_up) and self.gives_up[k][0] <= now:
            job = self.live.get(self.gives_up[k][1])
            if job is not None:
                self.finish(job, Outcome.TIMED_OUT, now, f"the client's timeout ({self.client_timeout:g} s) passed")
            k += 1
        del self.gives_up[:k]
        for rid, stage in self.react.due(now):  # retries
            job = self.live.get(rid)
            if job is not None:
                self.attempt(job, stage, job.data, now)
        return busy or bool(expired) or k > 0

    def forward(self, job: Job, stage: int, data: np.ndarray, now: float) -> None:
        if stage == self.n:
            self.finish(job, Outcome.COMPLETED, now, data=data)
        else:
            self.attempt(job, stage, data, now)

    def attempt(self, job: Job, stage: int, data: np.ndarray, now: float) -> None:
        """An attempt at ``stage``'s main path: the breaker and the GPU side's health first."""
        job.stage, job.data = stage, data
        refused = self.react.admit(job.id, stage, now, self.gpu_up)
        if refused is not None:
            self.follow(job, stage, refused, now, self.refusal_text(stage))
            return
        if self.stages[stage].side == self.c.side:
            self.enter(job, stage, data, now)
        elif self.send(job, stage, data):
            self.remote[job.id] = Remote(now, stage)

    def refusal_text(self, stage: int) -> str:
        if self.stages[stage].side == GPU and not self.gpu_up:
            return self.down_reason
        return f"the circuit breaker of stage {self.stages[stage].name} is open"

    def fail_attempt(self, job: Job, stage: int, now: float, reason: Reason, latency: float, text: str,
                     in_fallback: bool = False) -> None:
        self.follow(job, stage, self.react.failed(job.id, stage, now, reason, latency, in_fallback), now, text)

    def follow(self, job: Job, stage: int, decision: Reaction, now: float, text: str) -> None:
        """Carry out a reaction: a retry waits for its timer, a fallback runs here, else the request ends."""
        if isinstance(decision, Retry):
            self.log.add("r", job.id, stage, now, decision.delay)
        elif isinstance(decision, Fallback):
            fallback = self.c.layout.fallback_of(stage)
            self.log.add("f", job.id, stage, now, int(decision.reason))
            job.stage = fallback.index
            if not self.station.offer(job, now):
                self.finish(job, Outcome.DROPPED, now, "refused by the admission policy")
        else:
            assert isinstance(decision, GiveUp)
            self.finish(job, decision.outcome, now, text)

    def stage_succeeded(self, stage: int, now: float, latency: float) -> None:
        self.react.succeeded(stage, now, latency)

    def attempt_failed(self, job: Job, now: float, reason: str) -> None:
        run = self.runs[job.stage]
        if run.origin >= 0:
            self.fail_attempt(job, run.origin, now, Reason.FAILED, 0.0, reason, in_fallback=True)
        else:
            self.fail_attempt(job, job.stage, now, Reason.FAILED, now - job.enqueued, reason)

    def fallback_done(self, job: Job, outputs, now: float) -> None:
        run = self.runs[job.stage]
        if self.c.layout.resilience.stages[run.origin].fallback.degraded:
            self.finish(job, Outcome.DEGRADED, now)  # the classifier's label is the answer
        else:
            self.forward(job, self.routes.after(run.origin, [job.id], None)[0],
                         outputs[0] if len(outputs) == 1 else outputs, now)

    def deliver(self, msg: Message, received: float) -> None:
        remote = self.remote.pop(msg.request_id, None)
        job = self.live.get(msg.request_id)
        if job is None or remote is None:
            return  # a late answer: the request ended, or this attempt was already given up on
        if msg.tag >= 0 or msg.tag == DONE:
            self.react.succeeded(remote.stage, received, received - remote.sent)
            if msg.tag >= 0:
                self.attempt(job, msg.tag, msg.array, received)
            else:
                self.finish(job, Outcome.COMPLETED, received)
            return
        label, _, rest = msg.array.tobytes().decode(errors="replace").partition("\n")
        stage, _, reason = rest.partition("\n")
        try:
            outcome = Outcome.from_label(label)
        except ValueError as error:
            outcome, reason = Outcome.FAILED, f"the GPU side sent an unreadable ending: {error}"
        if outcome is Outcome.FAILED:
            where = int(stage) if stage.isdigit() and int(stage) < self.n else remote.stage
            self.fail_attempt(job, where, received, Reason.FAILED, received - remote.sent, reason)
        else:
            self.finish(job, outcome, received, reason)

    def finish(self, job: Job, outcome: Outcome, now: float, reason: str = "", data=None) -> None:
        if self.live.pop(job.id, None) is None:
            return
        self.remote.pop(job.id, None)
        self.react.forget(job.id)
        if outcome is Outcome.COMPLETED and now > job.deadline:
            outcome = Outcome.DEADLINE_MISSED
        self.log.add("d", job.id, now, outcome.label, reason)

    def transport_failed(self, job: Job, kind: str, exc: Exception) -> None:
        self.fail_attempt(job, job.stage, self.now(), Reason.FAILED, 0.0,
                          f"sending to the GPU side over {kind} failed: {exc}")

    def control(self, message: tuple, now: float) -> None:
        kind = message[0]
        if kind == "stop" and self.stopping is None:
            self.stopping = now
            self.load.stop(now)
        elif kind == "peer-down":  # the GPU side died or went silent: every attempt it holds has failed
            self.gpu_up, self.down_reason = False, message[1]
            held, self.remote = self.remote, {}
            for rid, remote in held.items():
                self.fail_attempt(self.live[rid], remote.stage, now, Reason.FAILED, now - remote.sent, message[1])
        elif kind == "peer-up":
            self.gpu_up = True
        elif kind == "reconnect-receive":  # a fresh GPU-side worker is starting: listen for it
            self.open_ends("receive", message[1])
        elif kind == "reconnect-send":  # ... and it is ready: connect to it
            self.open_ends("send", message[1])

    def finished(self, now: float) -> bool:
        if self.stopping is not None:
            return not self.live or now > self.stopping + GRACE
        return self.load.end is not None and (not self.live or now > self.load.end + self.drain)

    def wake(self) -> float:
        remote = next(iter(self.remote.values()), None)
        oldest = remote.sent + self.shortest if remote is not None else math.inf
        gives_up = self.gives_up[0][0] if self.gives_up else math.inf
        return min(oldest, gives_up, self.react.next_time(),
                   self.load.next_time() if self.stopping is None else math.inf)

    def wrap_up(self) -> dict:
        now = self.now()
        for job in list(self.live.values()):
            self.log.add("d", job.id, math.nan, Outcome.UNFINISHED.label, "still in the pipeline when the run ended")
            self.live.pop(job.id)
        self.log.flush(now)
        return {"end": self.load.end if self.load.end is not None else now}
