"""Landing received tensors in GPU memory: pinned staging, one async copy, timed.

A loading dock: parcels arrive on the host (a view into a ring or a socket
buffer), are put on a pallet that the forklift can take without asking the
OS (page-locked, "pinned" memory from ``cudaMallocHost``), and one
``cudaMemcpyAsync`` on a dedicated stream moves the pallet into device memory
from ``cudaMalloc``. Copying from pinned memory is a true DMA at full PCIe
speed; pageable memory would be staged by the driver anyway, slower and
synchronously. ``DeviceStager.to_device`` times both legs: the host copy
into the pinned buffer (wall clock) and the device copy (CUDA events on the
stream), and the device buffer is reused by the next call.

``DeviceBuffer`` is GPU memory exported as a dma-buf file descriptor
(``cuMemGetHandleForAddressRange``), which an RDMA NIC can register and
write into directly (GPUDirect RDMA; see ``rdma.py``).

cuda-python is imported lazily: ``cuda.bindings.runtime`` (12.6+), else
``from cuda import cudart``. ``probe_cuda`` never raises. Probing starts the
CUDA driver in the calling process, so start GPU worker processes with the
"spawn" method after probing, never "fork".
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from hil.backends.cuda_probe import cuda_devices, import_cudart
from hil.probe import Capability
from hil.transports.base import DeviceArray, TransportError, align, check_array

GPU_PAGE = 1 << 16


def import_cuda_driver() -> ModuleType:
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver
    return driver


def _error_text(err: Any) -> str:
    name = getattr(err, "name", None) or str(err)
    try:
        text = import_cudart().cudaGetErrorString(err)[1]
        return f"{name}: {text.decode() if isinstance(text, bytes) else text}"
    except Exception:
        return name


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple; raise TransportError on an error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise TransportError(f"{what} failed: {_error_text(err)}")
    return values[0] if len(values) == 1 else tuple(values) or None


def probe_cuda() -> Capability:
    """A usable GPU (the backends' device discovery finds one or more), or why not."""
    try:
        import_cudart()
    except ImportError as exc:
        return Capability("cuda", False, f"cuda-python not installed ({exc}); pip install cuda-python")
    names, why = cuda_devices()
    if not names:
        return Capability("cuda", False, f"no usable GPU: {why}")
    return Capability("cuda", True, f"{len(names)} GPU(s): {', '.join(names)} (cuda-python)")


@dataclass(frozen=True)
class Landing:
    """Where a host array landed on the GPU, and what each leg of the trip cost."""

    array: DeviceArray
    stage_s: float  # host copy into the pinned buffer (0 when it was already there)
    copy_s: float  # host-to-device DMA, measured with CUDA events
    total_s: float  # wall clock from staging start to stream synchronised


class DeviceStager:
    """A pinned host buffer, a device buffer and a stream, ``capacity`` bytes each.

    ``pinned`` is a numpy view of the pinned buffer (a receiver may fill it
    directly, and ``to_device`` then skips the staging copy); it and every
    ``DeviceArray`` returned die with ``close()``.
    """

    def __init__(self, capacity: int, device: int = 0) -> None:
        self.capacity, self.device = capacity, device
        self._rt = rt = import_cudart()
        self._host = self._dev = self._stream = None
        self._events: list[Any] = []
        try:
            check(rt.cudaSetDevice(device), f"cudaSetDevice({device})")
            self._host = check(rt.cudaMallocHost(capacity), "cudaMallocHost")
            self._dev = check(rt.cudaMalloc(capacity), "cudaMalloc")
            self._stream = check(rt.cudaStreamCreate(), "cudaStreamCreate")
            self._events = [check(rt.cudaEventCreate(), "cudaEventCreate") for _ in range(2)]
        except BaseException:
            self.close()
            raise
        self.pinned = np.ctypeslib.as_array((ctypes.c_uint8 * capacity).from_address(int(self._host)))

    def to_device(self, array: np.ndarray) -> Landing:
        """Copy ``array`` into the device buffer (valid until the next call)."""
        a = check_array(array)
        if a.nbytes > self.capacity:
            raise TransportError(f"array of {a.nbytes} bytes exceeds the {self.capacity}-byte staging buffer")
        rt, start, stop = self._rt, *self._events
        t0 = time.perf_counter()
        staged = self.pinned[: a.nbytes]
        if not (a.flags.c_contiguous and a.ctypes.data == staged.ctypes.data):
            np.copyto(staged.view(a.dtype).reshape(a.shape), a)
        t1 = time.perf_counter()
        check(rt.cudaEventRecord(start, self._stream), "cudaEventRecord")
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(rt.cudaMemcpyAsync(self._dev, self._host, a.nbytes, kind, self._stream), "cudaMemcpyAsync")
        check(rt.cudaEventRecord(stop, self._stream), "cudaEventRecord")
        check(rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        t2 = time.perf_counter()
        ms = check(rt.cudaEventElapsedTime(start, stop), "cudaEventElapsedTime")
        return Landing(DeviceArray(int(self._dev), a.dtype, a.shape, self.device), t1 - t0, ms / 1e3, t2 - t0)

    def to_host(self, array: DeviceArray) -> np.ndarray:
        """Copy a device array back into a new host array (for checks)."""
        return device_to_host(array)

    def close(self) -> None:
        rt = self._rt
        for event in self._events:
            rt.cudaEventDestroy(event)
        if self._stream is not None:
            rt.cudaStreamDestroy(self._stream)
        if self._dev is not None:
            rt.cudaFree(self._dev)
        if self._host is not None:
            self.pinned = None
            rt.cudaFreeHost(self._host)
        self._events, self._stream, self._dev, self._host = [], None, None, None

    def __enter__(self) -> DeviceStager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def device_to_host(array: DeviceArray) -> np.ndarray:
    """A new host array holding a copy of ``array``'s device bytes."""
    rt = import_cudart()
    out = np.empty(array.shape, array.dtype)
    kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
    check(rt.cudaMemcpy(out.ctypes.data, array.ptr, out.nbytes, kind), "cudaMemcpy")
    return out


class DeviceBuffer:
    """``nbytes`` (rounded up to 64 KiB) of GPU memory, exported as a dma-buf fd."""

    def __init__(self, nbytes: int, device: int = 0) -> None:
        rt, drv = import_cudart(), import_cuda_driver()
        self._rt, self.device, self.nbytes = rt, device, align(max(nbytes, 1), GPU_PAGE)
        self.ptr: int | None = None
        self.dmabuf_fd: int | None = None
        try:
            check(rt.cudaSetDevice(device), f"cudaSetDevice({device})")
            self.ptr = int(check(rt.cudaMalloc(self.nbytes), "cudaMalloc"))
            if self.ptr % GPU_PAGE:
                raise TransportError(f"cudaMalloc returned {self.ptr:#x}, not 64 KiB aligned: cannot export a dma-buf")
            sync = drv.CUpointer_attribute.CU_POINTER_ATTRIBUTE_SYNC_MEMOPS
            check(drv.cuPointerSetAttribute(1, sync, self.ptr), "cuPointerSetAttribute(SYNC_MEMOPS)")
            kind = drv.CUmemRangeHandleType.CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD
            handle = drv.cuMemGetHandleForAddressRange(drv.CUdeviceptr(self.ptr), self.nbytes, kind, 0)
            what = "cuMemGetHandleForAddressRange(DMA_BUF_FD) (needs CUDA >= 11.7 and the open kernel driver)"
            self.dmabuf_fd = int(check(handle, what))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.dmabuf_fd is not None:
            os.close(self.dmabuf_fd)
        if self.ptr is not None:
            self._rt.cudaFree(self.ptr)
        self.dmabuf_fd = self.ptr = None
