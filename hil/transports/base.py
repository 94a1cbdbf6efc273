"""One interface for every way a tensor crosses from the DPU side to the GPU side.

Picture a pneumatic tube between two offices: whatever the tube is made of
(a shared-memory ring, a TCP socket, an RDMA queue pair), the capsule is the
same. A ``Message`` is a small fixed header (request id, a tag, four
timestamp slots) plus one numpy array. The header travels as 128 packed
bytes that also describe the array (dtype, shape, byte count), so the
receiver can rebuild the array around the raw bytes without a copy.

A channel is described by a ``ChannelSpec``: a frozen, picklable dataclass
the parent builds for nothing (no sockets, no segments). ``spec.create()``
is the one explicit step that makes OS resources (a shared-memory segment, a
concrete port) and returns a ``Channel`` owning them; its ``.spec`` is what
the two processes receive, and each calls ``open_sender()`` or
``open_receiver()`` on it. ``Sender.send`` returns the send time it stamped;
``Receiver.recv`` returns a ``Message`` or ``None`` on timeout. A received
array is a view into the transport's buffer, valid until the next ``recv``
(pass ``copy=True`` to detach it). A timeout of ``None`` waits for ever.

Timestamps are ``time.monotonic()`` seconds, which on Linux is one clock
(CLOCK_MONOTONIC) for every process of a host. Slot ``T_SEND`` is written by
the sender, ``T_RECV`` by the receiver; the other two belong to the caller.
"""

from __future__ import annotations

import math
import os
import struct
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

KINDS = ("shm", "tcp", "rdma", "cuda")
MAX_NDIM = 8
N_STAMPS = 4
T_SEND, T_RECV = 0, 1
FLAG_DATA, FLAG_SKIP, FLAG_CLOSE = 1, 2, 4
ALIGN = 64

# flags, ndim, tag, request_id, nbytes, dtype string, shape[8], stamps[4]
_HEADER = struct.Struct(f"<HHiqQ8s{MAX_NDIM}q{N_STAMPS}d")
HEADER_SIZE = _HEADER.size
_NO_DIMS = (0,) * MAX_NDIM


class TransportError(RuntimeError):
    """A transport could not move a message; the text says why and what to do."""


class ChannelClosed(TransportError):
    """The peer closed the channel (and, on receive, everything sent was read)."""


class TransportTimeout(TransportError, TimeoutError):
    """A blocking send waited longer than its timeout."""


@dataclass(frozen=True)
class DeviceArray:
    """An array living in GPU memory: a raw device pointer plus dtype and shape."""

    ptr: int
    dtype: np.dtype
    shape: tuple[int, ...]
    device: int = 0

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


@dataclass(eq=False)
class Message:
    """What a channel carries: a request id, a tag, four time stamps and one array."""

    request_id: int
    array: np.ndarray | DeviceArray
    tag: int = 0
    stamps: tuple[float, ...] = (0.0,) * N_STAMPS

    @property
    def sent_at(self) -> float:
        return self.stamps[T_SEND]

    @property
    def received_at(self) -> float:
        return self.stamps[T_RECV]


@dataclass(frozen=True)
class WireHeader:
    """A decoded header: the message's metadata and the layout of its payload."""

    flags: int
    tag: int
    request_id: int
    nbytes: int
    dtype: np.dtype | None
    shape: tuple[int, ...]
    stamps: tuple[float, ...]

    def message(self, array: np.ndarray | DeviceArray, received_at: float) -> Message:
        stamps = list(self.stamps)
        stamps[T_RECV] = received_at
        return Message(self.request_id, array, self.tag, tuple(stamps))


def check_array(array: object) -> np.ndarray:
    """The array if a transport can carry it, else a TransportError saying why."""
    if not isinstance(array, np.ndarray):
        raise TransportError(f"a message carries a numpy array, not {type(array).__name__}")
    dt = array.dtype
    if dt.hasobject or dt.fields is not None or dt.subdtype is not None:
        raise TransportError(f"dtype {dt} cannot travel as raw bytes: use a plain numeric, bool, bytes or str dtype")
    if len(dt.str) > 8:
        raise TransportError(f"dtype string {dt.str!r} is longer than the header's 8 bytes")
    if array.ndim > MAX_NDIM:
        raise TransportError(f"array has {array.ndim} dimensions; the header holds at most {MAX_NDIM}")
    return array


def pack_header(buf, offset: int, msg: Message, sent_at: float) -> None:
    """Write ``msg``'s header into ``buf`` at ``offset`` (``msg.array`` already checked)."""
    a = msg.array
    s = msg.stamps
    if len(s) > N_STAMPS:
        raise TransportError(f"a message has {N_STAMPS} stamp slots, not {len(s)}")
    stamps = (sent_at, *s[1:], *(0.0,) * (N_STAMPS - max(len(s), 1)))
    try:
        _HEADER.pack_into(
            buf, offset, FLAG_DATA, a.ndim, msg.tag, msg.request_id, a.nbytes, a.dtype.str.encode(),
            *a.shape, *_NO_DIMS[a.ndim:], *stamps,
        )
    except struct.error as exc:
        raise TransportError(f"header field out of range (request_id int64, tag int32): {exc}") from exc


def pack_marker(buf, offset: int, flags: int) -> None:
    """Write a header that carries no array (a close notice)."""
    _HEADER.pack_into(buf, offset, flags, 0, 0, 0, 0, b"", *_NO_DIMS, *(0.0,) * N_STAMPS)


def peek_flags(buf, offset: int = 0) -> int:
    """The flags of the header at ``offset`` (reads two bytes: safe at a ring's very end)."""
    return int(buf[offset]) | int(buf[offset + 1]) << 8


def put_flags(buf, offset: int, flags: int) -> None:
    """Write only a header's flags: a ring's skip marker, where fewer than 128 bytes may be left."""
    buf[offset], buf[offset + 1] = flags & 0xFF, flags >> 8


def unpack_header(buf, offset: int = 0) -> WireHeader:
    """Decode and validate the header at ``offset``."""
    f = _HEADER.unpack_from(buf, offset)
    flags, ndim, tag, request_id, nbytes = f[:5]
    if flags != FLAG_DATA:
        return WireHeader(flags, 0, 0, 0, None, (), (0.0,) * N_STAMPS)
    if ndim > MAX_NDIM:
        raise TransportError(f"corrupt header: {ndim} dimensions")
    shape = f[6 : 6 + ndim]
    try:
        dtype = np.dtype(f[5].rstrip(b"\0").decode("ascii"))
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        raise TransportError(f"corrupt header: bad dtype {f[5]!r}") from exc
    if math.prod(shape) * dtype.itemsize != nbytes:
        raise TransportError(f"corrupt header: shape {shape} of {dtype} does not make {nbytes} bytes")
    return WireHeader(flags, tag, request_id, nbytes, dtype, shape, f[6 + MAX_NDIM :])


def payload_view(data: np.ndarray, offset: int, header: WireHeader) -> np.ndarray:
    """The array ``header`` describes, as a view of the bytes ``data[offset:]``."""
    raw = data[offset : offset + header.nbytes]
    return raw.view(header.dtype).reshape(header.shape)


def align(n: int, to: int = ALIGN) -> int:
    return -(-n // to) * to


def deadline_of(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(timeout, 0.0)


@dataclass(frozen=True)
class Backoff:
    """How a polling endpoint waits for its peer: spin, then yield, then sleep.

    Spinning (``spin_s``) notices a fast peer within microseconds. Yielding
    the CPU (``sched_yield``, until ``yield_s``) costs a system call per poll
    and still answers quickly on an idle machine, but lets other work run on
    a busy one (on two cores a spinning waiter steals its peer's core). Past
    that the waiter sleeps, pauses doubling up to ``max_sleep_s``; a Linux
    sleep lasts at least ~50 us (timer slack), so a message that arrives
    then may wait up to about ``max_sleep_s`` to be noticed. Without the
    yield phase a ping-pong settles into whichever mode it starts in: both
    sides spinning (~25 us one-way here) or both sleeping (~200 us).
    """

    spin_s: float = 50e-6
    yield_s: float = 1e-3
    max_sleep_s: float = 500e-6

    def wait(self, ready: Callable[[], bool], deadline: float | None) -> bool:
        """Poll ``ready`` until it is true (True) or ``deadline`` passes (False)."""
        if ready():
            return True
        start = time.monotonic()
        pause = 5e-6
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return ready()
            if now - start > self.yield_s:
                time.sleep(pause if deadline is None else min(pause, deadline - now))
                pause = min(pause * 2, self.max_sleep_s)
            elif now - start > self.spin_s:
                os.sched_yield()
            if ready():
                return True


class Sender(ABC):
    """The producing end of a channel."""

    @abstractmethod
    def send(self, msg: Message, timeout: float | None = None) -> float:
        """Send ``msg``; returns the monotonic send time written into its header."""

    @abstractmethod
    def close(self) -> None:
        """Tell the receiver no more messages come, and release this end."""

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Receiver(ABC):
    """The consuming end of a channel."""

    @abstractmethod
    def recv(self, timeout: float | None = None, copy: bool = False) -> Message | None:
        """The next message, or None after ``timeout`` s; ChannelClosed once drained and closed."""

    def release(self) -> None:
        """Give the last message's buffer back now; its view must not be used after."""

    @abstractmethod
    def close(self) -> None:
        """Release this end (and any view handed out by ``recv``)."""

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Channel:
    """A created channel: the spec its endpoints open, and the OS resources it owns."""

    def __init__(self, spec: ChannelSpec, release: Callable[[], None] | None = None) -> None:
        self.spec = spec
        # runs once: at close(), when the Channel is collected, or at interpreter exit
        self._release = weakref.finalize(self, release) if release is not None else None

    def close(self) -> None:
        if self._release is not None:
            self._release()

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ChannelSpec(ABC):
    """A picklable description of one one-way channel; building it touches nothing."""

    kind: ClassVar[str]

    def create(self) -> Channel:
        """Make the OS resources the channel needs; the returned Channel releases them."""
        return Channel(self)

    @abstractmethod
    def open_sender(self) -> Sender: ...

    @abstractmethod
    def open_receiver(self) -> Receiver: ...
