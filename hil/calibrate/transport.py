"""Transport latency against message size, by ping-pong between two pinned processes.

Like timing a tennis rally rather than one shot: the front side (this
process, on the front core) sends a message of ``n`` bytes over a channel,
an echo process on the GPU-side core sends it straight back over a second
channel of the same kind, and half the round trip is one one-way latency
(as perftest does). Both ends use the harness's own transports
(``hil.transports``), so the figure includes what the harness pays per
message: packing the 128-byte header, the copy into the ring or the socket,
the receiver's polling. ``n`` counts the payload only, not the header.

``PingPong`` is usable on its own (benchmarks, tests); ``transport_entries``
fits a ``transport.<kind>`` entry for a channel kind.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Callable, Sequence

import numpy as np

from hil.calibrate.fit import affine_entry
from hil.calibrate.measure import Measurement, Settings, measure, pinned
from hil.transports import ChannelClosed, Message, create_channel
from hil.transports.base import ChannelSpec

FULL_SIZES = tuple(4**k for k in range(3, 13))  # 64 B .. 16 MiB, powers of 4
QUICK_SIZES = (64, 64 << 10, 1 << 20, 4 << 20)


def _echo(forward: ChannelSpec, back: ChannelSpec, core: int | None) -> None:
    """The far end: receive each message and send it straight back, until the channel closes."""
    if core is not None:
        os.sched_setaffinity(0, {core})
    with forward.open_receiver() as receiver, back.open_sender() as sender:
        while True:
            try:
                msg = receiver.recv(timeout=None)
            except ChannelClosed:
                return
            sender.send(Message(msg.request_id, msg.array))
            receiver.release()


class PingPong:
    """Two one-way channels of ``kind`` to an echo process; ``one_way(array)`` times half a round trip."""

    def __init__(self, kind: str, echo_core: int | None = None, capacity: int = 64 << 20):
        options = {"capacity": capacity} if kind in ("shm", "rdma") else {}
        self.kind = kind
        self._forward = create_channel(kind, **options).create()
        self._back = create_channel(kind, **options).create()
        self._process = multiprocessing.get_context("fork").Process(
            target=_echo, args=(self._forward.spec, self._back.spec, echo_core), daemon=True)
        self._process.start()
        # the echo opens its receiver, then its sender; this side pairs in the same order (RDMA handshakes block)
        self._sender = self._forward.spec.open_sender()
        self._receiver = self._back.spec.open_receiver()
        self._next = 0

    def one_way(self, array: np.ndarray) -> float:
        self._next += 1
        begin = time.perf_counter()
        self._sender.send(Message(self._next, array))
        msg = self._receiver.recv(timeout=30.0)
        elapsed = time.perf_counter() - begin
        if msg is None:
            raise TimeoutError(f"{self.kind} echo did not answer within 30 s")
        self._receiver.release()
        return elapsed / 2

    def close(self) -> None:
        self._sender.close()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
        self._receiver.close()
        self._forward.close()
        self._back.close()

    def __enter__(self) -> PingPong:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def transport_points(kind: str, sizes: Sequence[int], settings: Settings, front_core: int | None,
                     echo_core: int | None, report: Callable[[str], None] = lambda _: None
                     ) -> list[tuple[float, Measurement]]:
    """(size, one-way latency measurement) for each size over a ``kind`` ping-pong."""
    points = []
    with pinned([front_core] if front_core is not None else sorted(os.sched_getaffinity(0))):
        with PingPong(kind, echo_core, capacity=_capacity(max(sizes))) as pong:
            for size in sizes:
                payload = np.zeros(size, np.uint8)
                points.append((float(size), measure(lambda: pong.one_way(payload), settings)))
                report(f"transport {kind} {size} B: {_describe(points[-1][1])}")
    return points


def transport_entry(kind: str, sizes: Sequence[int], settings: Settings, front_core: int | None,
                    echo_core: int | None, report: Callable[[str], None] = lambda _: None):
    """A ``transport.<kind>`` affine entry in bytes."""
    points = transport_points(kind, sizes, settings, front_core, echo_core, report)
    where = f"front core {front_core}, echo core {echo_core}" if front_core is not None else "not pinned"
    return affine_entry(points, "bytes", f"{kind} ping-pong between two processes, one-way = round trip / 2 "
                        f"(payload bytes; 128-byte header not counted); {where}")


def _capacity(largest: int) -> int:
    return max(1 << 16, -(-(2 * largest + 4096) // 64) * 64)


def _describe(m: Measurement) -> str:
    state = "stable" if m.stable else "NOT stable"
    return f"mean {m.mean * 1e6:.1f} us over {len(m.samples)} samples, {m.windows} windows, {state}"
