"""onnxruntime on the GPU: TensorRT or CUDA execution providers.

The second way onto the GPU, for machines with onnxruntime-gpu but no native
TensorRT. The TensorRT provider comes first when offered (``ort_tensorrt``),
with its engine cache and a batch profile 1 / opt / max; the CUDA provider
takes whatever TensorRT does not. Each batch goes through IOBinding in three
synchronous steps - copy in, run on device buffers, copy out - timed on the
host clock. onnxruntime silently falls back to CPU when the CUDA libraries
it needs fail to load; that is turned into an error here, never a
mislabelled result.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from hil.backends.base import BackendError, BackendOptions, InferenceBackend, InputSpec, StageTimings, read_input_spec
from hil.backends.cuda_probe import ort_providers, probe_gpu
from hil.backends.ort_cpu import load_session, session_options
from hil.probe import Capability

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def tensorrt_provider_options(spec: InputSpec, options: BackendOptions) -> dict[str, Any]:
    """TensorrtExecutionProvider settings: precision, engine cache, batch profile."""
    found: dict[str, Any] = {
        "device_id": options.device,
        "trt_fp16_enable": options.fp16,
        "trt_max_workspace_size": options.workspace_bytes,
        "trt_engine_cache_enable": options.cache_dir is not None,
    }
    if options.cache_dir is not None:
        found["trt_engine_cache_path"] = str(options.cache_dir / "ort-tensorrt")
    if spec.shape[0] is None:
        tail = "x".join(map(str, spec.fixed_tail("onnxruntime-gpu")))
        for key, batch in (("min", 1), ("opt", options.profile_opt), ("max", options.max_batch)):
            found[f"trt_profile_{key}_shapes"] = f"{spec.name}:{batch}x{tail}"
    return found


class OrtGpuBackend(InferenceBackend):
    """onnxruntime-gpu with TensorrtExecutionProvider and/or CUDAExecutionProvider."""

    kind = "onnxruntime-gpu"

    def __init__(
        self, model_path: str | Path, options: BackendOptions | None = None, *, selection: Capability | None = None
    ):
        super().__init__(model_path, options, selection=selection)
        self._session: Any = None
        self._ort: Any = None
        self._gpu = ""

    @classmethod
    def probe(cls) -> Capability:
        name = f"backend {cls.kind}"
        found = ort_providers()
        if found is None:
            return Capability(name, False, "onnxruntime is not installed")
        version, providers = found
        offered = [p for p in GPU_PROVIDERS if p in providers]
        if not offered:
            return Capability(
                name,
                False,
                f"onnxruntime {version} has no GPU provider (it offers {', '.join(providers)}); install onnxruntime-gpu",
            )
        gpu = probe_gpu()
        if not gpu.available:
            return Capability(
                name, False, f"onnxruntime {version} offers {', '.join(offered)} but there is no GPU: {gpu.detail}"
            )
        return Capability(name, True, f"onnxruntime {version} {', '.join(offered)} on {gpu.detail}")

    def _open(self) -> InputSpec:
        cap = self.probe()
        if not cap.available:
            raise BackendError(cap.detail)
        import onnxruntime as ort

        spec = read_input_spec(self.model_path)
        opts = self.options
        providers: list[Any] = []
        if opts.ort_tensorrt and "TensorrtExecutionProvider" in ort.get_available_providers():
            trt_options = tensorrt_provider_options(spec, opts)
            if "trt_engine_cache_path" in trt_options:
                Path(trt_options["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
            providers.append(("TensorrtExecutionProvider", trt_options))
        providers += [("CUDAExecutionProvider", {"device_id": opts.device}), "CPUExecutionProvider"]
        session = load_session(ort, self.model_path, session_options(ort, opts), providers)
        used = session.get_providers()
        if not any(p in used for p in GPU_PROVIDERS):
            raise BackendError(
                f"onnxruntime fell back to {used}: its CUDA/cuDNN/TensorRT libraries did not load (see its log above)"
            )
        self._session, self._ort, self._gpu = session, ort, cap.detail
        return spec

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        ort, session, device = self._ort, self._session, self.options.device
        t0 = time.perf_counter()
        x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", device)
        t1 = time.perf_counter()
        binding = session.io_binding()
        binding.bind_ortvalue_input(self.input_name, x_dev)
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda", device)
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        t2 = time.perf_counter()
        outputs = binding.copy_outputs_to_cpu()
        t3 = time.perf_counter()
        self._timings = StageTimings(t1 - t0, t2 - t1, t3 - t2, "host perf_counter around synchronous IOBinding steps")
        return list(outputs)

    def _close(self) -> None:
        self._session = None

    def _describe(self) -> str:
        o = self.options
        used = ", ".join(self._session.get_providers()) if self._session is not None else "TensorRT/CUDA providers"
        fp16 = "fp16 allowed" if o.fp16 else "precision as in the model"
        profile = f"batch profile 1/{o.profile_opt}/{o.max_batch}"
        return f"onnxruntime {used} on device {o.device} ({self._gpu or 'GPU'}), IOBinding, {fp16}, {profile}"
