"""Tensors by RDMA WRITE over a reliable-connected queue pair (pyverbs).

The receiver registers a ring (host memory, or GPU memory through a
dma-buf) and lends the sender its address and key; the sender keeps a
staging mirror of that ring in its own registered memory. Per message the
sender copies the array into the mirror at the offset it will occupy in the
receiver's ring (the only CPU copy), posts an RDMA WRITE of those bytes
into the receiver's ring, then a SEND of a notice (the 128-byte header plus
the payload's ring position) into one of the receive buffers the receiver
posted. An RC queue pair delivers in order, so once the notice's receive
completion shows up, the payload is in place. No CPU on the receiving side
touches the bytes.

Flow control is by credits, as in the shared-memory ring: the receiver
RDMA-WRITEs three counters (bytes released, messages released, closed)
into a small region of the sender's memory whenever it gives a message
back; the sender waits while the ring bytes or the receive buffers in
flight would run out. Ring positions are absolute byte counts, so a
payload that does not fit before the ring's end simply starts the next lap.

Connecting: the receiver listens on a small TCP side channel; the two sides
swap (qp_num, psn, lid, gid, mtu, rkey, addr) as a JSON line, move their QPs
INIT -> RTR -> RTS with ``to_rts`` (RoCE v2 needs the GRH: a GID index), and
meet at a barrier so the receive buffers are posted before the first SEND.
``RdmaSpec.open_receiver`` therefore blocks until a sender connects.

GPU memory: with ``memory="cuda"`` the ring is ``cudaMalloc`` memory
exported by ``cuMemGetHandleForAddressRange(DMA_BUF_FD)`` and registered as
``DmaBufMR(pd, length, access, dmabuf=fd, offset=0)``. Such an MR is
addressed by its IOVA, which is the dma-buf offset (0), not the CUDA
pointer: remote writes target ``0 + ring offset``, and the received array is
a ``DeviceArray`` at ``cuda pointer + ring offset``. Needs CUDA >= 11.7 and
the open NVIDIA kernel driver; Soft-RoCE cannot register dma-bufs.

pyverbs is imported only when used; its enums moved from ``pyverbs.enums``
(up to v58) to ``pyverbs.libibverbs_enums`` (v59, where they live inside
enum classes): ``load_verbs`` looks in both. ``probe_rdma`` never raises.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import importlib
import json
import mmap
import os
import random
import socket
import struct
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from hil.probe import Capability
from hil.transports.base import (
    FLAG_CLOSE,
    FLAG_DATA,
    HEADER_SIZE,
    Backoff,
    Channel,
    ChannelClosed,
    ChannelSpec,
    DeviceArray,
    Message,
    Receiver,
    Sender,
    TransportError,
    TransportTimeout,
    align,
    check_array,
    deadline_of,
    pack_header,
    pack_marker,
    payload_view,
    peek_flags,
    unpack_header,
)
from hil.transports.tcp import accept, connect, free_port, listen

ENUM_NAMES = (
    "IBV_ACCESS_LOCAL_WRITE", "IBV_ACCESS_REMOTE_WRITE", "IBV_QPT_RC", "IBV_PORT_ACTIVE",
    "IBV_WR_RDMA_WRITE", "IBV_WR_SEND", "IBV_SEND_SIGNALED", "IBV_WC_SUCCESS",
    "IBV_LINK_LAYER_ETHERNET", "IBV_GID_TYPE_SYSFS_ROCE_V2",
)
PORT_STATES = {0: "NOP", 1: "DOWN", 2: "INIT", 3: "ARMED", 4: "ACTIVE", 5: "ACTIVE_DEFER"}
ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"
IPV4_MAPPED = "0000:0000:0000:0000:0000:ffff"
NOTICE = HEADER_SIZE + 8  # header + the payload's absolute ring position
SLOT = 256  # bytes per posted receive buffer
CREDIT_BYTES = 64  # released bytes, released messages, receiver closed (uint64 each)
_POS = struct.Struct("<Q")


class RdmaUnsupported(TransportError):
    """The device refused an operation with EOPNOTSUPP (tests turn this into a skip)."""


def load_verbs() -> SimpleNamespace:
    """pyverbs' classes and the enum values used here; ImportError when pyverbs is absent."""
    from pyverbs.addr import GID, AHAttr, GlobalRoute
    from pyverbs.cq import CQ
    from pyverbs.device import Context, get_device_list
    from pyverbs.mr import MR
    from pyverbs.pd import PD
    from pyverbs.pyverbs_error import PyverbsError, PyverbsRDMAError
    from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
    from pyverbs.wr import SGE, RecvWR, SendWR

    mods = []
    for name in ("pyverbs.libibverbs_enums", "pyverbs.enums"):
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            continue
    enums = {name: _find_enum(mods, name) for name in ENUM_NAMES}
    return SimpleNamespace(
        GID=GID, AHAttr=AHAttr, GlobalRoute=GlobalRoute, CQ=CQ, Context=Context,
        get_device_list=get_device_list, MR=MR, PD=PD, PyverbsError=PyverbsError,
        PyverbsRDMAError=PyverbsRDMAError, QP=QP, QPAttr=QPAttr, QPCap=QPCap,
        QPInitAttr=QPInitAttr, SGE=SGE, RecvWR=RecvWR, SendWR=SendWR, **enums,
    )


def _find_enum(mods: list, name: str) -> Any:
    """``name`` at module level (pyverbs.enums) or inside an enum class (libibverbs_enums)."""
    for mod in mods:
        if hasattr(mod, name):
            return getattr(mod, name)
        for value in vars(mod).values():
            if isinstance(value, type) and hasattr(value, name):
                return getattr(value, name)
    raise ImportError(f"pyverbs has no enum {name} in pyverbs.libibverbs_enums or pyverbs.enums")


def _ibv_errno() -> int:
    """errno of a fresh ibv_get_device_list call (pyverbs does not report it); -1 if unknown."""
    try:
        lib = ctypes.CDLL("libibverbs.so.1", use_errno=True)
        lib.ibv_get_device_list.restype = ctypes.c_void_p
        lib.ibv_free_device_list.argtypes = [ctypes.c_void_p]
        count = ctypes.c_int(0)
        devices = lib.ibv_get_device_list(ctypes.byref(count))
        if devices:
            lib.ibv_free_device_list(devices)
            return 0
        return ctypes.get_errno()
    except (OSError, AttributeError):
        return -1


def _no_device_reason(exc: Exception) -> str:
    code = getattr(exc, "error_code", -1)
    code = code if isinstance(code, int) and code > 0 else _ibv_errno()
    if code == errno.ENOSYS:
        return "ENOSYS: kernel has no RDMA support"
    if code > 0:
        return f"{errno.errorcode.get(code, code)}: {os.strerror(code)}"
    return str(exc)


def _device_name(device: Any) -> str:
    name = device.name
    return name.decode() if isinstance(name, bytes) else str(name)


def pick_gid(v: SimpleNamespace, ctx: Any, port: int, attr: Any) -> int | None:
    """A GID index for ``port``: 0 on InfiniBand; on RoCE the first RoCE v2 GID, IPv4-mapped first."""
    if attr.link_layer != v.IBV_LINK_LAYER_ETHERNET:
        return 0
    found = []
    for index in range(attr.gid_tbl_len):
        try:
            gid = ctx.query_gid(port, index).gid
            roce_v2 = ctx.query_gid_type(port, index) == v.IBV_GID_TYPE_SYSFS_ROCE_V2
        except v.PyverbsError:
            continue
        if gid != ZERO_GID and roce_v2:
            found.append((not gid.startswith(IPV4_MAPPED), index))
    return min(found)[1] if found else None


def _port_report(v: SimpleNamespace, ctx: Any, name: str) -> list[Capability]:
    caps = []
    for port in range(1, ctx.query_device().phys_port_cnt + 1):
        attr = ctx.query_port(port)
        label = f"rdma {name} port {port}"
        if attr.state != v.IBV_PORT_ACTIVE:
            state = PORT_STATES.get(int(attr.state), str(attr.state))
            caps.append(Capability(label, False, f"device {name} port {port} {state}"))
            continue
        gid = pick_gid(v, ctx, port, attr)
        link = "Ethernet (RoCE)" if attr.link_layer == v.IBV_LINK_LAYER_ETHERNET else "InfiniBand"
        if gid is None:
            caps.append(Capability(label, False, f"device {name} port {port} ACTIVE ({link}) but has no RoCE v2 GID"))
        else:
            gid_text = ctx.query_gid(port, gid).gid
            detail = f"device {name} port {port} ACTIVE, {link}, GID index {gid} ({gid_text})"
            caps.append(Capability(label, True, detail))
    return caps


def probe_rdma() -> list[Capability]:
    """Every RDMA port and whether it can carry traffic, or one reason why nothing can."""
    try:
        v = load_verbs()
    except Exception as exc:
        return [Capability("rdma", False, f"pyverbs not installed ({exc}); apt install python3-pyverbs")]
    try:
        devices = v.get_device_list()
    except v.PyverbsError as exc:
        return [Capability("rdma", False, f"no RDMA device ({_no_device_reason(exc)})")]
    except Exception as exc:
        return [Capability("rdma", False, f"no RDMA device (listing failed: {exc})")]
    if not devices:
        return [Capability("rdma", False, "no RDMA device (ibv_get_device_list found none)")]
    caps = []
    for device in devices:
        name = _device_name(device)
        try:
            with v.Context(name=name) as ctx:
                caps += _port_report(v, ctx, name)
        except Exception as exc:
            caps.append(Capability(f"rdma {name}", False, f"cannot open device {name}: {exc}"))
    return caps


@dataclass(frozen=True)
class RdmaSpec(ChannelSpec):
    """An RC channel; the receiver's side channel listens on ``host:port``."""

    kind = "rdma"
    host: str = "127.0.0.1"
    port: int = 0
    device: str | None = None  # None: the first device with an ACTIVE port
    ib_port: int | None = None  # None: the device's first ACTIVE port
    gid_index: int | None = None  # None: pick_gid's choice
    capacity: int = 64 << 20  # receiver ring bytes
    slots: int = 64  # receive buffers: messages in flight at most
    memory: str = "host"  # receiver ring in "host" or "cuda" memory
    cuda_device: int = 0
    connect_timeout: float = 10.0
    backoff: Backoff = Backoff()

    def __post_init__(self) -> None:
        if self.memory not in ("host", "cuda"):
            raise TransportError(f"RDMA ring memory must be 'host' or 'cuda', not {self.memory!r}")
        if self.capacity < 4096 or self.capacity % 64 or self.slots < 1:
            raise TransportError("RDMA ring capacity must be a multiple of 64 >= 4096, with at least one slot")

    def create(self) -> Channel:
        return Channel(self if self.port else dataclasses.replace(self, port=free_port(self.host)))

    def open_sender(self) -> RdmaSender:
        if not self.port:
            raise TransportError("RDMA spec has port 0: open endpoints on create().spec, which names the port")
        return RdmaSender(self)

    def open_receiver(self) -> RdmaReceiver:
        return RdmaReceiver(self)


class _Link:
    """One side's verbs objects: context, PD, two CQs and an RC QP, up to RTS with its peer."""

    def __init__(self, spec: RdmaSpec, recv_slots: int) -> None:
        self.v = v = load_verbs()
        self.spec = spec
        self.access = v.IBV_ACCESS_LOCAL_WRITE | v.IBV_ACCESS_REMOTE_WRITE
        self.ctx, self.ib_port, self.port_attr, self.gid_index = self._open_port()
        try:
            self.pd = v.PD(self.ctx)
            self.send_cq = v.CQ(self.ctx, 2 * spec.slots + 4, None, None, 0)
            self.recv_cq = v.CQ(self.ctx, recv_slots + 4, None, None, 0)
            cap = v.QPCap(max_send_wr=2 * spec.slots + 2, max_recv_wr=recv_slots, max_send_sge=1, max_recv_sge=1)
            init = v.QPInitAttr(qp_type=v.IBV_QPT_RC, scq=self.send_cq, rcq=self.recv_cq, cap=cap)
            attr = v.QPAttr(port_num=self.ib_port)
            attr.qp_access_flags = self.access
            self.qp = v.QP(self.pd, init, attr)  # left in INIT
        except BaseException as exc:
            self.ctx.close()
            if isinstance(exc, v.PyverbsError):
                raise self.error("creating the PD, CQs and RC QP", exc) from exc
            raise
        self.psn = random.getrandbits(24)

    def error(self, what: str, exc: Exception) -> TransportError:
        """A pyverbs error as a TransportError; EOPNOTSUPP as RdmaUnsupported."""
        if getattr(exc, "error_code", 0) == errno.EOPNOTSUPP:
            return RdmaUnsupported(f"{what}: not supported by this device ({exc})")
        return TransportError(f"{what} failed: {exc}")

    def _open_port(self) -> tuple[Any, int, Any, int]:
        v, spec = self.v, self.spec
        try:
            names = [spec.device] if spec.device else [_device_name(d) for d in v.get_device_list()]
        except v.PyverbsError as exc:
            raise TransportError(f"no RDMA device ({_no_device_reason(exc)})") from exc
        tried = []
        for name in names:
            ctx = v.Context(name=name)
            try:
                ports = [spec.ib_port] if spec.ib_port else range(1, ctx.query_device().phys_port_cnt + 1)
                for port in ports:
                    attr = ctx.query_port(port)
                    gid = spec.gid_index if spec.gid_index is not None else pick_gid(v, ctx, port, attr)
                    if attr.state == v.IBV_PORT_ACTIVE and gid is not None:
                        return ctx, port, attr, gid
                    tried.append(f"{name} port {port} {PORT_STATES.get(int(attr.state), attr.state)}, GID {gid}")
            except BaseException:
                ctx.close()
                raise
            ctx.close()
        raise TransportError(f"no ACTIVE RDMA port with a usable GID: {'; '.join(tried) or 'no device'}")

    def register(self, nbytes: int, remote_write: bool = False) -> tuple[Any, np.ndarray]:
        """Page-aligned zeroed host memory, registered; the numpy view keeps it mapped."""
        v = self.v
        view = np.frombuffer(mmap.mmap(-1, nbytes), np.uint8)
        access = self.access if remote_write else v.IBV_ACCESS_LOCAL_WRITE
        try:
            mr = v.MR(self.pd, nbytes, access, address=view.ctypes.data)
        except v.PyverbsError as exc:
            raise self.error(f"registering {nbytes} bytes", exc) from exc
        return mr, view

    def local_info(self, addr: int, rkey: int) -> dict:
        return {
            "qp_num": self.qp.qp_num, "psn": self.psn, "lid": self.port_attr.lid,
            "gid": self.ctx.query_gid(self.ib_port, self.gid_index).gid,
            "mtu": int(self.port_attr.active_mtu), "addr": addr, "rkey": rkey,
        }

    def to_rts(self, peer: dict) -> None:
        v = self.v
        attr = v.QPAttr(port_num=self.ib_port)
        attr.qp_access_flags = self.access
        attr.path_mtu = min(int(self.port_attr.active_mtu), peer["mtu"])
        attr.dest_qp_num, attr.rq_psn, attr.sq_psn = peer["qp_num"], peer["psn"], self.psn
        attr.max_dest_rd_atomic = attr.max_rd_atomic = 1
        attr.min_rnr_timer, attr.timeout, attr.retry_cnt, attr.rnr_retry = 12, 14, 7, 7
        route = v.GlobalRoute(dgid=v.GID(peer["gid"]), sgid_index=self.gid_index, hop_limit=64)
        attr.ah_attr = v.AHAttr(port_num=self.ib_port, is_global=1, gr=route, dlid=peer["lid"])
        try:
            self.qp.to_rts(attr)
        except v.PyverbsError as exc:
            raise self.error("moving the QP to RTS", exc) from exc

    def handshake(self, sock: socket.socket, mine: dict) -> dict:
        """Swap connection details over the side channel, go to RTS, then meet at a barrier."""
        sock.settimeout(self.spec.connect_timeout)
        try:
            with sock, sock.makefile("rb") as lines:
                sock.sendall(json.dumps(mine).encode() + b"\n")
                line = lines.readline()
                if not line:
                    raise TransportError("the RDMA peer closed the side channel during the handshake")
                peer = json.loads(line)
                self.to_rts(peer)
                sock.sendall(b"R\n")
                if lines.readline() != b"R\n":
                    raise TransportError("the RDMA peer left before reaching RTS")
        except OSError as exc:
            raise TransportError(f"RDMA side channel failed during the handshake: {exc}") from exc
        return peer

    def post_write(self, wr_id: int, mr: Any, offset: int, nbytes: int, addr: int, rkey: int, signaled: bool) -> None:
        v = self.v
        wr = v.SendWR(wr_id=wr_id, opcode=v.IBV_WR_RDMA_WRITE, num_sge=1, sg=[v.SGE(mr.buf + offset, nbytes, mr.lkey)],
                      send_flags=v.IBV_SEND_SIGNALED if signaled else 0)
        wr.set_wr_rdma(rkey, addr)
        self.qp.post_send(wr)

    def post_send(self, wr_id: int, mr: Any, offset: int, nbytes: int) -> None:
        v = self.v
        sge = v.SGE(mr.buf + offset, nbytes, mr.lkey)
        wr = v.SendWR(wr_id=wr_id, opcode=v.IBV_WR_SEND, num_sge=1, sg=[sge], send_flags=v.IBV_SEND_SIGNALED)
        self.qp.post_send(wr)

    def post_recv(self, slot: int, mr: Any) -> None:
        v = self.v
        self.qp.post_recv(v.RecvWR(wr_id=slot, num_sge=1, sg=[v.SGE(mr.buf + slot * SLOT, SLOT, mr.lkey)]))

    def poll(self, cq: Any, n: int) -> list:
        """Up to ``n`` completions from ``cq``; TransportError on a failed one."""
        _, wcs = cq.poll(n)
        for wc in wcs:
            if wc.status != self.v.IBV_WC_SUCCESS:
                raise TransportError(
                    f"RDMA work request {wc.wr_id} failed: {_status_text(wc.status)} (vendor error {wc.vendor_err})"
                )
        return wcs

    def close(self) -> None:
        self.ctx.close()  # pyverbs closes the QP, MRs, CQs and PD made from it


def _status_text(status: int) -> str:
    try:
        from pyverbs.cq import cqe_status_to_str

        return f"{cqe_status_to_str(status)} ({status})"
    except Exception:
        return f"status {status}"


class RdmaSender(Sender):
    """Copies each array into its staging mirror, WRITEs it across, SENDs a notice."""

    def __init__(self, spec: RdmaSpec) -> None:
        self._link = link = _Link(spec, recv_slots=1)
        self._cap, self._slots = spec.capacity, spec.slots
        try:
            self._staging_mr, self._staging = link.register(spec.capacity)
            self._notice_mr, self._notices = link.register(spec.slots * SLOT)
            self._credit_mr, credits = link.register(CREDIT_BYTES, remote_write=True)
            self._credits = credits.view(np.uint64)
            self._credits[:] = 0
            sock = connect(spec.host, spec.port, spec.connect_timeout)
            self._peer = link.handshake(sock, link.local_info(self._credit_mr.buf, self._credit_mr.rkey))
        except BaseException:
            link.close()
            raise
        self._tail = self._sent = self._unreaped = 0
        self._closed = False

    def _reap(self) -> None:
        if self._unreaped:
            self._unreaped -= len(self._link.poll(self._link.send_cq, self._unreaped))

    def _all_reaped(self) -> bool:
        self._reap()
        return self._unreaped == 0

    def _wait_credit(self, released: int, deadline: float | None) -> None:
        """Wait until ``released`` ring bytes are back, a receive buffer is free and the SQ has room."""
        credits, slots = self._credits, self._slots

        def ready() -> bool:
            self._reap()
            return bool(credits[2]) or (
                int(credits[0]) >= released and self._sent - int(credits[1]) < slots and self._unreaped < slots
            )

        if not self._link.spec.backoff.wait(ready, deadline):
            raise TransportTimeout("RDMA ring full: no credit from the receiver within the timeout")
        if credits[2]:
            raise ChannelClosed("the RDMA receiver has closed")

    def send(self, msg: Message, timeout: float | None = None) -> float:
        if self._closed:
            raise TransportError("send on a closed RDMA sender")
        array = check_array(msg.array)
        cap, n = self._cap, array.nbytes
        need = align(n)
        if need > cap:
            raise TransportError(
                f"message of {n} bytes exceeds the {cap}-byte RDMA ring: create the channel with capacity >= {need}"
            )
        offset = self._tail % cap
        pos = self._tail if cap - offset >= need else self._tail + cap - offset  # no room before the end: next lap
        # [pos, pos + need) reuses the ring bytes of [pos + need - cap, ...); a skipped gap held no data, so
        # once everything up to the tail is back the whole ring is free
        self._wait_credit(min(pos + need - cap, self._tail), deadline_of(timeout))
        offset, slot = pos % cap, self._sent % self._slots
        np.copyto(self._staging[offset : offset + n].view(array.dtype).reshape(array.shape), array)
        sent_at = time.monotonic()
        pack_header(self._notices, slot * SLOT, msg, sent_at)
        _POS.pack_into(self._notices, slot * SLOT + HEADER_SIZE, pos)
        link, peer = self._link, self._peer
        if n:
            link.post_write(slot, self._staging_mr, offset, n, peer["addr"] + offset, peer["rkey"], signaled=False)
        link.post_send(slot, self._notice_mr, slot * SLOT, NOTICE)
        self._tail, self._sent, self._unreaped = pos + need, self._sent + 1, self._unreaped + 1
        return sent_at

    def close(self, timeout: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._wait_credit(0, deadline_of(timeout))
            slot = self._sent % self._slots
            pack_marker(self._notices, slot * SLOT, FLAG_CLOSE)
            self._link.post_send(slot, self._notice_mr, slot * SLOT, NOTICE)
            self._unreaped += 1
            self._link.spec.backoff.wait(self._all_reaped, deadline_of(timeout))
        except TransportError:
            pass  # the receiver is gone or stuck: nothing left to tell it
        finally:
            self._link.close()


class RdmaReceiver(Receiver):
    """Posts receive buffers, hands out views of its ring, and returns credits."""

    def __init__(self, spec: RdmaSpec) -> None:
        self._link = link = _Link(spec, recv_slots=spec.slots)
        self._spec, self._cap = spec, spec.capacity
        self._gpu = None
        try:
            self._ring_mr, self._ring, ring_addr = self._register_ring(spec)
            self._notice_mr, self._notices = link.register(spec.slots * SLOT)
            self._credit_mr, credits = link.register(CREDIT_BYTES)
            self._credits = credits.view(np.uint64)
            for slot in range(spec.slots):
                link.post_recv(slot, self._notice_mr)
            server = listen(spec.host, spec.port)
            with server:
                sock = accept(server, deadline_of(spec.connect_timeout))
            if sock is None:
                where = f"{spec.host}:{spec.port}"
                raise TransportError(f"no RDMA sender connected to {where} within {spec.connect_timeout} s")
            self._peer = link.handshake(sock, link.local_info(ring_addr, self._ring_mr.rkey))
        except BaseException:
            self._free()
            raise
        self._released = self._pending = (0, 0)
        self._credited = (0, 0)
        self._credit_in_flight = False
        self._closed = self._peer_closed = False

    def _register_ring(self, spec: RdmaSpec) -> tuple[Any, np.ndarray | None, int]:
        link = self._link
        if spec.memory == "host":
            mr, view = link.register(spec.capacity, remote_write=True)
            return mr, view, mr.buf
        from pyverbs.mr import DmaBufMR

        from hil.transports.cuda_copy import DeviceBuffer

        self._gpu = DeviceBuffer(spec.capacity, spec.cuda_device)
        try:
            mr = DmaBufMR(link.pd, self._gpu.nbytes, link.access, dmabuf=self._gpu.dmabuf_fd, offset=0)
        except link.v.PyverbsError as exc:
            raise link.error("registering GPU memory as a dma-buf MR", exc) from exc
        return mr, None, 0  # a dma-buf MR is addressed by its IOVA: the offset, 0

    def _push_credits(self, closing: bool = False, wait_s: float = 0.01) -> None:
        """Write (released bytes, released messages, closed) into the sender's credit words."""
        link = self._link
        if self._credit_in_flight:
            if not link.spec.backoff.wait(lambda: bool(link.poll(link.send_cq, 1)), deadline_of(wait_s)):
                return  # still in flight; retried at the next recv
            self._credit_in_flight = False
        if self._released == self._credited and not closing:
            return
        self._credits[:3] = (*self._released, int(closing))
        link.post_write(0, self._credit_mr, 0, 24, self._peer["addr"], self._peer["rkey"], signaled=True)
        self._credit_in_flight, self._credited = True, self._released

    def release(self) -> None:
        if self._pending != self._released:
            self._released = self._pending
            self._push_credits()

    def recv(self, timeout: float | None = None, copy: bool = False) -> Message | None:
        if self._closed:
            raise TransportError("recv on a closed RDMA receiver")
        if self._peer_closed:
            raise ChannelClosed("the RDMA sender has closed and every message was read")
        if copy and self._ring is None:
            raise TransportError("copy=True needs a host ring; copy device arrays with hil.transports.cuda_copy")
        self.release()
        link, got = self._link, []

        def ready() -> bool:
            if self._credited != self._released:
                self._push_credits(wait_s=0)
            got.extend(link.poll(link.recv_cq, 1))
            return bool(got)

        if not link.spec.backoff.wait(ready, deadline_of(timeout)):
            return None
        received_at = time.monotonic()
        slot = got[0].wr_id
        base = slot * SLOT
        if peek_flags(self._notices, base) == FLAG_CLOSE:
            self._peer_closed = True
            raise ChannelClosed("the RDMA sender has closed and every message was read")
        header = unpack_header(self._notices, base)
        (pos,) = _POS.unpack_from(self._notices, base + HEADER_SIZE)
        link.post_recv(slot, self._notice_mr)
        if header.flags != FLAG_DATA:
            raise TransportError(f"corrupt RDMA notice: flags {header.flags}")
        offset = pos % self._cap
        self._pending = (pos + align(header.nbytes), self._released[1] + 1)
        if self._ring is None:
            array = DeviceArray(self._gpu.ptr + offset, header.dtype, header.shape, self._spec.cuda_device)
        else:
            array = payload_view(self._ring, offset, header)
            if copy:
                array = array.copy()
                self.release()
        return header.message(array, received_at)

    def _free(self) -> None:
        self._link.close()
        if self._gpu is not None:
            self._gpu.close()
            self._gpu = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._released = self._pending
            self._push_credits(closing=True, wait_s=1.0)
            link = self._link
            link.spec.backoff.wait(lambda: bool(link.poll(link.send_cq, 1)), deadline_of(1.0))
        except TransportError:
            pass
        finally:
            self._ring = None
            self._free()
