"""Native TensorRT 10: build or load a plan, run it with explicit CUDA copies.

Building an engine takes seconds to minutes, so the serialized plan is cached
on disk under a key that changes whenever the plan would: the ONNX bytes,
the TensorRT version, the GPU, the batch profile (1 / opt / max), the FP16
flag and the workspace limit. Precision comes from the model; ``fp16`` only
lets TensorRT pick FP16 kernels, and TensorRT 11 (strongly typed networks,
no FP16 flag) refuses it. FP32 layers may still run in TF32, TensorRT's
default on Ampere and newer.

Each batch moves like this on one CUDA stream: numpy -> pinned host buffer
-> device (H2D), ``execute_async_v3`` (compute), device -> pinned host (D2H),
with a CUDA event between stages, so ``last_timings()`` reports the three
GPU-side durations the calibration needs. Buffers are allocated once for
``max_batch`` and every tensor address is bound once at open.

A model may have several inputs (``run_feeds``): the tail of a split model
takes every tensor crossing the cut (an activation, a recurrent state, a
sample rate). Each input whose first dimension is dynamic gets the batch
profile; every other dimension must be static, as ``dgsim partition``
writes its segments. The engine is built from the segment's ONNX file like
any model.

TensorRT segfaults without a working driver, so ``open()`` asks cuda-python
for a device before importing tensorrt.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hil.backends.base import BackendError, BackendOptions, InferenceBackend, InputSpec, StageTimings, read_input_specs
from hil.backends.cuda_probe import cuda_call, cuda_devices, device_name, import_cudart, probe_tensorrt
from hil.probe import Capability


@dataclass(frozen=True)
class _Tensor:
    """One I/O tensor: device buffer, pinned host buffer and a numpy view of it."""

    name: str
    is_input: bool
    device_ptr: int
    host_ptr: int
    host: np.ndarray  # flat view of the pinned buffer, max_batch capacity


def plan_key(onnx_bytes: bytes, trt_version: str, gpu: str, options: BackendOptions) -> str:
    """Hash of everything that changes the plan TensorRT would build."""
    digest = hashlib.sha256(onnx_bytes)
    settings = (trt_version, gpu, options.max_batch, options.profile_opt, options.fp16, options.workspace_bytes)
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:24]


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class TensorRTBackend(InferenceBackend):
    """A TensorRT engine built from the ONNX model, run with cuda-python buffers."""

    kind = "tensorrt"
    several_inputs = True

    def __init__(
        self, model_path: str | Path, options: BackendOptions | None = None, *, selection: Capability | None = None
    ):
        super().__init__(model_path, options, selection=selection)
        self._cudart: Any = None
        self._logger: Any = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._events: tuple[Any, ...] = ()
        self._tensors: tuple[_Tensor, ...] = ()
        self._specs: tuple[InputSpec, ...] = ()
        self._resources: ExitStack | None = None
        self._version = ""
        self._gpu = ""
        self.plan_path: Path | None = None
        self.plan_from_cache = False

    @classmethod
    def probe(cls) -> Capability:
        cap = probe_tensorrt()
        if cap.available:
            try:
                import_cudart()
            except ImportError:
                return Capability(
                    f"backend {cls.kind}", False, "cuda-python is not installed (pip install cuda-python)"
                )
        return Capability(f"backend {cls.kind}", cap.available, cap.detail)

    # -- building -----------------------------------------------------------

    def _build(self, trt: Any, logger: Any, onnx_bytes: bytes) -> bytes:
        opts = self.options
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_bytes, str(self.model_path)):
            errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT could not parse {self.model_path}: {errors or 'no details'}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_bytes)
        if opts.fp16:
            if not hasattr(trt.BuilderFlag, "FP16"):
                raise BackendError(
                    f"TensorRT {trt.__version__} has no FP16 flag; export the ONNX model in FP16 instead"
                )
            config.set_flag(trt.BuilderFlag.FP16)
        profile = builder.create_optimization_profile()
        dynamic = False
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = tuple(tensor.shape)
            if any(d < 0 for d in shape[1:]):
                raise BackendError(f"TensorRT: only the batch dim of {tensor.name!r} may be dynamic, shape is {shape}")
            if shape and shape[0] < 0:
                tail = shape[1:]
                profile.set_shape(tensor.name, (1, *tail), (opts.profile_opt, *tail), (opts.max_batch, *tail))
                dynamic = True
        if dynamic:
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError(f"TensorRT failed to build an engine for {self.model_path} (see the TensorRT log above)")
        return bytes(plan)

    def _engine_from_plan(self, trt: Any, logger: Any) -> Any:
        onnx_bytes = self.model_path.read_bytes()
        key = plan_key(onnx_bytes, trt.__version__, self._gpu, self.options)
        cache = self.options.cache_dir
        path = None if cache is None else cache / "tensorrt" / f"{self.model_path.stem}-{key}.plan"
        self.plan_path, self.plan_from_cache = path, path is not None and path.is_file()
        self._runtime = trt.Runtime(logger)
        if self.plan_from_cache:
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is not None:
                return engine
            self.plan_from_cache = False  # unreadable plan: rebuild below
        plan = self._build(trt, logger, onnx_bytes)
        if path is not None:
            _write_atomic(path, plan)
        engine = self._runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendError("TensorRT could not deserialize the plan it just built")
        return engine

    # -- opening ------------------------------------------------------------

    def _open(self) -> InputSpec:
        names, why = cuda_devices()
        if not names:
            raise BackendError(f"TensorRT needs a usable NVIDIA GPU: {why}")
        device = self.options.device
        if device >= len(names):
            raise BackendError(f"CUDA device {device} does not exist; found {len(names)}: {names}")
        cap = probe_tensorrt()
        if not cap.available:
            raise BackendError(cap.detail)
        specs = read_input_specs(self.model_path)
        if not specs:
            raise BackendError(f"{self.model_path}: the model has no inputs")
        self._specs = specs
        import tensorrt as trt

        cudart = self._cudart = import_cudart()
        cuda_call(cudart, cudart.cudaSetDevice(device), "cudaSetDevice")
        self._version, self._gpu = trt.__version__, device_name(cudart, device)
        logger = self._logger = trt.Logger(trt.Logger.WARNING)  # must outlive runtime and engine
        with ExitStack() as stack:
            stack.callback(self._drop_engine)
            self._engine = self._engine_from_plan(trt, logger)
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise BackendError("TensorRT could not create an execution context (out of GPU memory?)")
            self._stream = cuda_call(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
            stack.callback(cudart.cudaStreamDestroy, self._stream)
            self._events = tuple(self._new_event(stack) for _ in range(4))
            self._tensors = self._bind_tensors(trt, stack)
            self._resources = stack.pop_all()
        return specs[0]

    def _new_event(self, stack: ExitStack) -> Any:
        cudart = self._cudart
        event = cuda_call(cudart, cudart.cudaEventCreate(), "cudaEventCreate")
        stack.callback(cudart.cudaEventDestroy, event)
        return event

    def _bind_tensors(self, trt: Any, stack: ExitStack) -> tuple[_Tensor, ...]:
        """Allocate max-batch buffers for every I/O tensor and bind their addresses."""
        engine, context, cudart = self._engine, self._context, self._cudart
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for name in inputs:
            shape = tuple(engine.get_tensor_shape(name))
            if shape and shape[0] < 0:
                context.set_input_shape(name, (self.options.max_batch, *shape[1:]))
        tensors = []
        for name in names:
            dims = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in dims):
                raise BackendError(f"TensorRT: output {name!r} has data-dependent shape {dims}; not supported")
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            nbytes = max(1, int(np.prod(dims))) * dtype.itemsize
            device_ptr = cuda_call(cudart, cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes}) for {name}")
            stack.callback(cudart.cudaFree, device_ptr)
            host_ptr = cuda_call(cudart, cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes}) for {name}")
            stack.callback(cudart.cudaFreeHost, host_ptr)
            host = np.frombuffer((ctypes.c_byte * nbytes).from_address(int(host_ptr)), dtype=dtype)
            if not context.set_tensor_address(name, int(device_ptr)):
                raise BackendError(f"TensorRT refused the buffer address of {name!r}")
            tensors.append(_Tensor(name, name in inputs, int(device_ptr), int(host_ptr), host))
        return tuple(tensors)

    # -- running ------------------------------------------------------------

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self._run_feeds({self.input_spec.name: x})

    def _run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        cudart, context, stream = self._cudart, self._context, self._stream
        inputs = [t for t in self._tensors if t.is_input]
        missing = sorted({t.name for t in inputs} - set(feeds))
        if missing or len(feeds) != len(inputs):
            raise BackendError(f"tensorrt: the engine takes inputs {[t.name for t in inputs]}, got {list(feeds)}")
        for spec in self._specs:
            spec_x = feeds[spec.name]
            if spec_x.dtype != spec.dtype or spec_x.ndim != len(spec.shape):
                raise BackendError(f"tensorrt: input {spec.name!r} takes {spec.dtype} of {len(spec.shape)} dims, "
                                   f"got {spec_x.dtype} {spec_x.shape}")
            if spec_x.ndim and spec.shape[0] is None and spec_x.shape[0] > self.options.max_batch:
                raise BackendError(f"tensorrt: batch {spec_x.shape[0]} exceeds max_batch {self.options.max_batch}")
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        ev = self._events
        for inp in inputs:
            x = feeds[inp.name]
            if not context.set_input_shape(inp.name, x.shape):
                raise BackendError(f"TensorRT rejected input shape {x.shape} for {inp.name!r}")
            inp.host[: x.size] = x.reshape(-1)
        cuda_call(cudart, cudart.cudaEventRecord(ev[0], stream), "cudaEventRecord")
        for inp in inputs:
            cuda_call(cudart, cudart.cudaMemcpyAsync(inp.device_ptr, inp.host_ptr, feeds[inp.name].nbytes, h2d, stream),
                      "cudaMemcpyAsync H2D")
        cuda_call(cudart, cudart.cudaEventRecord(ev[1], stream), "cudaEventRecord")
        if not context.execute_async_v3(int(stream)):
            raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        cuda_call(cudart, cudart.cudaEventRecord(ev[2], stream), "cudaEventRecord")
        shapes = []
        for out in (t for t in self._tensors if not t.is_input):
            dims = tuple(context.get_tensor_shape(out.name))
            nbytes = int(np.prod(dims)) * out.host.itemsize
            cuda_call(
                cudart, cudart.cudaMemcpyAsync(out.host_ptr, out.device_ptr, nbytes, d2h, stream), "cudaMemcpyAsync D2H"
            )
            shapes.append((out, dims))
        cuda_call(cudart, cudart.cudaEventRecord(ev[3], stream), "cudaEventRecord")
        cuda_call(cudart, cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        ms = [
            cuda_call(cudart, cudart.cudaEventElapsedTime(a, b), "cudaEventElapsedTime")
            for a, b in zip(ev, ev[1:], strict=False)
        ]
        self._timings = StageTimings(ms[0] / 1e3, ms[1] / 1e3, ms[2] / 1e3, "CUDA events")
        return [out.host[: int(np.prod(dims))].reshape(dims).copy() for out, dims in shapes]

    # -- closing ------------------------------------------------------------

    def _drop_engine(self) -> None:
        self._tensors = ()  # numpy views first: they point into pinned memory
        self._context = None  # context before engine before runtime
        self._engine = None
        self._runtime = None

    def _close(self) -> None:
        if self._stream is not None:
            self._cudart.cudaStreamSynchronize(self._stream)
        self._drop_engine()
        resources, self._resources = self._resources, None
        self._stream, self._events = None, ()
        if resources is not None:
            resources.close()

    def _describe(self) -> str:
        o = self.options
        fp16 = "FP16 kernels allowed" if o.fp16 else "precision as in the model"
        plan = "no plan yet"
        if self.plan_path is not None:
            plan = f"plan {self.plan_path} ({'from cache' if self.plan_from_cache else 'built'})"
        elif self.is_open:
            plan = "plan built, not cached"
        version = f"TensorRT {self._version}" if self._version else "TensorRT"
        return (
            f"{version} native on {self._gpu or 'GPU'} (device {o.device}), {fp16}, "
            f"batch profile 1/{o.profile_opt}/{o.max_batch}, {plan}, pinned host buffers + cudaMemcpyAsync on one stream"
        )
