"""The harness's transports: the shm ring, TCP, and the RDMA/CUDA paths.

The ring and TCP run for real across processes. RDMA and CUDA run for real
only where the hardware is; elsewhere their data tests skip with the
probe's reason, the probes must still answer, and the RDMA protocol (ring
positions, credits, notices, close) runs over a simulated verbs layer.
"""

from __future__ import annotations

import collections
import ctypes
import itertools
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hil.transports.rdma as rdma
from hil.probe import Capability
from hil.transports import (
    ChannelClosed,
    Message,
    TransportError,
    TransportTimeout,
    available_channel_kinds,
    choose_transport,
    create_channel,
    probe_transports,
)
from hil.transports.cuda_copy import DeviceStager, device_to_host, probe_cuda

REPO = Path(__file__).resolve().parents[1]
FORK = mp.get_context("fork")
DTYPES = [np.uint8, np.int16, np.float32, np.float64, np.complex64]


def pattern(i: int, nbytes: int, dtype) -> np.ndarray:
    """Message ``i``'s payload: seeded random bytes, 2-D when the length allows."""
    dtype = np.dtype(dtype)
    raw = np.random.default_rng(i).integers(0, 256, nbytes - nbytes % dtype.itemsize, dtype=np.uint8)
    a = raw.view(dtype)
    return a.reshape(-1, 4) if a.size % 4 == 0 and a.size else a


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (random bytes viewed as floats hold NaNs: no ``==``)."""
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == b.tobytes()


def fingerprint(m: Message) -> tuple:
    a = np.ascontiguousarray(m.array)
    return m.request_id, m.tag, a.dtype.str, a.shape, zlib.crc32(a)


def _consume(spec, count: int, delays: list[float], out) -> None:
    with spec.open_receiver() as r:
        seen = []
        for i in range(count):
            seen.append(fingerprint(r.recv(timeout=20)))
            if delays[i]:
                time.sleep(delays[i])
    out.send(seen)


# --- the shared-memory ring ---------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.one_of(st.integers(0, 8064), st.integers(0, 126).map(lambda k: 64 * k)),  # 64-multiples: tight wraps
            st.integers(0, len(DTYPES) - 1),
            st.booleans(),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_ring_delivers_every_message_once_in_order_intact(messages):
    # an 8 KiB ring and records up to all of it: wrap-around and a full ring on most examples
    spec = create_channel("shm", capacity=8192)
    with spec.create():
        mine, theirs = FORK.Pipe()
        delays = [0.002 if slow else 0.0 for _, _, slow in messages]
        consumer = FORK.Process(target=_consume, args=(spec, len(messages), delays, theirs))
        consumer.start()
        expected = []
        with spec.open_sender() as s:
            for i, (nbytes, d, _) in enumerate(messages):
                msg = Message(i, pattern(i, nbytes, DTYPES[d]), tag=i % 7)
                s.send(msg, timeout=20)
                expected.append(fingerprint(msg))
        assert mine.poll(20), "consumer never reported"
        assert mine.recv() == expected
        consumer.join(10)
        assert consumer.exitcode == 0
    assert not os.path.exists(spec.path)


def test_full_ring_blocks_the_producer_then_resumes():
    spec = create_channel("shm", capacity=4096)
    a = np.zeros(1800, np.uint8)  # 1984-byte records: two fit, a third must wait
    with spec.create(), spec.open_sender() as s, spec.open_receiver() as r:
        s.send(Message(0, a))
        s.send(Message(1, a))
        with pytest.raises(TransportTimeout):
            s.send(Message(2, a), timeout=0.05)
        freeing = threading.Event()

        def free_one() -> None:
            freeing.set()
            r.recv(timeout=5, copy=True)

        freer = threading.Timer(0.2, free_one)
        freer.start()
        s.send(Message(2, a), timeout=5)
        assert freeing.is_set()  # the send returned only once the receiver began to free a record
        freer.join()
        assert [r.recv(timeout=1, copy=True).request_id for _ in range(2)] == [1, 2]
        assert r.recv(timeout=0.01) is None


def test_wrap_with_less_than_a_header_left_at_the_end():
    spec = create_channel("shm", capacity=4096)
    sizes = [3904, 10, 3904, 3968, 0, 3904, 3904]  # records leave 64, then 128, then no bytes at the ring's end
    with spec.create(), spec.open_sender() as s, spec.open_receiver() as r:
        got = []
        consumer = threading.Thread(target=lambda: got.extend(r.recv(timeout=5, copy=True) for _ in sizes))
        consumer.start()  # a skip marker is passed, and its bytes freed, only by a consumer reading on
        for i, nbytes in enumerate(sizes):
            s.send(Message(i, np.full(nbytes, i, np.uint8)), timeout=5)
        consumer.join()
    assert [(m.request_id, m.array.nbytes) for m in got] == list(enumerate(sizes))
    assert all((m.array == m.request_id).all() for m in got)


def test_message_larger_than_ring_raises_clearly():
    spec = create_channel("shm", capacity=4096)
    with spec.create(), spec.open_sender() as s, spec.open_receiver() as r:
        with pytest.raises(TransportError, match=r"ring holds 4096.*capacity >= 4224"):
            s.send(Message(0, np.zeros(4096, np.uint8)))
        s.send(Message(1, np.ones(spec.max_message_bytes(), np.uint8)))
        assert r.recv(timeout=1).array.sum() == spec.max_message_bytes()
        with pytest.raises(TransportError, match="raw bytes"):
            s.send(Message(2, np.array([object()])))


def test_received_view_lives_in_the_ring_until_the_next_recv():
    spec = create_channel("shm", capacity=1 << 16)
    with spec.create(), spec.open_sender() as s, spec.open_receiver() as r:
        s.send(Message(7, np.arange(5.0), tag=3, stamps=(0.0, 0.0, 1.5, 2.5)))
        s.send(Message(8, np.arange(3)))
        m = r.recv(timeout=1)
        assert not m.array.flags.owndata and m.tag == 3 and m.stamps[2:] == (1.5, 2.5)
        assert m.received_at >= m.sent_at > 0
        detached = r.recv(timeout=1, copy=True)
        assert detached.array.flags.owndata and detached.request_id == 8
        s.close()
        with pytest.raises(ChannelClosed):
            r.recv(timeout=1)


def _hold(spec) -> None:
    with spec.open_receiver() as r:
        while True:
            r.recv(timeout=None)


def test_no_segment_left_after_consumer_is_killed():
    spec = create_channel("shm", capacity=1 << 16)
    channel = spec.create()
    consumer = FORK.Process(target=_hold, args=(spec,))
    consumer.start()
    with spec.open_sender() as s:
        s.send(Message(0, np.zeros(1000)), timeout=5)
        os.kill(consumer.pid, signal.SIGKILL)
        consumer.join(5)
        with pytest.raises(TransportTimeout):  # the dead consumer frees nothing: the producer times out, never hangs
            for i in range(100):
                s.send(Message(i, np.zeros(1000)), timeout=0.2)
    assert os.path.exists(spec.path)
    channel.close()
    assert not os.path.exists(spec.path)


def test_no_segment_left_after_owner_process_is_killed():
    code = (
        "import time; from hil.transports import create_channel\n"
        "spec = create_channel('shm', capacity=4096); channel = spec.create()\n"
        "print(spec.name, flush=True); time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as owner:
        try:
            path = os.path.join("/dev/shm", owner.stdout.readline().strip())
            assert os.path.exists(path)
        finally:
            owner.kill()
    deadline = time.monotonic() + 10  # the owner's resource tracker unlinks what it leaked
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(path)


def test_attaching_to_a_missing_ring_says_what_to_do():
    spec = create_channel("shm", capacity=4096)
    with pytest.raises(TransportError, match="create it first"):
        spec.open_receiver()


# --- both real channels across processes --------------------------------------------------------------------

ARRAYS = [
    np.arange(10, dtype=">i4"),
    np.ones((3, 4), bool),
    np.array(2.5),
    np.zeros((0, 3), np.float32),
    np.arange(24.0).reshape(2, 3, 4)[:, ::2],  # not contiguous
    np.array(["ab", "c"]),
    np.arange(6, dtype=np.complex128).reshape(3, 2),
    np.full((256, 256, 3), 7, np.uint8),
    np.random.default_rng(0).standard_normal(1 << 18).astype(np.float16),
    np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[ns]"),
]


def _send_all(spec, arrays) -> None:
    with spec.open_sender() as s:
        for i, a in enumerate(arrays):
            s.send(Message(i, a, tag=-i, stamps=(0.0, 0.0, 1.0, float(i))), timeout=20)


@pytest.mark.parametrize("kind", ["shm", "tcp"])
def test_channel_across_processes_is_exact(kind):
    spec = create_channel(kind, **({"capacity": 1 << 20} if kind == "shm" else {"host": "127.0.0.1"}))
    with spec.create() as channel:
        spec = channel.spec
        sender = FORK.Process(target=_send_all, args=(spec, ARRAYS))
        sender.start()  # before the receiver exists: TCP's sender must retry its connect
        time.sleep(0.2)
        with spec.open_receiver() as r:
            for i, a in enumerate(ARRAYS):
                m = r.recv(timeout=20)
                assert (m.request_id, m.tag, m.stamps[2:]) == (i, -i, (1.0, float(i)))
                assert m.array.dtype == a.dtype and m.array.shape == a.shape
                assert np.array_equal(m.array, a)
            with pytest.raises(ChannelClosed):
                r.recv(timeout=20)
        sender.join(10)
        assert sender.exitcode == 0


def test_tcp_receive_times_out_with_none_and_refuses_port_zero():
    spec = create_channel("tcp").create().spec
    assert spec.port > 0
    with spec.open_receiver() as r:
        assert r.recv(timeout=0.05) is None
        with spec.open_sender() as s:
            assert r.recv(timeout=0.05) is None
            s.send(Message(1, np.arange(3)))
            assert r.recv(timeout=5).array.tolist() == [0, 1, 2]
    with pytest.raises(TransportError, match="port 0"):
        create_channel("tcp").open_sender()


# --- probes, kinds and the policy hook ----------------------------------------------------------------------


def test_probes_never_raise_and_explain_themselves():
    caps = probe_transports()
    assert all(isinstance(c, Capability) and c.detail for c in caps)
    names = [c.name.split()[0] for c in caps]
    assert names[:2] == ["shm", "tcp"] and "rdma" in names and names[-1] == "cuda"
    assert {"shm", "tcp"} <= set(available_channel_kinds(caps))
    for cap in rdma.probe_rdma():
        assert cap.available or any(w in cap.detail for w in ("not installed", "no RDMA device", "port", "device"))
    cuda = probe_cuda()
    assert cuda.available or "cuda-python" in cuda.detail or "no usable GPU" in cuda.detail


def test_probes_explain_missing_packages(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] in ("pyverbs", "cuda")] + ["pyverbs", "cuda"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules makes an import fail
    (cap,) = rdma.probe_rdma()
    assert not cap.available and cap.detail.startswith("pyverbs not installed")
    assert probe_cuda().detail.startswith("cuda-python not installed")


def test_probe_rdma_turns_a_failed_device_listing_into_a_reason(monkeypatch):
    class ListingError(Exception):
        error_code = -1

    def failing():
        raise ListingError("Failed to get devices list")

    fake = NS(PyverbsError=ListingError, get_device_list=failing)
    monkeypatch.setattr(rdma, "load_verbs", lambda: fake)
    (cap,) = rdma.probe_rdma()
    assert not cap.available and cap.detail.startswith("no RDMA device (")
    if not os.path.exists("/sys/class/infiniband") and rdma._ibv_errno() > 0:
        assert cap.detail == "no RDMA device (ENOSYS: kernel has no RDMA support)"


def test_create_channel_kinds_and_specs_travel_by_pickle():
    specs = [create_channel("shm", capacity=4096), create_channel("tcp", port=5000), create_channel("rdma", slots=8)]
    assert [s.kind for s in specs] == ["shm", "tcp", "rdma"]
    assert [pickle.loads(pickle.dumps(s)) for s in specs] == specs
    assert not os.path.exists(specs[0].path)  # a spec alone creates nothing
    with pytest.raises(TransportError, match="not a channel"):
        create_channel("cuda")
    with pytest.raises(TransportError, match="unknown transport kind"):
        create_channel("carrier-pigeon")


def test_choose_transport_asks_the_policy_among_available_kinds():
    class BySize:
        def choose(self, size_bytes, available):
            wanted = "tcp" if size_bytes < 512e3 else "rdma"
            return wanted if wanted in available else available[0]

    assert choose_transport(4096, BySize(), ["shm", "tcp"]) == "tcp"
    assert choose_transport(8 << 20, BySize(), ["shm", "tcp"]) == "shm"
    assert choose_transport(8 << 20, BySize(), ["shm", "tcp", "rdma"]) == "rdma"
    assert choose_transport(8 << 20, BySize()) in available_channel_kinds()

    class Stubborn:
        def choose(self, size_bytes, available):
            return "rdma"

    with pytest.raises(TransportError, match="not among the available"):
        choose_transport(1, Stubborn(), ["shm", "tcp"])


def test_choose_transport_accepts_the_simulators_channel_policy():
    channel = pytest.importorskip("sim.policies.channel")
    policy = channel.BySize()
    for size in (1 << 12, 1 << 20, 1 << 23):
        assert choose_transport(size, policy, ["shm", "tcp"]) == policy.choose(size, ("shm", "tcp"))


# --- RDMA and CUDA on real hardware (skipped here with the probe's reason) -----------------------------------


def _rdma_port_or_skip() -> None:
    caps = rdma.probe_rdma()
    if not any(c.available for c in caps):
        pytest.skip("; ".join(c.detail for c in caps))


def _rdma_round_trip(spec, arrays, check) -> None:
    """Receiver in a thread (its open blocks until the sender connects), sender here."""
    got, errors = [], []

    def receive():
        try:
            with spec.open_receiver() as r:
                for _ in arrays:
                    got.append(check(r.recv(timeout=20)))
                with pytest.raises(ChannelClosed):
                    r.recv(timeout=20)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=receive)
    thread.start()
    try:
        with spec.open_sender() as s:
            for i, a in enumerate(arrays):
                s.send(Message(i, a, tag=i), timeout=20)
    finally:
        thread.join(60)
    if errors and isinstance(errors[0], rdma.RdmaUnsupported):
        pytest.skip(str(errors[0]))
    assert not errors, errors
    assert got == [(i, True) for i in range(len(arrays))]


RDMA_ARRAYS = [pattern(i, n, DTYPES[i % len(DTYPES)]) for i, n in enumerate([0, 100, 3000, 70000, 4096, 30000] * 4)]


@pytest.mark.rdma
def test_rdma_loopback_write_and_notice():
    _rdma_port_or_skip()
    spec = create_channel("rdma", capacity=1 << 17, slots=4).create().spec
    try:
        _rdma_round_trip(spec, RDMA_ARRAYS, lambda m: (m.request_id, same(m.array, RDMA_ARRAYS[m.request_id])))
    except rdma.RdmaUnsupported as exc:
        pytest.skip(str(exc))


@pytest.mark.gpu
def test_cuda_lands_host_arrays_in_gpu_memory():
    cuda = probe_cuda()
    if not cuda.available:
        pytest.skip(cuda.detail)
    with DeviceStager(1 << 20) as stager:
        for a in (np.arange(1000, dtype=np.float32), pattern(3, 65536, np.float16).reshape(-1)):
            landing = stager.to_device(a)
            assert landing.copy_s > 0 and landing.total_s >= landing.copy_s
            assert same(stager.to_host(landing.array), a)


@pytest.mark.rdma
@pytest.mark.gpu
def test_rdma_writes_into_gpu_memory_through_a_dmabuf():
    _rdma_port_or_skip()
    cuda = probe_cuda()
    if not cuda.available:
        pytest.skip(cuda.detail)
    spec = create_channel("rdma", capacity=1 << 17, slots=4, memory="cuda").create().spec

    def check(m):
        return m.request_id, same(device_to_host(m.array), RDMA_ARRAYS[m.request_id])

    try:
        _rdma_round_trip(spec, RDMA_ARRAYS, check)
    except rdma.RdmaUnsupported as exc:
        pytest.skip(str(exc))


# --- the RDMA protocol over a simulated verbs layer ----------------------------------------------------------


def fake_verbs() -> NS:
    """Just enough of pyverbs, in process: WRITEs and SENDs complete at once by memmove.

    It checks what a real NIC would refuse: a WRITE outside the target MR, a
    SEND with no receive posted (RNR), a notice longer than its receive buffer.
    """
    ids = itertools.count(1)
    qps, mrs = {}, {}
    signaled, write_op = 2, 0

    class PyverbsError(Exception):
        pass

    class Obj:
        def __init__(self, *args, **kwargs):
            self.__dict__.update(kwargs)

    class Context(Obj):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def close(self):
            pass

        def query_device(self):
            return NS(phys_port_cnt=1)

        def query_port(self, port):
            return NS(state=4, link_layer=1, lid=7, active_mtu=3, gid_tbl_len=1)

        def query_gid(self, port, index):
            return NS(gid="fe80:0000:0000:0000:0000:0000:0000:0001")

    class MR:
        def __init__(self, pd, length, access, address):
            self.buf, self.length, self.lkey = address, length, next(ids)
            self.rkey = self.lkey
            mrs[self.rkey] = self

    class CQ:
        def __init__(self, *args):
            self.q = collections.deque()

        def poll(self, n=1):
            out = [self.q.popleft() for _ in range(min(n, len(self.q)))]
            return len(out), out

    class QP:
        def __init__(self, pd, init, attr):
            self.qp_num, self.scq, self.rcq, self.rq = next(ids), init.scq, init.rcq, collections.deque()
            qps[self.qp_num] = self

        def to_rts(self, attr):
            self.peer = qps[attr.dest_qp_num]

        def post_recv(self, wr):
            self.rq.append(wr)

        def post_send(self, wr):
            sge = wr.sg[0]
            if wr.opcode == write_op:
                mr = mrs[wr.rkey]
                assert mr.buf <= wr.addr and wr.addr + sge.length <= mr.buf + mr.length, "WRITE outside the MR"
                ctypes.memmove(wr.addr, sge.addr, sge.length)
            else:
                assert self.peer.rq, "SEND with no receive posted (RNR)"
                recv = self.peer.rq.popleft()
                assert sge.length <= recv.sg[0].length
                ctypes.memmove(recv.sg[0].addr, sge.addr, sge.length)
                self.peer.rcq.q.append(NS(wr_id=recv.wr_id, status=0, vendor_err=0))
            if wr.send_flags & signaled:
                self.scq.q.append(NS(wr_id=wr.wr_id, status=0, vendor_err=0))

    class SendWR(Obj):
        def set_wr_rdma(self, rkey, addr):
            self.rkey, self.addr = rkey, addr

    class SGE:
        def __init__(self, addr, length, lkey):
            self.addr, self.length, self.lkey = addr, length, lkey

    return NS(
        GID=str, AHAttr=Obj, GlobalRoute=Obj, CQ=CQ, Context=Context, get_device_list=lambda: [NS(name=b"fake0")],
        MR=MR, PD=Obj, PyverbsError=PyverbsError, PyverbsRDMAError=PyverbsError, QP=QP, QPAttr=Obj, QPCap=Obj,
        QPInitAttr=Obj, SGE=SGE, RecvWR=Obj, SendWR=SendWR, IBV_ACCESS_LOCAL_WRITE=1, IBV_ACCESS_REMOTE_WRITE=2,
        IBV_QPT_RC=2, IBV_PORT_ACTIVE=4, IBV_WR_RDMA_WRITE=write_op, IBV_WR_SEND=2, IBV_SEND_SIGNALED=signaled,
        IBV_WC_SUCCESS=0, IBV_LINK_LAYER_ETHERNET=2, IBV_GID_TYPE_SYSFS_ROCE_V2=2,
    )


def test_rdma_protocol_over_simulated_verbs(monkeypatch):
    verbs = fake_verbs()  # one fabric for both ends
    monkeypatch.setattr(rdma, "load_verbs", lambda: verbs)
    (cap,) = rdma.probe_rdma()
    assert cap.available and cap.name == "rdma fake0 port 1"
    spec = create_channel("rdma", capacity=8192, slots=3).create().spec  # small: wraps and credit stalls
    arrays = [pattern(i, n, DTYPES[i % len(DTYPES)]) for i, n in enumerate([0, 100, 5000, 3000, 8192, 64, 7000] * 3)]
    _rdma_round_trip(spec, arrays, lambda m: (m.request_id, same(m.array, arrays[m.request_id])))
