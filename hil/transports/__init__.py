"""How the harness moves tensors between the DPU-side and the GPU-side process.

Every transport carries the same ``Message`` (a 128-byte header plus one
numpy array) behind the same ``Sender``/``Receiver`` interface (``base``):

- ``shm``: a lock-free single-producer/single-consumer ring in POSIX shared
  memory (``shm_ring``), for two processes on one host;
- ``tcp``: a length-framed TCP stream (``tcp``), loopback or any address;
- ``rdma``: RDMA WRITE plus a SEND notice over an RC queue pair with
  pyverbs (``rdma``), into host or, through a dma-buf, GPU memory;
- ``cuda``: not a channel but the last hop on the GPU side: pinned staging
  and an async host-to-device copy (``cuda_copy``).

``create_channel(kind, ...)`` builds a channel's spec (nothing is created
until ``spec.create()``); ``probe_transports()`` says which kinds work here
and why not; ``choose_transport`` asks a channel policy (such as
``sim.policies.channel.BySize``) which kind a message of a given size
should take among those available. Nothing here is imported from ``sim``:
any object with a ``choose(size_bytes, available)`` method will do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Protocol

from hil.probe import Capability
from hil.transports.base import (
    KINDS,
    Channel,
    ChannelClosed,
    ChannelSpec,
    DeviceArray,
    Message,
    Receiver,
    Sender,
    TransportError,
    TransportTimeout,
)
from hil.transports.cuda_copy import probe_cuda
from hil.transports.rdma import RdmaSpec, probe_rdma
from hil.transports.shm_ring import SHM_DIR, ShmSpec, new_segment_name
from hil.transports.tcp import TcpSpec

CHANNEL_KINDS = ("shm", "tcp", "rdma")

__all__ = [
    "CHANNEL_KINDS", "KINDS", "SHM_DIR", "Channel", "ChannelClosed", "ChannelPolicy", "ChannelSpec", "DeviceArray",
    "Message", "Receiver", "RdmaSpec", "Sender", "ShmSpec", "TcpSpec", "TransportError", "TransportTimeout",
    "available_channel_kinds", "choose_transport", "create_channel", "probe_transports",
]


class ChannelPolicy(Protocol):
    """What ``choose_transport`` needs of a policy (``sim.policies.channel`` fits)."""

    def choose(self, size_bytes: float, available: Sequence[str]) -> str: ...


def create_channel(kind: str, **options: object) -> ChannelSpec:
    """The spec of a new ``kind`` channel; ``options`` are that spec's fields (shm's name is drawn)."""
    if kind == "shm":
        return ShmSpec(name=str(options.pop("name", new_segment_name())), **options)
    if kind == "tcp":
        return TcpSpec(**options)
    if kind == "rdma":
        return RdmaSpec(**options)
    if kind == "cuda":
        raise TransportError(
            "'cuda' copies host arrays into GPU memory inside one process; it is not a channel between "
            "processes: use hil.transports.cuda_copy.DeviceStager on the GPU side"
        )
    raise TransportError(f"unknown transport kind {kind!r}; known kinds: {', '.join(KINDS)}")


def _probe_shm() -> Capability:
    if not os.path.isdir(SHM_DIR) or not os.access(SHM_DIR, os.W_OK):
        return Capability("shm", False, f"{SHM_DIR} is missing or not writable")
    free = shutil.disk_usage(SHM_DIR).free
    return Capability("shm", True, f"POSIX shared memory in {SHM_DIR}, {free / 2**30:.1f} GiB free; same host only")


def probe_transports() -> list[Capability]:
    """Which transports work here, each with the device found or the reason it is missing."""
    tcp = Capability("tcp", True, "TCP sockets: loopback, or any host:port given")
    return [_probe_shm(), tcp, *probe_rdma(), probe_cuda()]


def available_channel_kinds(capabilities: Sequence[Capability] | None = None) -> tuple[str, ...]:
    """The channel kinds ("shm", "tcp", "rdma") that some available capability provides."""
    caps = probe_transports() if capabilities is None else capabilities
    up = {c.name.split()[0] for c in caps if c.available}
    return tuple(k for k in CHANNEL_KINDS if k in up)


def choose_transport(size_bytes: int, policy: ChannelPolicy, available: Sequence[str] | None = None) -> str:
    """The kind ``policy`` picks for a ``size_bytes`` message among ``available`` kinds.

    ``available`` defaults to the kinds probed here, in the order shm, tcp,
    rdma (policies fall back to the first): right for two processes on this
    host; pass the kinds that actually link the two endpoints otherwise.
    """
    kinds = tuple(available) if available is not None else available_channel_kinds()
    if not kinds:
        raise TransportError("no transport is available to choose from")
    kind = policy.choose(size_bytes, kinds)
    if kind not in kinds:
        raise TransportError(f"channel policy chose {kind!r}, which is not among the available kinds {kinds}")
    return kind
