"""Tensors over a TCP stream: a fixed header, then the array's raw bytes.

The stream is framed by the 128-byte header itself: it carries the payload's
byte count, so the receiver reads exactly 128 bytes, then exactly
``nbytes`` into a buffer it keeps and grows (``recv_into``, no per-message
allocation), and returns a numpy view of that buffer. The sender hands the
header and the array's memory to one ``sendmsg`` (scatter-gather: no
concatenation copy; a non-contiguous array is made contiguous first).
Nagle's algorithm is off (TCP_NODELAY): a header must not wait for an ACK.

The receiver listens on ``host:port`` and accepts lazily, on its first
``recv``; the sender connects with retries until ``connect_timeout``, so the
two processes may start in any order. Only the address given is ever
contacted. ``create()`` turns port 0 into a concrete free port (probed by
binding and releasing it: another program could take it in between, which
the receiver then reports clearly).

A receive timeout only bounds the wait for a message to *begin*; once its
first byte arrives the rest is read under ``io_timeout``, so a timeout never
leaves the stream in the middle of a frame.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from dataclasses import dataclass

import numpy as np

from hil.transports.base import (
    FLAG_DATA,
    HEADER_SIZE,
    Channel,
    ChannelClosed,
    ChannelSpec,
    Message,
    Receiver,
    Sender,
    TransportError,
    TransportTimeout,
    check_array,
    deadline_of,
    pack_header,
    payload_view,
    unpack_header,
)


def free_port(host: str) -> int:
    """A port on ``host`` that was free a moment ago."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), family=_family(host), backlog=1)
    except OSError as exc:
        raise TransportError(f"cannot listen on {host}:{port}: {exc}") from exc


def accept(server: socket.socket, deadline: float | None) -> socket.socket | None:
    """The first connection to ``server``, or None when ``deadline`` passes first."""
    server.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.0))
    try:
        conn, _ = server.accept()
    except (TimeoutError, BlockingIOError):
        return None
    conn.settimeout(None)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """Connect to ``host:port``, retrying refused attempts until ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.01))
            break
        except (TimeoutError, ConnectionRefusedError) as exc:
            if time.monotonic() >= deadline:
                raise TransportError(f"nobody accepted a TCP connection on {host}:{port} within {timeout} s") from exc
            time.sleep(0.02)
        except OSError as exc:
            raise TransportError(f"cannot connect to {host}:{port}: {exc}") from exc
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exact(sock: socket.socket, view: memoryview) -> int:
    """Fill ``view`` from ``sock``; returns the bytes read (short only at end of stream)."""
    got, n = 0, len(view)
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            break
        got += k
    return got


def send_all(sock: socket.socket, buffers: list[memoryview]) -> None:
    """Send every buffer, in order, with as few ``sendmsg`` calls as the kernel allows."""
    views = [b for b in buffers if len(b)]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


@dataclass(frozen=True)
class TcpSpec(ChannelSpec):
    """The receiver listens on ``host:port``; the sender connects there."""

    kind = "tcp"
    host: str = "127.0.0.1"
    port: int = 0
    connect_timeout: float = 10.0
    io_timeout: float = 30.0

    def create(self) -> Channel:
        return Channel(self if self.port else dataclasses.replace(self, port=free_port(self.host)))

    def open_sender(self) -> TcpSender:
        if not self.port:
            raise TransportError("TCP spec has port 0: open endpoints on create().spec, which names the port")
        return TcpSender(connect(self.host, self.port, self.connect_timeout), self.io_timeout)

    def open_receiver(self) -> TcpReceiver:
        return TcpReceiver(listen(self.host, self.port), self.io_timeout)


class TcpSender(Sender):
    """Writes header and payload of each message with one scatter-gather send."""

    def __init__(self, sock: socket.socket, io_timeout: float) -> None:
        self._sock: socket.socket | None = sock
        self._io_timeout = io_timeout
        self._header = bytearray(HEADER_SIZE)

    def send(self, msg: Message, timeout: float | None = None) -> float:
        if self._sock is None:
            raise TransportError("send on a closed (or broken) TCP sender")
        array = check_array(msg.array)
        flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        sent_at = time.monotonic()
        pack_header(self._header, 0, msg, sent_at)
        self._sock.settimeout(timeout)
        try:
            send_all(self._sock, [memoryview(self._header), memoryview(flat)])
        except TimeoutError as exc:
            self._abort()
            raise TransportTimeout(f"TCP send did not finish within {timeout} s; the stream was closed") from exc
        except (BrokenPipeError, ConnectionResetError) as exc:
            self._abort()
            raise ChannelClosed(f"the TCP receiver went away: {exc}") from exc
        return sent_at

    def _abort(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._abort()


class TcpReceiver(Receiver):
    """Reads frames into one reusable buffer and hands out views of it."""

    def __init__(self, server: socket.socket, io_timeout: float) -> None:
        self._server: socket.socket | None = server
        self._conn: socket.socket | None = None
        self._io_timeout = io_timeout
        self._header = bytearray(HEADER_SIZE)
        self._buf = np.empty(1 << 16, np.uint8)
        self._closed = False

    def recv(self, timeout: float | None = None, copy: bool = False) -> Message | None:
        if self._closed:
            raise TransportError("recv on a closed TCP receiver")
        deadline = deadline_of(timeout)
        if self._conn is None:
            self._conn = accept(self._server, deadline)
            if self._conn is None:
                return None
            self._server.close()
            self._server = None
        conn = self._conn
        head = memoryview(self._header)
        conn.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        try:
            got = conn.recv_into(head, HEADER_SIZE)
        except (TimeoutError, BlockingIOError):
            return None
        except ConnectionResetError as exc:
            raise ChannelClosed(f"the TCP sender reset the connection: {exc}") from exc
        if got == 0:
            raise ChannelClosed("the TCP sender closed the stream and every message was read")
        conn.settimeout(self._io_timeout)
        try:
            got += recv_exact(conn, head[got:])
            header = unpack_header(self._header)
            if header.flags != FLAG_DATA or got < HEADER_SIZE:
                raise TransportError(f"TCP stream out of frame (flags {header.flags}, {got} header bytes)")
            if header.nbytes > self._buf.nbytes:
                self._buf = np.empty(max(header.nbytes, 2 * self._buf.nbytes), np.uint8)
            if recv_exact(conn, memoryview(self._buf)[: header.nbytes]) < header.nbytes:
                raise TransportError("the TCP sender closed the stream in the middle of a message")
        except TimeoutError as exc:
            raise TransportError(f"a TCP message stalled for {self._io_timeout} s after it began") from exc
        except OSError as exc:
            raise TransportError(f"the TCP stream broke in the middle of a message: {exc}") from exc
        received_at = time.monotonic()
        array = payload_view(self._buf, 0, header)
        return header.message(array.copy() if copy else array, received_at)

    def close(self) -> None:
        self._closed = True
        for sock in (self._conn, self._server):
            if sock is not None:
                sock.close()
        self._conn = self._server = None
