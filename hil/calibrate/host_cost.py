"""The CPU time each transport costs its two ends, per message and per byte.

A courier's fee is not the delivery time: a parcel can spend an hour in a
van while the clerk who packed it worked two minutes. The simulator's
links charge the sending and the receiving device CPU time per message
(``send_cost`` / ``receive_cost``: ``per_message + per_byte * bytes``, run as
jobs on the device's cores), so what must be measured is the clerks' time,
not the van's: the **CPU time** of the thread that calls ``send`` and of
the thread that calls ``recv``, read from ``time.thread_time()``
(CLOCK_THREAD_CPUTIME_ID: user and kernel time of this thread only,
nanosecond resolution; time spent blocked or preempted is not counted).
The wall time of the same calls is kept beside it: the difference is
waiting.

The two ends are two processes pinned to their own cores (the front core
and the GPU-side core, as ``dgsim hil calibrate`` lays them out) and joined
by one channel of the harness's own transports (``hil.transports``), used
as the harness uses them: ``send`` on one side, ``recv(copy=True)`` and
``release`` on the other (the harness's GPU-side worker detaches every
message from the ring or socket buffer with that copy). Messages go one at
a time, in lock step, over a control pipe whose traffic is outside the
timed calls:

- the sender times ``send``; a ring is large enough that ``send`` never
  waits for room;
- the receiver of a *polling* transport (shm, rdma) is told to read only
  once ``send`` has returned, so ``recv`` finds the message there, as the
  harness's polling loop finds it, and no spin-wait is timed; the receiver
  of a *blocking* transport (tcp) is told to read before the message is
  sent and waits in the kernel (no CPU) as a socket reader does; a message
  larger than the socket buffers could not be sent otherwise;
- the receiver answers with its times, and the next message goes.

That is the cost of a message that wakes its threads, as in the harness's
request-at-a-time loops; on a shared host the woken thread finds its caches
cold, which shows in the per-message cost. ``Effort.burst`` sends that many
messages back to back per timed round instead (the streaming cost, caches
warm); ``benchmarks/transports.py --host-costs`` measures both side by side.

``fit_host_cost`` fits ``cpu = per_message + per_byte * bytes`` per side by
least squares weighted for relative error (each sample weighs 1 / mean^2 of
its size, as ``hil.calibrate.fit`` does for latencies: unweighted, the
16 MiB messages' jitter would decide the per-message cost), with scipy's
``curve_fit`` giving the covariance and ``scipy.stats.t`` the 95%
confidence intervals. CUDA host-to-device copies (``cuda_host_cost``) have
one host side, the sender's: staging into pinned memory, the
``cudaMemcpyAsync`` call and the stream synchronisation (which may spin).

What this does not see: on loopback TCP the kernel's receive processing
(softirq) runs in the *sender's* system call and is counted there; with a
real NIC it runs in interrupt context on the receiving host and is charged
to no thread. Host cores stand in for whatever device a scenario names.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Callable, Literal, Sequence

import numpy as np
from scipy import optimize, stats

from hil.calibrate.fit import mape, r_squared
from hil.calibrate.measure import pinned
from hil.transports import Message, create_channel
from hil.transports.base import HEADER_SIZE, ChannelSpec, align
from sim.calibration import HostCostEntry, HostCostPoint

Side = Literal["send", "receive"]
BLOCKING = frozenset({"tcp"})  # receivers that wait in the kernel; the others poll


@dataclass(frozen=True)
class Effort:
    """How many messages per size: up to ``messages``, stopping after ``budget_s`` once ``least`` are in."""

    messages: int = 300
    budget_s: float = 1.0
    least: int = 30
    warmup: int = 5
    burst: int = 1  # messages sent back to back per timed round (a ring holds at most BURST_BYTES of them)


BURST_BYTES = 32 << 20
FULL_EFFORT = Effort()
QUICK_EFFORT = Effort(messages=60, budget_s=0.25, least=10, warmup=3)


@dataclass(frozen=True)
class SideSamples:
    """CPU and wall seconds of each timed call of one side, at one message size."""

    size: int
    cpu: np.ndarray
    wall: np.ndarray


@dataclass(frozen=True)
class ChannelSamples:
    """Both sides' samples at every size, and the median CPU cost of an empty timed region (the clock's own)."""

    send: list[SideSamples]
    receive: list[SideSamples]
    clock_s: float


@dataclass(frozen=True)
class HostCostFit:
    """``cpu = per_message + per_byte * bytes`` with 95% confidence intervals and fit quality."""

    per_message: float
    per_byte: float
    per_message_ci: tuple[float, float]
    per_byte_ci: tuple[float, float]
    r2: float
    mape: float
    n: int


def fit_host_cost(sizes: np.ndarray, cpu: np.ndarray) -> HostCostFit:
    """Fit CPU seconds against bytes, weighted for relative error; needs two or more distinct sizes."""
    x, y = np.asarray(sizes, dtype=float), np.asarray(cpu, dtype=float)
    xs, index, counts = np.unique(x, return_inverse=True, return_counts=True)
    if len(xs) < 2 or len(y) < 3:
        raise ValueError("a host-cost fit needs samples at two or more distinct sizes")
    means = np.bincount(index, weights=y) / counts
    if np.any(means <= 0):
        raise ValueError("mean CPU time must be positive at every size")
    (a, b), covariance = optimize.curve_fit(lambda s, a, b: a + b * s, x, y, p0=(means[0], 0.0),
                                            sigma=means[index], absolute_sigma=False)
    half = stats.t.ppf(0.975, len(y) - 2) * np.sqrt(np.diag(covariance))
    fitted = a + b * xs
    return HostCostFit(float(a), float(b), (float(a - half[0]), float(a + half[0])),
                       (float(b - half[1]), float(b + half[1])), r_squared(means, fitted), mape(means, fitted), len(y))


def host_cost_entry(transport: str, side: Side, samples: Sequence[SideSamples], measured: str) -> HostCostEntry:
    """A ``host_cost`` calibration entry from one side's samples at every size."""
    sizes = np.concatenate([np.full(len(s.cpu), s.size, dtype=float) for s in samples])
    fit = fit_host_cost(sizes, np.concatenate([s.cpu for s in samples]))
    return HostCostEntry(
        kind="host_cost", transport=transport, side=side, per_message=_round(fit.per_message),
        per_byte=_round(fit.per_byte), per_message_ci=tuple(map(_round, fit.per_message_ci)),
        per_byte_ci=tuple(map(_round, fit.per_byte_ci)), r2=_round(fit.r2), mape=_round(fit.mape), n=fit.n,
        measured=measured,
        points=[HostCostPoint(bytes=s.size, n=len(s.cpu), cpu_mean=_round(float(np.mean(s.cpu))),
                              cpu_p50=_round(float(np.median(s.cpu))), wall_mean=_round(float(np.mean(s.wall))))
                for s in samples],
    )


def _round(value: float) -> float:
    return float(f"{value:.6g}")


# --- measuring a channel -----------------------------------------------------------------


def _receiving_end(spec: ChannelSpec, control: Connection, core: int | None) -> None:
    """The far end: on each order of n, receive n messages (detached, as the harness does) and report the times."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    with spec.open_receiver() as receiver:
        while count := control.recv():
            wall, cpu = time.perf_counter(), time.thread_time()
            for _ in range(count):
                msg = receiver.recv(timeout=None, copy=True)
                receiver.release()
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            control.send((cpu, wall, msg.array.nbytes))


def burst_of(size: int, effort: Effort) -> int:
    """Messages per timed round at ``size``: ``effort.burst``, as far as BURST_BYTES of ring allow."""
    return max(1, min(effort.burst, BURST_BYTES // align(HEADER_SIZE + size)))


def measure_channel(kind: str, sizes: Sequence[int], effort: Effort = FULL_EFFORT, send_core: int | None = None,
                    receive_core: int | None = None, report: Callable[[str], None] = lambda _: None
                    ) -> ChannelSamples:
    """CPU and wall time of ``send`` and of ``recv`` for each size, over one ``kind`` channel.

    With ``effort.burst`` > 1, each timed round sends that many messages back
    to back and the receiver reads them back to back (after the last send
    returned, or concurrently for a blocking transport): a sample is then
    the round's time divided by its messages, the cost of a message when
    the caller's code and data stay in cache.
    """
    ring = max((burst_of(size, effort) + 1) * align(HEADER_SIZE + size) for size in sizes) + 4096
    options = {"capacity": max(1 << 16, ring)} if kind in ("shm", "rdma") else {}
    channel = create_channel(kind, **options).create()
    here, there = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=_receiving_end, args=(channel.spec, there,
                                                                                         receive_core), daemon=True)
    blocking = kind in BLOCKING
    out: dict[Side, list[SideSamples]] = {"send": [], "receive": []}
    clock: list[float] = []
    try:
        process.start()
        with pinned([send_core] if send_core is not None else sorted(os.sched_getaffinity(0))), \
                channel.spec.open_sender() as sender:
            for size in sizes:
                payload = np.ones(size, np.uint8)
                rows: list[tuple[float, float, float, float]] = []
                begin = time.perf_counter()
                burst = burst_of(size, effort)
                rounds = max(1, effort.messages // burst)
                for i in range(effort.warmup + rounds):
                    if blocking:
                        here.send(burst)
                    wall, cpu = time.perf_counter(), time.thread_time()
                    for j in range(burst):
                        sender.send(Message(j, payload))
                    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                    if not blocking:
                        here.send(burst)
                    if not here.poll(60):
                        raise TimeoutError(f"the {kind} receiver did not answer within 60 s")
                    recv_cpu, recv_wall, got = here.recv()
                    if got != size:
                        raise RuntimeError(f"{kind}: sent {size} bytes, received {got}")
                    if i >= effort.warmup:
                        rows.append((cpu / burst, wall / burst, recv_cpu / burst, recv_wall / burst))
                        if len(rows) * burst >= effort.least and time.perf_counter() - begin > effort.budget_s:
                            break
                table = np.array(rows)
                out["send"].append(SideSamples(size, table[:, 0], table[:, 1]))
                out["receive"].append(SideSamples(size, table[:, 2], table[:, 3]))
                report(f"host cost {kind} {size} B: send {np.mean(table[:, 0]) * 1e6:.1f} us CPU "
                       f"({np.mean(table[:, 1]) * 1e6:.1f} wall), receive {np.mean(table[:, 2]) * 1e6:.1f} us CPU "
                       f"({np.mean(table[:, 3]) * 1e6:.1f} wall), {len(rows) * burst} messages"
                       + (f" in bursts of {burst}" if burst > 1 else ""))
            for _ in range(effort.least):  # the clock's own cost, inside every sample
                cpu = time.thread_time()
                clock.append(time.thread_time() - cpu)
        here.send(False)
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
        here.close()
        there.close()
        channel.close()
    samples = ChannelSamples(out["send"], out["receive"], float(np.median(clock)))
    report(f"host cost {kind}: an empty timed region costs {samples.clock_s * 1e6:.2f} us CPU (median)")
    return samples


def host_cost_entries(kind: str, sizes: Sequence[int], effort: Effort = FULL_EFFORT, send_core: int | None = None,
                      receive_core: int | None = None, report: Callable[[str], None] = lambda _: None
                      ) -> dict[str, HostCostEntry]:
    """``host.<kind>.send`` and ``host.<kind>.receive``: each side's CPU time against message size."""
    samples = measure_channel(kind, sizes, effort, send_core, receive_core, report)
    where = (f"sender on core {send_core}, receiver on core {receive_core}" if send_core is not None
             else "not pinned")
    how = ("the receiver waits in a blocking recv (no CPU while waiting) and is timed from before the message is "
           "sent" if kind in BLOCKING else "the receiver is timed from after send returned (the message is there; "
           "no polling is timed)")
    pace = ("one message at a time" if effort.burst == 1 else f"in bursts of up to {effort.burst} messages back to "
            "back (a sample is a burst's time / its messages)")
    measured = {side: (f"CPU time (time.thread_time, this thread's user + system time) of {call} on a {kind} "
                       f"channel between two processes, {pace}; {where} (host cores standing in "
                       f"for the scenario's devices); {how}; x = payload bytes (the 128-byte header not counted); "
                       f"each sample includes the clock's own cost, {samples.clock_s * 1e6:.2g} us (median of an "
                       "empty timed region)")
                for side, call in (("send", "send()"), ("receive", "recv(copy=True) + release(), as the harness's "
                                                                    "worker receives"))}
    if kind == "tcp":
        measured["send"] += ("; loopback: the kernel's receive processing runs in the sender's system call and is "
                             "counted here, not on the receiver")
    return {f"host.{kind}.{side}": host_cost_entry(kind, side, getattr(samples, side), measured[side])
            for side in ("send", "receive")}


def cuda_host_cost(sizes: Sequence[int], effort: Effort = FULL_EFFORT, core: int | None = None,
                   report: Callable[[str], None] = lambda _: None) -> HostCostEntry:
    """``host.cuda.send``: the host CPU time of a host-to-device copy (staging, cudaMemcpyAsync, synchronise).

    Needs a usable GPU (``hil.transports.cuda_copy.probe_cuda``); raises the
    transport's error otherwise.
    """
    from hil.transports.cuda_copy import DeviceStager

    samples = []
    with pinned([core] if core is not None else sorted(os.sched_getaffinity(0))), DeviceStager(max(sizes)) as stager:
        for size in sizes:
            payload = np.ones(size, np.uint8)
            rows = []
            begin = time.perf_counter()
            for i in range(effort.warmup + effort.messages):
                wall, cpu = time.perf_counter(), time.thread_time()
                stager.to_device(payload)
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                if i >= effort.warmup:
                    rows.append((cpu, wall))
                    if len(rows) >= effort.least and time.perf_counter() - begin > effort.budget_s:
                        break
            table = np.array(rows)
            samples.append(SideSamples(size, table[:, 0], table[:, 1]))
            report(f"host cost cuda {size} B: {np.mean(table[:, 0]) * 1e6:.1f} us CPU "
                   f"({np.mean(table[:, 1]) * 1e6:.1f} wall)")
    return host_cost_entry("cuda", "send", samples, (
        "CPU time (time.thread_time) of a host-to-device copy: numpy copy into pinned staging, cudaMemcpyAsync, "
        f"cudaStreamSynchronize (which may spin: CUDA's default scheduling); core {core}; x = bytes"))
