"""Built-in hardware profiles: devices, links and transports' host costs, with cited defaults.

A scenario names a profile ("bluefield-3", "a100", "pcie-gen4-x16") instead
of repeating numbers, and may override any field. Every default below
carries its public source beside it (datasheet, vendor document, paper or
benchmark repository).
"derived" means arithmetic on published numbers, "proxy" a similar part
measured instead of the part itself.

Device speed is relative to the reference part of its kind, in which stage
costs are stated: the generic host CPU for ``cpu``, BlueField-3 for
``dpu``, A100 for ``gpu``. A stage that costs 2 ms on the reference takes
``2 ms / speed`` on another part of that kind.

``HOST_COSTS`` are the CPU time a transport spends per message and byte
at each end of a link (kernel TCP, gRPC, a user-space copy, pinned or
pageable CUDA staging, zero-copy RDMA); a link names one with
``host_cost:`` and may override either end with ``send_cost`` /
``receive_cost``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Mapping

DeviceKind = Literal["cpu", "dpu", "gpu"]
LinkKind = Literal["pcie", "rdma", "tcp", "shm", "nvlink", "wan"]


@dataclass(frozen=True)
class DeviceProfile:
    kind: DeviceKind
    servers: int
    speed: float
    description: str
    source: str


@dataclass(frozen=True)
class LinkProfile:
    kind: LinkKind
    bandwidth: float  # bytes per second, one direction
    latency: float  # seconds, per message, not occupying the link
    overhead: float  # seconds, per message, occupying the link
    contention: Literal["fifo", "shared"]
    description: str
    source: str


GB = 1e9
Gbit = 1e9 / 8
us = 1e-6

DEVICES: Mapping[str, DeviceProfile] = MappingProxyType({
    "host-cpu": DeviceProfile(
        kind="cpu", servers=32, speed=1.0,
        description="generic x86 host CPU, 32 cores (set servers to your core count)",
        source="reference part for cpu costs; core count is a user setting",
    ),
    "bluefield-2": DeviceProfile(
        kind="dpu", servers=8, speed=0.085,
        description="NVIDIA BlueField-2 DPU, 8x Arm Cortex-A72",
        source="cores: BlueField-2 DPU user manual; speed (proxy, low confidence): ncnn ResNet-18 "
        "4 threads, Raspberry Pi 4 A72 123 ms vs Jetson AGX Orin A78AE 10.4 ms = 0.085 "
        "(Tencent/ncnn benchmark/README.md)",
    ),
    "bluefield-3": DeviceProfile(
        kind="dpu", servers=16, speed=1.0,
        description="NVIDIA BlueField-3 DPU, 16x Arm Cortex-A78",
        source="cores: DOCA SDK 'Hardware Architecture'; reference part for dpu costs",
    ),
    "t4": DeviceProfile(
        kind="gpu", servers=1, speed=0.115,
        description="NVIDIA T4, one execution stream",
        source="derived: TensorRT BERT-base FP16 batch 32, A100 3.85 ms vs T4 33.7 ms "
        "(NVIDIA/TensorRT demo/BERT README)",
    ),
    "l4": DeviceProfile(
        kind="gpu", servers=1, speed=0.30,
        description="NVIDIA L4, one execution stream",
        source="derived: MLPerf ResNet-50 offline, L4 12,882/s vs A100-SXM 42,379/s "
        "(mlcommons inference_results v3.0/v3.1)",
    ),
    "a100": DeviceProfile(
        kind="gpu", servers=1, speed=1.0,
        description="NVIDIA A100, one execution stream",
        source="reference part for gpu costs",
    ),
    "h100": DeviceProfile(
        kind="gpu", servers=1, speed=2.09,
        description="NVIDIA H100 SXM, one execution stream",
        source="derived: MLPerf ResNet-50 offline, H100-SXM 88,714/s vs A100-SXM 42,379/s "
        "(mlcommons inference_results v4.0)",
    ),
})

_CUDA_MEMCPY = 6.5 * us  # cudaMemcpy fixed overhead 6-7 us (NVIDIA/gdrcopy README)
_RC_SEND_LAT = 0.83 * us  # ib_send_lat RC at 32 B (published thesis table, NIC unstated)

LINKS: Mapping[str, LinkProfile] = MappingProxyType({
    "pcie-gen3-x16": LinkProfile(
        kind="pcie", bandwidth=12 * GB, latency=0.0, overhead=_CUDA_MEMCPY, contention="fifo",
        description="PCIe Gen3 x16, pinned host memory, DMA copies serialised per direction",
        source="~12 GB/s pinned (CUDA C++ Best Practices Guide 9.1.1; gearshifft PR 82); "
        "overhead: cudaMemcpy 6-7 us (NVIDIA/gdrcopy README)",
    ),
    "pcie-gen4-x16": LinkProfile(
        kind="pcie", bandwidth=25 * GB, latency=0.0, overhead=_CUDA_MEMCPY, contention="fifo",
        description="PCIe Gen4 x16, pinned host memory",
        source="~25 GB/s pinned (NVIDIA/nvbandwidth issues 42, 15); overhead: NVIDIA/gdrcopy README",
    ),
    "pcie-gen5-x16": LinkProfile(
        kind="pcie", bandwidth=35 * GB, latency=0.0, overhead=_CUDA_MEMCPY, contention="fifo",
        description="PCIe Gen5 x16 (H100), host to device",
        source="35 GB/s H2D (NVIDIA/nvbandwidth issue 24); overhead: NVIDIA/gdrcopy README",
    ),
    "nvlink4": LinkProfile(
        kind="nvlink", bandwidth=378 * GB, latency=0.0, overhead=0.0, contention="shared",
        description="NVLink 4 (H100 SXM), one direction",
        source="~376-380 GB/s one way measured (NVIDIA/nccl issue 1264)",
    ),
    "roce-100g": LinkProfile(
        kind="rdma", bandwidth=95.4 * Gbit, latency=_RC_SEND_LAT, overhead=0.0, contention="shared",
        description="RoCE / InfiniBand 100G, RDMA (GPUDirect capable)",
        source="95.4 Gb/s at >= 8 KB, ConnectX-5 EDR (linux-rdma/perftest PR 98); "
        "latency: ib_send_lat RC 0.83 us at 32 B",
    ),
    "roce-200g": LinkProfile(
        kind="rdma", bandwidth=0.992 * 200 * Gbit, latency=_RC_SEND_LAT, overhead=0.0,
        contention="shared",
        description="RoCE 200G (BlueField-3 B3220 port), RDMA",
        source="derived: 99.2% of line rate as measured at 400G (NVIDIA/daqiri PR 162); "
        "latency: ib_send_lat RC 0.83 us at 32 B",
    ),
    "roce-400g": LinkProfile(
        kind="rdma", bandwidth=396.9 * Gbit, latency=_RC_SEND_LAT, overhead=0.0, contention="shared",
        description="RoCE 400G (BlueField-3 B3240 port), RDMA",
        source="396.9 Gb/s sustained with 8 MB messages (NVIDIA/daqiri PR 162); "
        "latency: ib_send_lat RC 0.83 us at 32 B",
    ),
    "tcp-25g": LinkProfile(
        kind="tcp", bandwidth=25 * Gbit, latency=5.3 * us, overhead=0.0, contention="shared",
        description="kernel TCP over 25 GbE",
        source="line rate; latency: kernel socket half round trip 5.3 us, ConnectX-3 sockperf "
        "(Mellanox/libvma issue 371), low confidence",
    ),
    "tcp-100g": LinkProfile(
        kind="tcp", bandwidth=100 * Gbit, latency=5.3 * us, overhead=0.0, contention="shared",
        description="kernel TCP over 100 GbE (one core cannot reach line rate: lower bandwidth "
        "if one core serves the socket)",
        source="line rate (Cai et al., SIGCOMM 2021, on the single-core limit); latency: "
        "Mellanox/libvma issue 371, low confidence",
    ),
    "grpc-localhost": LinkProfile(
        kind="tcp", bandwidth=25 * Gbit, latency=73.5 * us, overhead=0.0, contention="shared",
        description="gRPC unary call on one host (per-call cost dominates small messages)",
        source="~73.5 us per unary call, Go, localhost (github abba5/grpc-unary-vs-http1-1); "
        "bandwidth as tcp-25g",
    ),
    "shm": LinkProfile(
        kind="shm", bandwidth=7.0 * GB, latency=30 * us, overhead=0.0, contention="fifo",
        description="shared-memory ring between processes on one host (one copy in), as dgsim's "
        "harness implements it in Python (a native ring has far lower latency)",
        source="measured on this project's 2-core CI machine: ~7 GB/s streaming 512 KB-8 MB, "
        "~28-46 us one-way median for 4-128 KB (reports/transports.md, benchmarks/transports.py)",
    ),
})


# --- host costs of moving data, by transport --------------------------------


@dataclass(frozen=True)
class HostCost:
    """CPU time one message costs the device at one end of a link: ``per_message + copies * bytes / copy_rate``."""

    per_message: float  # seconds
    copy_rate: float | None  # bytes one core moves per second; None: no per-byte cost
    copies: int
    source: str


@dataclass(frozen=True)
class HostCostPreset:
    """A transport's host costs at each end (a link's ``host_cost:``); ``None``: no CPU time at that end."""

    send: HostCost | None
    receive: HostCost | None
    description: str


# Kernel TCP: a single core saturates a 40 Gbit/s link but not 100 Gbit/s, the kernel-to-user copy at the
# receiver being the bottleneck (Cai et al., "Understanding Host Network Stack Overheads", SIGCOMM 2021):
# 40 Gbit/s = 5 GB/s per core is a lower bound on one core's whole receive path (derived). Per message: the
# kernel UDP half round trip 5.3 us (ConnectX-3, sockperf; Mellanox/libvma issue 371) spans both ends' stacks
# and the wire, an upper bound on one end's CPU time per message (proxy, low confidence).
_TCP_PER_MESSAGE = 5.3 * us
_TCP_CORE_RATE = 40 * Gbit
_KERNEL_TCP = HostCost(
    per_message=_TCP_PER_MESSAGE, copy_rate=_TCP_CORE_RATE, copies=1,
    source="per message 5.3 us: kernel socket half round trip, ConnectX-3 sockperf (Mellanox/libvma issue 371; "
    "an upper bound, proxy); per byte: one core saturates 40 Gbit/s but not 100 (Cai et al., SIGCOMM 2021) -> "
    "5 GB/s per core (derived)",
)
# gRPC unary call on localhost ~73.5 us end to end, Go (github abba5/grpc-unary-vs-http1-1); split evenly
# between the two ends (assumed) on top of the kernel TCP path.
_GRPC = HostCost(
    per_message=73.5 * us / 2, copy_rate=_TCP_CORE_RATE, copies=2,
    source="per message: half of a ~73.5 us gRPC unary call on localhost (github abba5/grpc-unary-vs-http1-1; "
    "the even split is assumed, an upper bound); per byte: the kernel TCP copy (5 GB/s per core, derived from "
    "Cai et al., SIGCOMM 2021) plus one protobuf (de)serialisation pass at the same rate (assumed)",
)
# One user-space copy into a shared-memory ring: ~7 GB/s streaming 512 KB-8 MB, measured on this
# project's CI machine (reports/transports.md, benchmarks/transports.py).
_USER_COPY = HostCost(
    per_message=0.0, copy_rate=7.0 * GB, copies=1,
    source="one memcpy into the ring at ~7 GB/s (measured here: reports/transports.md; a Python ring, so a "
    "lower bound on a native one's rate)",
)
# cudaMemcpy from pageable memory: the driver stages through a pinned buffer, so the CPU copies the bytes
# once more. Per message: cudaMemcpy fixed overhead 6-7 us (NVIDIA/gdrcopy README). Per byte: the extra time
# pageable takes over pinned at 1 MiB, PCIe Gen4 (NVlabs/cuda-oxide PR 976): H2D 1/13.7 - 1/22.5 GB/s =
# 0.0285 ns/B (35 GB/s), D2H 1/9.2 - 1/25.4 GB/s = 0.0693 ns/B (14.4 GB/s), derived, charged as CPU time.
_CUDA_CALL = HostCost(
    per_message=_CUDA_MEMCPY, copy_rate=None, copies=1,
    source="cudaMemcpy fixed overhead 6-7 us (NVIDIA/gdrcopy README); pinned memory: the bytes move by DMA",
)
_PAGEABLE_H2D = HostCost(
    per_message=_CUDA_MEMCPY, copy_rate=1 / (1 / (13.7 * GB) - 1 / (22.5 * GB)), copies=1,
    source="per message: NVIDIA/gdrcopy README (6-7 us); per byte: H2D pageable 13.7 vs pinned 22.5 GB/s at "
    "1 MiB, PCIe Gen4 (NVlabs/cuda-oxide PR 976) -> 35 GB/s of staging copy (derived)",
)
_PAGEABLE_D2H = HostCost(
    per_message=_CUDA_MEMCPY, copy_rate=1 / (1 / (9.2 * GB) - 1 / (25.4 * GB)), copies=1,
    source="per message: NVIDIA/gdrcopy README (6-7 us); per byte: D2H pageable 9.2 vs pinned 25.4 GB/s at "
    "1 MiB, PCIe Gen4 (NVlabs/cuda-oxide PR 976) -> 14.4 GB/s of staging copy (derived)",
)

HOST_COSTS: Mapping[str, HostCostPreset] = MappingProxyType({
    "kernel-tcp": HostCostPreset(
        send=_KERNEL_TCP, receive=_KERNEL_TCP,
        description="kernel TCP sockets: system calls and protocol work per message, one copy between user "
        "and kernel buffers at each end"),
    "grpc": HostCostPreset(
        send=_GRPC, receive=_GRPC,
        description="gRPC unary calls over kernel TCP: the call's framework cost per message, the socket copy "
        "and a serialisation pass at each end"),
    "user-copy": HostCostPreset(
        send=_USER_COPY, receive=None,
        description="shared-memory ring between processes on one host: the writer copies the bytes in, the "
        "reader maps them"),
    "pinned-staging": HostCostPreset(
        send=_CUDA_CALL, receive=_CUDA_CALL,
        description="cudaMemcpy to and from pinned host memory: a call per message, the bytes move by DMA"),
    "pageable-staging": HostCostPreset(
        send=_PAGEABLE_H2D, receive=_PAGEABLE_D2H,
        description="cudaMemcpy to and from pageable host memory: a call per message plus the driver's copy "
        "through a pinned staging buffer (sending: host to device; receiving: device to host)"),
    "zero-copy": HostCostPreset(
        send=None, receive=None,
        description="RDMA / GPUDirect: the NIC moves the bytes; no CPU on the data path (posting a work "
        "request is well under a microsecond: left out)"),
})


# --- prices -------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """What one device of a profile costs: bought (``list_usd``) and/or rented (``cloud_usd_per_hour``).

    ``per`` is what one unit is: a whole device, or one core (host CPUs,
    whose core count is the scenario's ``servers``). Every figure carries its
    public source and the date it was stated; prices move, so a scenario can
    override them (``cost:`` section) and should, for a real purchase.
    """

    list_usd: float | None
    list_source: str
    cloud_usd_per_hour: float | None
    cloud_source: str
    per: Literal["device", "core"] = "device"


PRICES: Mapping[str, Price] = MappingProxyType({
    "host-cpu": Price(
        list_usd=None, list_source="",
        cloud_usd_per_hour=0.2016 / 2, per="core",
        cloud_source="AWS m7i.xlarge (4 vCPU = 2 cores, Intel Xeon 4th gen) on-demand Linux us-east-1 "
        "$0.2016/h, per core $0.1008/h (c3x.dev blog 'm5 vs m6i vs m7i: cost and price-performance', 2026)",
    ),
    "bluefield-3": Price(
        list_usd=2500.0,
        list_source="street price 'roughly $2,000-3,000 per card depending on SKU and channel' (early-to-mid "
        "2026), midpoint (yobitel.com knowledge base 'BlueField-3 DPU')",
        cloud_usd_per_hour=None, cloud_source="no public per-hour price for a BlueField-3 alone",
    ),
    "t4": Price(
        list_usd=None, list_source="",
        cloud_usd_per_hour=0.53,
        cloud_source="1x T4 on-demand $0.53/h, checked 2026-04-08 (computeprices.com/gpus/t4)",
    ),
    "a100": Price(
        list_usd=12500.0,
        list_source="A100 80GB '$10,000 to $15,000 per GPU as of mid-2024', midpoint (xither.com 'GPU Compute "
        "Costs: On-Prem vs. Cloud vs. Spot Instances')",
        cloud_usd_per_hour=32.77 / 8,
        cloud_source="AWS p4d.24xlarge (8x A100) on-demand us-east-1 $32.77/h, per GPU $4.10/h, as of Q2 2024 "
        "(same xither.com page; usage.ai 'GPU instance cost optimization', 2026-06-24, states the same $32.77)",
    ),
    "h100": Price(
        list_usd=None, list_source="",
        cloud_usd_per_hour=98.32 / 8,
        cloud_source="AWS p5.48xlarge (8x H100) on-demand ~$98.32/h, per GPU $12.29/h (usage.ai 'GPU instance "
        "cost optimization', 2026-06-24)",
    ),
})
