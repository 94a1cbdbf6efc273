"""Latency and bandwidth of the harness transports, measured the way perftest does.

For each transport and each message size (4 KiB to 8 MiB in powers of two)
a child process echoes on a pair of channels (there and back):

- latency: ping-pong. The parent sends one message, the child sends the
  same array back, the parent times the round trip; one-way latency is
  RTT/2 as perftest reports it. Median ("typical") and p99 over every
  sample after a warm-up.
- bandwidth: streaming. The parent sends ``n`` messages back to back, then
  a flush; the child answers the flush with a tiny ack; GB/s =
  ``n * size`` / elapsed (1 GB = 1e9 bytes, as perftest).

Iterations are bounded by count and by a time budget per measurement, so
the default run takes about a minute on two cores. The echo copies each
message into its return channel, as a real consumer would.

    python benchmarks/transports.py [--kinds shm,tcp] [--budget 0.8] [--out reports/transports.md]

``--host-costs`` measures instead the CPU time each end of each transport
spends per message and per byte (``hil.calibrate.host_cost``: the
``host.<kind>.<side>`` calibration entries ``dgsim hil calibrate`` writes;
64 B to 16 MiB in powers of 4, sender and receiver pinned to their own
cores), and with ``--out FILE.md`` replaces only that section of the file:

    python benchmarks/transports.py --host-costs --out reports/transports.md
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hil.transports import Channel, Message, create_channel
from hil.transports.base import Backoff

PING, DATA, FLUSH, STOP = 0, 1, 2, 3
ACK = np.zeros(1, np.uint8)


@dataclass(frozen=True)
class Row:
    kind: str
    size: int
    lat_iters: int
    lat_median_us: float
    lat_p99_us: float
    bw_msgs: int
    bw_gbps: float


def echo(there, back) -> None:
    """The child: answer pings with the same array, flushes with an ack, stop on STOP."""
    with there.open_receiver() as rx, back.open_sender() as tx:
        while True:
            m = rx.recv(timeout=60)
            if m is None or m.tag == STOP:
                return
            if m.tag == PING:
                tx.send(Message(m.request_id, m.array, PING))
            elif m.tag == FLUSH:
                tx.send(Message(m.request_id, ACK, FLUSH))


def open_pair(kind: str, max_size: int, backoff: Backoff) -> tuple[list[Channel], mp.Process]:
    options = {"capacity": 4 * max_size, "backoff": backoff} if kind in ("shm", "rdma") else {}
    channels = [create_channel(kind, **options).create() for _ in range(2)]
    child = mp.get_context("fork").Process(target=echo, args=(channels[0].spec, channels[1].spec), daemon=True)
    child.start()
    return channels, child


def latency(tx, rx, array: np.ndarray, budget: float, max_iters: int) -> np.ndarray:
    """One-way latencies (RTT/2) in seconds, after a warm-up of a tenth of the budget."""
    samples = []
    warm_until = time.perf_counter() + budget / 10
    stop = warm_until + budget
    for i in range(10**9):
        t0 = time.perf_counter()
        tx.send(Message(i, array, PING))
        rx.recv(timeout=30)
        t1 = time.perf_counter()
        if t0 >= warm_until:
            samples.append((t1 - t0) / 2)
        if len(samples) >= max_iters or (t1 >= stop and len(samples) >= 10):
            break
    return np.array(samples)


def stream(tx, rx, array: np.ndarray, n: int) -> float:
    """Seconds to send ``n`` messages and have the last one acknowledged."""
    t0 = time.perf_counter()
    for i in range(n):
        tx.send(Message(i, array, DATA))
    tx.send(Message(n, ACK, FLUSH))
    rx.recv(timeout=60)
    return time.perf_counter() - t0


def measure(kind: str, sizes: list[int], budget: float, max_iters: int, backoff: Backoff) -> list[Row]:
    channels, child = open_pair(kind, max(sizes), backoff)
    rows = []
    try:
        with channels[0].spec.open_sender() as tx, channels[1].spec.open_receiver() as rx:
            for size in sizes:
                array = np.ones(size, np.uint8)
                lat = latency(tx, rx, array, budget, max_iters)
                n = int(np.clip(budget / max(float(np.median(lat)), 1e-7), 16, 20 * max_iters))
                stream(tx, rx, array, max(n // 10, 4))  # warm-up
                seconds = stream(tx, rx, array, n)
                rows.append(Row(kind, size, len(lat), float(np.median(lat) * 1e6),
                                float(np.percentile(lat, 99) * 1e6), n, n * size / seconds / 1e9))
                print(format_row(rows[-1]), flush=True)
            tx.send(Message(0, ACK, STOP))
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
        for channel in channels:
            channel.close()
    return rows


def human(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


HEAD = ("kind", "size", "lat iters", "one-way median us", "one-way p99 us", "stream msgs", "bandwidth GB/s")


def format_row(r: Row) -> str:
    cells = (r.kind, human(r.size), r.lat_iters, f"{r.lat_median_us:.1f}", f"{r.lat_p99_us:.1f}", r.bw_msgs,
             f"{r.bw_gbps:.2f}")
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(rows: list[Row], note: str) -> str:
    lines = [note, "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    return "\n".join(lines + [format_row(r) for r in rows]) + "\n"


HOST_SECTION = "## Host CPU cost per message and byte"


BURST = 16


def host_costs(kinds: list[str]) -> str:
    """Measure every side of every kind, one at a time and in bursts, side by side; the report section."""
    import dataclasses
    import subprocess

    from hil.calibrate.host_cost import FULL_EFFORT, cuda_host_cost, host_cost_entries
    from hil.calibrate.scenario import cpu_model
    from hil.calibrate.transport import FULL_SIZES
    from hil.transports import available_channel_kinds
    from hil.transports.cuda_copy import probe_cuda
    from hil.transports.rdma import probe_rdma

    cores = sorted(os.sched_getaffinity(0))
    send_core, receive_core = (cores[0], cores[1]) if len(cores) > 1 else (None, None)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip() or "unknown"
    load_start, cpu_start, wall_start = os.getloadavg(), time.process_time(), time.perf_counter()
    paces = {1: FULL_EFFORT, BURST: dataclasses.replace(FULL_EFFORT, burst=BURST, messages=20 * BURST)}
    entries, skipped = {}, []
    available = available_channel_kinds()
    for kind in kinds + [k for k in ("rdma",) if k not in kinds]:
        if kind not in available:
            reason = "; ".join(c.detail for c in probe_rdma()) if kind == "rdma" else "not available"
            skipped.append(f"{kind}: {reason}")
            continue
        for burst, effort in paces.items():  # side by side: the same channel kind, one after the other
            for name, entry in host_cost_entries(kind, FULL_SIZES, effort, send_core, receive_core, print).items():
                entries[name, burst] = entry
    cuda = probe_cuda()
    if cuda.available:
        entries["host.cuda.send", 1] = cuda_host_cost(FULL_SIZES, FULL_EFFORT, receive_core, print)
    else:
        skipped.append(f"cuda: {cuda.detail}")
    load_end = os.getloadavg()

    def pace(burst: int) -> str:
        return "one at a time" if burst == 1 else f"bursts of {burst}"

    lines = [
        f"Generated by `python benchmarks/transports.py --host-costs --out reports/transports.md` at commit {commit}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, on {cpu_model()} ({os.cpu_count()} CPUs, KVM guest "
        f"shared with other sessions), sender on core {send_core}, receiver on core {receive_core}; 1-minute load "
        f"average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; "
        f"{time.perf_counter() - wall_start:.0f} s wall, {time.process_time() - cpu_start:.1f} s CPU (this process).",
        "",
        "**Host cores here stand in for whatever device a scenario names** (a BlueField's Arm cores, a GPU "
        "server's host CPU): these are an x86 VM's figures, not a DPU's. A scenario that uses them as a DPU's "
        "cost says so by naming this calibration entry.",
        "",
        "How: the sender's `send()` and the receiver's `recv(copy=True)` + `release()` (as the harness's GPU-side "
        "worker receives) are each timed with `time.thread_time()` (the calling thread's user + system CPU time; "
        "blocked or preempted time is not counted) and, around the same call, `perf_counter()` (wall). *One at a "
        "time*: one message per round, in lock step over a control pipe that is not timed (the harness's "
        "request-at-a-time pattern: each message wakes both threads); this is what `dgsim hil calibrate` writes. "
        f"*Bursts of {BURST}*: {BURST} messages back to back per round (fewer where they would exceed 32 MiB of "
        "ring), a sample being the round's time / its messages: the streaming cost, code and data in cache. "
        "A shm receiver is timed from after `send()` returned, so no polling is timed; a TCP receiver waits in a "
        "blocking recv from before the message is sent (no CPU while it waits; a message larger than the socket "
        "buffers could not be sent otherwise). Up to 300 messages per size (at least 30, about 1 s per size), "
        "after 5 warm-up rounds. Fit: `cpu = per_message + per_byte * bytes` per side, least squares weighted for "
        "relative error (each sample weighs 1/mean² of its size), by scipy's `curve_fit`; 95% intervals from its "
        "covariance and Student's t. R² and MAPE are over the mean at each size. Each sample includes the clock's "
        "own cost (two `thread_time()` calls, about 1 us here: see each entry's `measured`). The two paces ran "
        "one after the other for each transport, in this run.",
        "",
        "| entry | pace | CPU per message (95% CI) | CPU per byte (95% CI) | R² | MAPE | samples |",
        "|---|---|---|---|---|---|---|",
    ]
    for (name, burst), e in entries.items():
        lines.append(f"| `{name}` | {pace(burst)} | {e.per_message * 1e6:.1f} us ({e.per_message_ci[0] * 1e6:.1f} "
                     f"to {e.per_message_ci[1] * 1e6:.1f}) | {e.per_byte * 1e9:.3f} ns ({e.per_byte_ci[0] * 1e9:.3f} "
                     f"to {e.per_byte_ci[1] * 1e9:.3f}) | {e.r2:.3f} | {e.mape:.1%} | {e.n} |")
    points = next(iter(entries.values())).points
    lines += ["", "Per size (us per message): CPU mean, CPU median, and the wall time of the same calls (mean):", "",
              "| entry | pace | | " + " | ".join(_size(p.bytes) for p in points) + " |",
              "|---|---|---|" + "---|" * len(points)]
    for (name, burst), e in entries.items():
        for label, values in (("CPU mean", [p.cpu_mean for p in e.points]),
                              ("CPU median", [p.cpu_p50 for p in e.points]),
                              ("wall mean", [p.wall_mean for p in e.points])):
            lines.append(f"| `{name}` | {pace(burst)} | {label} | " + " | ".join(f"{v * 1e6:.1f}" for v in values)
                         + " |")
    lines += ["", "Not measured here: " + "; ".join(skipped) + "." if skipped else ""]
    return "\n".join(lines).rstrip() + "\n"


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else (f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} B")


def replace_section(path: Path, title: str, body: str) -> None:
    """Write ``body`` under ``title`` in ``path``, replacing that section (up to the next '## ') if present."""
    text = path.read_text() if path.exists() else ""
    start = text.find(title + "\n")
    section = f"{title}\n\n{body}"
    if start < 0:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(title))
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="shm,tcp", help="transports to measure, comma-separated")
    parser.add_argument("--min-size", type=int, default=4 << 10)
    parser.add_argument("--max-size", type=int, default=8 << 20)
    parser.add_argument("--budget", type=float, default=0.8, help="seconds per latency and per bandwidth run")
    parser.add_argument("--max-iters", type=int, default=5000, help="latency samples at most, per size")
    parser.add_argument("--spin-us", type=float, default=Backoff.spin_s * 1e6, help="shm/rdma poll: spin this long,")
    parser.add_argument("--yield-us", type=float, default=Backoff.yield_s * 1e6, help="then yield the CPU until this,")
    parser.add_argument("--max-sleep-us", type=float, default=Backoff.max_sleep_s * 1e6, help="then sleep up to this")
    parser.add_argument("--out", type=Path, help="write the table here: .csv for CSV, else markdown")
    parser.add_argument("--host-costs", action="store_true", help="measure each side's CPU time per message and "
                        "byte instead; --out FILE.md replaces that section of FILE")
    args = parser.parse_args()
    if args.host_costs:
        section = host_costs([k.strip() for k in args.kinds.split(",")])
        print(section)
        if args.out:
            replace_section(args.out, HOST_SECTION, section)
        return
    backoff = Backoff(args.spin_us / 1e6, args.yield_us / 1e6, args.max_sleep_us / 1e6)
    sizes = [1 << k for k in range(args.min_size.bit_length() - 1, args.max_size.bit_length())]
    note = (f"Transports on {platform.machine()} with {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} "
            f"at start), Python {platform.python_version()}; budget {args.budget} s per measurement; "
            f"latency = RTT/2; shm polls: spin {args.spin_us:g} us, yield to {args.yield_us:g} us, "
            f"then sleep <= {args.max_sleep_us:g} us.")
    print(note)
    print("| " + " | ".join(HEAD) + " |")
    start = time.perf_counter()
    kinds = [k.strip() for k in args.kinds.split(",")]
    rows = [row for kind in kinds for row in measure(kind, sizes, args.budget, args.max_iters, backoff)]
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".csv":
            with args.out.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
                writer.writeheader()
                writer.writerows(asdict(r) for r in rows)
        else:
            args.out.write_text(markdown(rows, note))


if __name__ == "__main__":
    main()
