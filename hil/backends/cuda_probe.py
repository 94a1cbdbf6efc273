"""Is there a GPU, TensorRT, a GPU-capable onnxruntime? Asked safely.

TensorRT crashes the process (a segfault, not an exception) when it is used
without a working NVIDIA driver, so the order matters: first ask the CUDA
runtime, through cuda-python, how many devices it sees; touch TensorRT only
when that answer is a success with at least one device. cuda-python is
optional; without it, ``nvidia-smi`` can still say whether a GPU exists.

Probing initialises the CUDA driver in the calling process: start GPU worker
processes with the "spawn" method, never "fork", after probing.
Nothing here imports tensorrt or onnxruntime at module import time.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from importlib import metadata
from types import ModuleType
from typing import Any

from hil.backends.base import BackendError
from hil.probe import Capability

GPU = "nvidia GPU"
TENSORRT = "tensorrt"
ORT_PROVIDERS = "onnxruntime providers"
MIN_TENSORRT_MAJOR = 10


def import_cudart() -> ModuleType:
    """The CUDA runtime binding of cuda-python (raises ImportError when absent)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # cuda-python < 12.6
    return runtime


def cuda_call(cudart: ModuleType, result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` result, raising BackendError on error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendError(f"{what} failed: {_error_name(cudart, err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _error_name(cudart: ModuleType, err: Any) -> str:
    name = cudart.cudaGetErrorName(err)[1]
    return name.decode() if isinstance(name, bytes) else str(name)


def device_name(cudart: ModuleType, device: int) -> str:
    prop = cuda_call(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00").strip()


def cuda_devices() -> tuple[list[str], str]:
    """Names of the devices the CUDA runtime can use, or ([], why none)."""
    try:
        cudart = import_cudart()
    except ImportError:
        return [], "cuda-python is not installed (pip install cuda-python)"
    try:
        err, count = cudart.cudaGetDeviceCount()
        if err != cudart.cudaError_t.cudaSuccess:
            driver = cudart.cudaDriverGetVersion()[1]
            why = (
                "no NVIDIA driver is loaded"
                if driver == 0
                else f"the NVIDIA driver (CUDA {_cuda_version(driver)}) is too old or broken"
            )
            return [], f"{why} (cudaGetDeviceCount: {_error_name(cudart, err)})"
        if count == 0:
            return [], "the NVIDIA driver reports zero devices"
        return [device_name(cudart, i) for i in range(count)], "via cuda-python"
    except Exception as exc:  # a broken install must not take the probe down
        return [], f"cuda-python could not query devices: {exc}"


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def _nvidia_smi_names() -> tuple[list[str], str]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], "nvidia-smi is not on PATH (no NVIDIA driver installed?)"
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=15, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi failed: {exc}"
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return (
        (names, "via nvidia-smi")
        if out.returncode == 0 and names
        else ([], f"nvidia-smi: {out.stderr.strip() or 'no GPUs'}")
    )


def _summary(names: list[str]) -> str:
    return ", ".join(f"{names.count(n)} x {n}" for n in dict.fromkeys(names))


def probe_gpu() -> Capability:
    """An NVIDIA GPU usable from Python: names and count, or why there is none."""
    names, how = cuda_devices()
    if names:
        return Capability(GPU, True, f"{_summary(names)} {how}")
    if how.startswith("cuda-python is not installed"):
        smi, smi_how = _nvidia_smi_names()
        if smi:
            return Capability(GPU, True, f"{_summary(smi)} {smi_how}; {how}, so native TensorRT cannot use it")
        return Capability(GPU, False, f"{how}; {smi_how}")
    return Capability(GPU, False, how)


def tensorrt_version_installed() -> str | None:
    """TensorRT's version from package metadata, without importing it."""
    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt_cu13_bindings", "tensorrt_cu12_bindings"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def probe_tensorrt() -> Capability:
    """TensorRT with a builder, loadable here; imported only once a GPU answered."""
    names, why = cuda_devices()
    gpu_note = "" if names else f"; and no usable GPU: {why}"
    if importlib.util.find_spec("tensorrt") is None:
        if importlib.util.find_spec("tensorrt_lean") is not None:
            return Capability(
                TENSORRT, False, f"only tensorrt_lean is installed: it runs plans but cannot build them{gpu_note}"
            )
        return Capability(
            TENSORRT, False, f"the tensorrt Python package is not installed (pip install 'tensorrt<11'){gpu_note}"
        )
    label = f"TensorRT {tensorrt_version_installed() or '(version unknown)'}"
    if not names:
        return Capability(
            TENSORRT, False, f"{label} is installed but left unloaded: TensorRT needs a usable GPU, {why}"
        )
    try:
        import tensorrt
    except Exception as exc:
        return Capability(TENSORRT, False, f"{label} is installed but does not import: {exc}")
    version = str(tensorrt.__version__)
    if int(version.split(".")[0]) < MIN_TENSORRT_MAJOR:
        return Capability(
            TENSORRT, False, f"TensorRT {version} is too old; the native backend needs {MIN_TENSORRT_MAJOR} or newer"
        )
    return Capability(TENSORRT, True, f"TensorRT {version} on {_summary(names)}")


def ort_providers() -> tuple[str, list[str]] | None:
    """(version, available providers) of onnxruntime, or None when not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__, list(onnxruntime.get_available_providers())


def probe_onnxruntime() -> Capability:
    """Which execution providers the installed onnxruntime offers."""
    found = ort_providers()
    if found is None:
        return Capability(ORT_PROVIDERS, False, "onnxruntime is not installed (pip install 'dgsim[hil]')")
    version, providers = found
    return Capability(ORT_PROVIDERS, True, f"onnxruntime {version}: {', '.join(providers)}")
