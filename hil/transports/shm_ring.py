"""A single-producer, single-consumer ring of variable-size records in shared memory.

Think of a circular conveyor belt between two rooms: the producer places
parcels at the tail, the consumer lifts them at the head, and two counters
painted on the wall say how far each has got. The belt is a POSIX
shared-memory segment; its first 192 bytes are the wall:

    word 0  magic           word 8   tail (bytes ever published)
    word 1  capacity        word 9   producer closed
                            word 16  head (bytes ever released)
                            word 17  consumer closed

(tail and head sit on separate cache lines so the two sides do not fight
over one). Data follows. A record is a 128-byte header then the array's
bytes, padded to 64 bytes, so every payload starts 64-byte aligned. A record
that does not fit before the end of the data area is not split: the
producer writes a skip marker there and starts again at offset 0.

The producer copies the array into the ring (the only copy), then publishes
the tail; the consumer reads a record as a numpy view, and publishes the
head when it asks for the next one (or at once with ``copy=True``).

Memory ordering: publishing is a plain aligned 8-byte store to a uint64
counter after the data stores, and the peer loads the counter before the
data; the consumer publishes the head only after it has read the record,
and the producer loads the head before it overwrites. On x86-64 (TSO:
stores are not reordered with stores, loads not with loads, nor stores
with earlier loads; aligned 8-byte accesses are atomic) and with CPython,
whose interpreter makes each numpy access a separate C call, this is
enough. On
weakly ordered CPUs (Arm, such as a DPU's cores) a fence would be needed
between the data and the counter, which Python cannot issue: use the ring on
x86 hosts only.

Cleanup: the segment belongs to the ``Channel`` returned by
``ShmSpec.create()``. Its ``close()`` unlinks the segment; so does a
``weakref.finalize`` at exit, and Python's resource tracker if the owner
process is killed. Endpoints attach through ``/dev/shm`` directly so that
they never register the segment with their own resource tracker (which
would unlink it under the owner when an endpoint exits). A killed endpoint
therefore leaves nothing behind either.
"""

from __future__ import annotations

import mmap
import os
import secrets
import time
from dataclasses import dataclass
from functools import partial
from multiprocessing import shared_memory

import numpy as np

from hil.transports.base import (
    FLAG_DATA,
    FLAG_SKIP,
    HEADER_SIZE,
    Backoff,
    Channel,
    ChannelClosed,
    ChannelSpec,
    Message,
    Receiver,
    Sender,
    TransportError,
    TransportTimeout,
    align,
    check_array,
    deadline_of,
    pack_header,
    payload_view,
    peek_flags,
    put_flags,
    unpack_header,
)

SHM_DIR = "/dev/shm"
MAGIC = 0x31474E4952534744  # b"DGSRING1" little-endian
CTRL_BYTES = 192
MAGIC_W, CAPACITY_W, TAIL_W, PCLOSED_W, HEAD_W, CCLOSED_W = 0, 1, 8, 9, 16, 17
MIN_CAPACITY = 4096


def new_segment_name() -> str:
    return f"dgsim-ring-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class ShmSpec(ChannelSpec):
    """A ring named ``name`` with ``capacity`` data bytes (a multiple of 64)."""

    kind = "shm"
    name: str
    capacity: int = 64 << 20
    backoff: Backoff = Backoff()

    def __post_init__(self) -> None:
        if self.capacity < MIN_CAPACITY or self.capacity % 64:
            raise TransportError(f"ring capacity must be a multiple of 64 and >= {MIN_CAPACITY}, not {self.capacity}")

    @property
    def path(self) -> str:
        return os.path.join(SHM_DIR, self.name)

    def max_message_bytes(self) -> int:
        """The largest array (in bytes) the ring can carry."""
        return self.capacity - HEADER_SIZE

    def create(self) -> Channel:
        try:
            shm = shared_memory.SharedMemory(self.name, create=True, size=CTRL_BYTES + self.capacity)
        except FileExistsError as exc:
            raise TransportError(f"a shared-memory segment named {self.name!r} already exists") from exc
        ctrl = np.ndarray((CTRL_BYTES // 8,), np.uint64, buffer=shm.buf)
        ctrl[:] = 0
        ctrl[CAPACITY_W] = self.capacity
        ctrl[MAGIC_W] = MAGIC
        del ctrl
        shm.close()  # the owner keeps only the name: endpoints map the segment themselves
        return Channel(self, partial(_unlink, shm, os.getpid()))

    def open_sender(self) -> ShmSender:
        return ShmSender(self)

    def open_receiver(self) -> ShmReceiver:
        return ShmReceiver(self)


def _unlink(shm: shared_memory.SharedMemory, owner_pid: int) -> None:
    if os.getpid() != owner_pid:
        return  # a forked child inherited the finalizer: only the owner unlinks
    try:
        shm.unlink()
    except FileNotFoundError:
        pass


class _Mapping:
    """One endpoint's mapping of the ring: control words and the data area."""

    def __init__(self, spec: ShmSpec) -> None:
        try:
            fd = os.open(spec.path, os.O_RDWR)
        except FileNotFoundError as exc:
            raise TransportError(
                f"no shared-memory ring {spec.path}: create it first (spec.create()) and keep its owner alive"
            ) from exc
        try:
            self._mm = mmap.mmap(fd, CTRL_BYTES + spec.capacity)
        except ValueError as exc:
            raise TransportError(f"{spec.path} is smaller than the {spec.capacity}-byte ring its spec names") from exc
        finally:
            os.close(fd)
        self.ctrl = np.ndarray((CTRL_BYTES // 8,), np.uint64, buffer=self._mm)
        if int(self.ctrl[MAGIC_W]) != MAGIC or int(self.ctrl[CAPACITY_W]) != spec.capacity:
            self.close()
            raise TransportError(f"{spec.path} is not a dgsim ring of capacity {spec.capacity}")
        self.data = np.ndarray((spec.capacity,), np.uint8, buffer=self._mm, offset=CTRL_BYTES)
        self.capacity = spec.capacity

    def close(self) -> None:
        self.ctrl = self.data = None
        try:
            self._mm.close()
        except BufferError:
            pass  # a view handed to the caller still uses the mapping; it is unmapped when that view dies


class ShmSender(Sender):
    """The producer: copies each array into the ring and publishes the tail."""

    def __init__(self, spec: ShmSpec) -> None:
        self._map = _Mapping(spec)
        self._backoff = spec.backoff
        self._tail = int(self._map.ctrl[TAIL_W])
        self._closed = False

    def _wait_free(self, nbytes: int, deadline: float | None) -> None:
        ctrl, cap = self._map.ctrl, self._map.capacity

        def has_room() -> bool:
            return cap - (self._tail - int(ctrl[HEAD_W])) >= nbytes or bool(ctrl[CCLOSED_W])

        if not self._backoff.wait(has_room, deadline):
            raise TransportTimeout(f"shm ring full: no {nbytes} free bytes in time (consumer stalled or gone?)")
        if ctrl[CCLOSED_W]:
            raise ChannelClosed("the shm ring's consumer has closed")

    def send(self, msg: Message, timeout: float | None = None) -> float:
        if self._closed:
            raise TransportError("send on a closed shm sender")
        array = check_array(msg.array)
        cap = self._map.capacity
        need = align(HEADER_SIZE + array.nbytes)
        if need > cap:
            raise TransportError(
                f"message of {array.nbytes} bytes needs {need} bytes of ring but the ring holds {cap}: "
                f"create the channel with capacity >= {need}"
            )
        deadline = deadline_of(timeout)
        ctrl, data = self._map.ctrl, self._map.data
        offset = self._tail % cap
        if cap - offset < need:  # does not fit before the end: mark the rest skipped and wrap
            self._wait_free(cap - offset, deadline)
            put_flags(data, offset, FLAG_SKIP)
            self._tail += cap - offset
            ctrl[TAIL_W] = self._tail
            offset = 0
        self._wait_free(need, deadline)
        sent_at = time.monotonic()
        pack_header(data, offset, msg, sent_at)
        start = offset + HEADER_SIZE
        np.copyto(data[start : start + array.nbytes].view(array.dtype).reshape(array.shape), array)
        self._tail += need
        ctrl[TAIL_W] = self._tail  # publish: data stores above happen-before this store (see module doc)
        return sent_at

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._map.ctrl[PCLOSED_W] = 1
            self._map.close()


class ShmReceiver(Receiver):
    """The consumer: hands out views of records and releases each at the next ``recv``."""

    def __init__(self, spec: ShmSpec) -> None:
        self._map = _Mapping(spec)
        self._backoff = spec.backoff
        self._head = int(self._map.ctrl[HEAD_W])
        self._pending = self._head
        self._closed = False

    def release(self) -> None:
        if self._pending != self._head:
            self._head = self._pending
            self._map.ctrl[HEAD_W] = self._head

    def recv(self, timeout: float | None = None, copy: bool = False) -> Message | None:
        if self._closed:
            raise TransportError("recv on a closed shm receiver")
        self.release()
        ctrl, data, cap = self._map.ctrl, self._map.data, self._map.capacity
        deadline = deadline_of(timeout)
        while True:
            if not self._backoff.wait(lambda: int(ctrl[TAIL_W]) != self._head or bool(ctrl[PCLOSED_W]), deadline):
                return None
            if int(ctrl[TAIL_W]) == self._head:
                raise ChannelClosed("the shm ring's producer has closed and every message was read")
            offset = self._head % cap
            flags = peek_flags(data, offset)
            if flags == FLAG_SKIP:
                self._head += cap - offset
                ctrl[HEAD_W] = self._head
                continue
            if flags != FLAG_DATA:
                raise TransportError(f"corrupt shm ring: flags {flags} at offset {offset}")
            header = unpack_header(data, offset)
            received_at = time.monotonic()
            array = payload_view(data, offset + HEADER_SIZE, header)
            self._pending = self._head + align(HEADER_SIZE + header.nbytes)
            if copy:
                array = array.copy()
                self.release()
            return header.message(array, received_at)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.release()
            self._map.ctrl[CCLOSED_W] = 1
            self._map.close()
