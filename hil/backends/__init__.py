"""Inference backends: one interface, three engines, an honest choice.

The harness runs ONNX models on whatever this machine has:

* ``tensorrt`` - native TensorRT 10 with cuda-python buffers and CUDA-event
  timings (``tensorrt_native``);
* ``onnxruntime-gpu`` - onnxruntime's TensorRT / CUDA providers with
  IOBinding (``ort_gpu``);
* ``onnxruntime-cpu`` - onnxruntime on chosen CPU cores: the DPU's Arm cores
  on a BlueField, host cores standing in for them elsewhere (``ort_cpu``).

``open_backend("auto", ...)`` takes the first of these that opens and
records on the backend (``selection``) what it skipped and why;
``"onnxruntime"`` means GPU if possible, else CPU; naming one engine gets
that engine or a ``BackendError`` saying what is missing. ``probe_backends``
lists what this machine offers, for ``dgsim hil doctor``.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Literal

from hil.backends.base import BackendError, BackendOptions, InferenceBackend, InputSpec, StageTimings
from hil.backends.cuda_probe import probe_gpu, probe_onnxruntime, probe_tensorrt
from hil.backends.ort_cpu import OrtCpuBackend
from hil.backends.ort_gpu import OrtGpuBackend
from hil.backends.tensorrt_native import TensorRTBackend
from hil.probe import Capability

BackendKind = Literal["auto", "onnxruntime", "tensorrt", "onnxruntime-gpu", "onnxruntime-cpu"]

BACKENDS: MappingProxyType[str, type[InferenceBackend]] = MappingProxyType(
    {cls.kind: cls for cls in (TensorRTBackend, OrtGpuBackend, OrtCpuBackend)}
)
_CHOICES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "auto": ("tensorrt", "onnxruntime-gpu", "onnxruntime-cpu"),
        "onnxruntime": ("onnxruntime-gpu", "onnxruntime-cpu"),
        **{kind: (kind,) for kind in BACKENDS},
    }
)

__all__ = [
    "BACKENDS",
    "BackendError",
    "BackendKind",
    "BackendOptions",
    "InferenceBackend",
    "InputSpec",
    "OrtCpuBackend",
    "OrtGpuBackend",
    "StageTimings",
    "TensorRTBackend",
    "open_backend",
    "probe_backends",
]


def open_backend(kind: BackendKind, model_path: str | Path, options: BackendOptions | None = None) -> InferenceBackend:
    """Open the best backend ``kind`` allows; its ``selection`` says what was skipped and why."""
    if kind not in _CHOICES:
        raise BackendError(f"unknown backend kind {kind!r}; choose one of {', '.join(_CHOICES)}")
    chain = _CHOICES[kind]
    skipped: list[tuple[str, str]] = []
    for name in chain:
        cap = BACKENDS[name].probe()
        if not cap.available:
            skipped.append((name, cap.detail))
            continue
        why = "; ".join(f"{n}: {reason}" for n, reason in skipped)
        note = f"{kind} -> {name}" + (f" (skipped {why})" if skipped else "")
        backend = BACKENDS[name](model_path, options, selection=Capability("backend selection", True, note))
        try:
            return backend.open()
        except BackendError as exc:
            skipped.append((name, str(exc)))
    if len(chain) == 1:
        raise BackendError(f"backend {kind!r} is not available here: {skipped[0][1]}")
    raise BackendError(f"no {kind!r} backend could open {model_path}: " + "; ".join(f"{n}: {r}" for n, r in skipped))


def probe_backends() -> list[Capability]:
    """Everything the backends depend on, then each backend: available or why not."""
    return [probe_gpu(), probe_tensorrt(), probe_onnxruntime(), *(cls.probe() for cls in BACKENDS.values())]
