"""The two worker processes: the front (the DPU's side) and the GPU side.

Each is one process pinned to its own cores, running one loop: take in
what arrived (new requests on the front, messages from the other process
on both), ask the ``Station`` which batch to run, run it with the stage's
op, and pass each job on: to the next stage here, across the transport to
the other process, or out of the pipeline. No threads: the process is one
server, as a pool's core (or GPU stream) is in the simulator.

The front owns the requests: it issues them from the load generator,
decides their outcome (completed or deadline missed, filtered, dropped,
failed, unfinished) and watches the ones the GPU side holds; a request the
GPU side does not hand back within ``reply_timeout`` fails with that
reason, and when the parent reports the GPU side dead, every request there
fails with the exit status. The GPU side answers every request it was sent:
the next stage's input, or a notice of how the request ended.

Messages carry the request id, the stage to run next as the tag
(``DONE``: the pipeline's result; ``ENDED``: the request ended otherwise,
the payload being "outcome\nreason"), and the deadline and priority in two
stamp slots. The transport for each message is chosen by the scenario's channel
policy from its size, among the transports opened.
"""

from __future__ import annotations

import abc
import contextlib
import math
import os
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.backends.ort_cpu import pin_process
from hil.runner.layout import FRONT, Layout
from hil.runner.ops import FrameBank, PassDraws, honest, open_op, side_role
from hil.runner.station import Job, channel_policy, process_station
from hil.runner.stream import EventLog
from sim.contract.outcomes import Outcome
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


def main(config: WorkerConfig, conn) -> None:
    """Process entry: set up, say ready, run from the start time the parent sends, report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    side = None
    try:
        side = (Front if config.side == FRONT else Back)(config)
        conn.send(("ready", side.describe()))
        message = conn.recv()
        if message[0] == "start":
            conn.send(("finished", side.run(message[1], conn)))
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone
    except BaseException as exc:  # report, keep the traceback on disk, never print it
        (config.folder / f"{config.side}-error.txt").write_text(traceback.format_exc())
        with contextlib.suppress(OSError):
            conn.send(("error", f"{config.side} side: {type(exc).__name__}: {exc}"))
    finally:
        if side is not None:
            side.close()


class Side(abc.ABC):
    """What both processes do: queue, batch, run, pass on."""

    def __init__(self, c: WorkerConfig):
        self.c = c
        layout = c.layout
        pin_process(layout.cores[c.side])
        self.stages = layout.stages
        self.n = len(self.stages)
        self.mine = layout.side_stages(c.side)
        self.log = EventLog(c.folder / f"{c.side}.jsonl")
        needs_bank = (c.side == FRONT and layout.uses_frames) or any(s.op in ("parse", "prefilter") for s in self.mine)
        self.frames = FrameBank.of(layout) if needs_bank else None
        self.station = process_station(layout, c.side)
        self.channel = channel_policy(layout)
        self.ops = {s.index: open_op(s, layout, self.frames, c.backend, c.replication) for s in self.mine}
        seed = layout.scenario.run.seed
        self.draws = {s.index: PassDraws.of(s, seed, c.replication) for s in self.mine
                      if s.pass_probability < 1 and s.op != "prefilter"}
        self.senders, self.receivers = {}, {}
        for what in (("send", "receive") if c.side == FRONT else ("receive", "send")):  # RDMA pairs in this order
            for kind, spec in getattr(c, what).items():
                if what == "send":
                    self.senders[kind] = spec.open_sender()
                else:
                    self.receivers[kind] = spec.open_receiver()
        self.recorded: dict[str, np.ndarray] = {}
        self.t0 = 0.0
        self.stopping: float | None = None

    def describe(self) -> dict:
        cores = self.c.layout.cores[self.c.side]
        return {"pid": os.getpid(), "cores": list(cores), "role": side_role(self.c.side, self._backend_kind()),
                "stages": {self.stages[i].name: honest(op.describe(), self.c.side) for i, op in self.ops.items()}}

    def _backend_kind(self) -> str | None:
        return next((op.backend.kind for op in self.ops.values() if hasattr(op, "backend")), None)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self, t0: float, conn) -> dict:
        self.t0 = t0
        while time.monotonic() < t0:
            time.sleep(min(1e-3, max(0.0, t0 - time.monotonic())))
        pause = MIN_PAUSE
        while True:
            now = self.now()
            busy = self.tick(now)
            busy |= self.poll()
            while conn.poll():
                self.control(conn.recv(), now)
            decision = self.station.poll(self.now())
            if isinstance(decision, Launch):
                self.execute(decision)
                busy = True
            if self.log.due(now):
                self.log.add("q", now, {self.stages[i].name: d for i, d in self.station.depths().items()})
                self.log.flush(now)
            if self.finished(self.now()):
                return self.wrap_up()
            if busy:
                pause = MIN_PAUSE
                continue
            wait = min(decision, self.wake()) - self.now()
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
        stage = self.stages[index]
        start = self.now()
        try:
            outputs, passed = self.ops[index](jobs)
        except Exception as exc:
            reason = f"stage {stage.name} ({stage.op}) failed: {type(exc).__name__}: {exc}"
            for job in jobs:
                self.finish(job, Outcome.FAILED, self.now(), reason)
            return
        end = self.now()
        self.station.done(launch, end - start)
        self.log.add("b", index, len(jobs), start, end)
        if passed is None and index in self.draws:
            passed = self.draws[index]([j.id for j in jobs]) < stage.pass_probability
        for k, job in enumerate(jobs):
            self.log.add("s", job.id, index, job.enqueued, start, end)
            if job.id < self.c.record:
                self.recorded[f"{stage.name}:{job.id}"] = np.array(outputs[k])
            if passed is not None and not passed[k]:
                self.finish(job, Outcome.FILTERED, end)
            else:
                self.forward(job, index + 1, outputs[k], end)

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
            np.savez(self.c.folder / f"{self.c.side}-outputs.npz", **self.recorded)

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

    def tick(self, now: float) -> bool:
        return False

    def deliver(self, msg: Message, received: float) -> None:
        job = Job(msg.request_id, msg.tag, msg.stamps[2], int(msg.stamps[3]), msg.array)
        self.enter(job, msg.tag, msg.array, received)

    def finish(self, job: Job, outcome: Outcome, now: float, reason: str = "", data=None) -> None:
        if outcome is Outcome.COMPLETED:
            self.send(job, DONE, data)
        else:
            self.send(job, ENDED, np.frombuffer(f"{outcome.label}\n{reason}".encode(), np.uint8))

    def transport_failed(self, job: Job, kind: str, exc: Exception) -> None:
        pass  # the front times the request out with the reason

    def control(self, message: tuple, now: float) -> None:
        if message[0] == "stop":
            self.stopping = now

    def finished(self, now: float) -> bool:
        return self.stopping is not None or not self.receivers

    def wake(self) -> float:
        return math.inf

    def wrap_up(self) -> dict:
        return {}


class Front(Side):
    """The DPU side: issues the load, owns every request's outcome."""

    def __init__(self, c: WorkerConfig):
        super().__init__(c)
        self.load = c.load
        self.live: dict[int, Job] = {}
        self.remote: dict[int, float] = {}  # requests the GPU side holds: id -> when sent, oldest first
        self.peer_failed: str | None = None
        self.drain = c.layout.scenario.run.drain

    def tick(self, now: float) -> bool:
        issued = self.load.due(now, len(self.live)) if self.stopping is None else []
        for rid, t, source, klass, priority, size, deadline in issued:
            self.log.add("a", rid, t, source, klass, priority, deadline, size)
            data = self.frames.frame(rid) if self.frames is not None else np.zeros(int(size), np.uint8)
            job = self.live[rid] = Job(rid, 0, deadline, priority, data)
            self.forward(job, 0, data, t)
        expired = []
        for rid, sent in self.remote.items():
            if now - sent < self.c.reply_timeout:
                break
            expired.append(rid)
        for rid in expired:
            self.finish(self.live[rid], Outcome.FAILED, now, f"no reply from the GPU side within "
                        f"{self.c.reply_timeout:g} s (backend hung, crashed or too slow)")
        return bool(issued or expired)

    def deliver(self, msg: Message, received: float) -> None:
        self.remote.pop(msg.request_id, None)
        job = self.live.get(msg.request_id)
        if job is None:
            return  # already ended (timed out): a late answer
        if msg.tag >= 0:
            self.enter(job, msg.tag, msg.array, received)
        elif msg.tag == DONE:
            self.finish(job, Outcome.COMPLETED, received)
        else:
            label, _, reason = msg.array.tobytes().decode(errors="replace").partition("\n")
            try:
                outcome = Outcome.from_label(label)
            except ValueError as error:
                outcome, reason = Outcome.FAILED, f"the GPU side sent an unreadable ending: {error}"
            self.finish(job, outcome, received, reason)

    def send(self, job: Job, tag: int, data: np.ndarray) -> bool:
        if self.peer_failed:
            self.finish(job, Outcome.FAILED, self.now(), self.peer_failed)
            return False
        if super().send(job, tag, data):
            self.remote[job.id] = self.now()
            return True
        return False

    def finish(self, job: Job, outcome: Outcome, now: float, reason: str = "", data=None) -> None:
        if self.live.pop(job.id, None) is None:
            return
        self.remote.pop(job.id, None)
        if outcome is Outcome.COMPLETED and now > job.deadline:
            outcome = Outcome.DEADLINE_MISSED
        self.log.add("d", job.id, now, outcome.label, reason)

    def transport_failed(self, job: Job, kind: str, exc: Exception) -> None:
        self.finish(job, Outcome.FAILED, self.now(), f"sending to the GPU side over {kind} failed: {exc}")

    def control(self, message: tuple, now: float) -> None:
        if message[0] == "stop" and self.stopping is None:
            self.stopping = now
            self.load.stop(now)
        elif message[0] == "peer-failed":
            self.peer_failed = message[1]
            for rid in list(self.remote):
                self.finish(self.live[rid], Outcome.FAILED, now, message[1])

    def finished(self, now: float) -> bool:
        if self.stopping is not None:
            return not self.live or now > self.stopping + GRACE
        return self.load.end is not None and (not self.live or now > self.load.end + self.drain)

    def wake(self) -> float:
        oldest = next(iter(self.remote.values()), math.inf) + self.c.reply_timeout
        return min(oldest, self.load.next_time() if self.stopping is None else math.inf)

    def wrap_up(self) -> dict:
        now = self.now()
        for job in list(self.live.values()):
            self.log.add("d", job.id, math.nan, Outcome.UNFINISHED.label, "still in the pipeline when the run ended")
            self.live.pop(job.id)
        self.log.flush(now)
        return {"end": self.load.end if self.load.end is not None else now}
