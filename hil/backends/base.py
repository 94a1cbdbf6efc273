"""The one interface every inference backend implements.

A backend is a model on an engine: an ONNX file and the options that say how
to run it (threads and cores for the DPU side, batch profile and precision
for the GPU side). The harness treats every backend alike: construct it
(pure - it only remembers what it was given), ``open()`` it (the model is
loaded, sessions or engines are built, cores pinned), ``run()`` batches
through it, ``close()`` it. ``describe()`` says in one line what really runs,
so a report never passes host cores off as a DPU or a CPU fallback off as a
GPU.

Backends run single-input models whose first dimension is the batch;
``run_feeds`` runs a model with several named inputs (a split model's tail
receiving an activation, a recurrent state and a sample rate) on backends
whose ``several_inputs`` is true (native TensorRT).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from hil.probe import Capability

GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class BackendError(RuntimeError):
    """A backend cannot be opened or cannot run; the message says why."""


@dataclass(frozen=True)
class BackendOptions:
    """How to run a model; each backend reads the fields that concern it."""

    threads: int = field(default=1, metadata={"help": "onnxruntime intra-op threads (CPU side)"})
    cores: tuple[int, ...] | None = field(
        default=None, metadata={"help": "CPU ids to run on (e.g. the cores standing in for the DPU's Arm cores)"}
    )
    pin_process: bool = field(
        default=True, metadata={"help": "with cores: pin every thread of the calling process, not only ORT's workers"}
    )
    graph_optimization: str = field(default="all", metadata={"help": "onnxruntime graph optimisation level"})
    max_batch: int = field(default=32, metadata={"help": "largest batch; TensorRT profile maximum"})
    opt_batch: int | None = field(default=None, metadata={"help": "TensorRT profile optimum batch (default max_batch)"})
    fp16: bool = field(default=False, metadata={"help": "let TensorRT pick FP16 kernels (TensorRT < 11 only)"})
    ort_tensorrt: bool = field(default=True, metadata={"help": "onnxruntime-gpu: try TensorrtExecutionProvider first"})
    cache_dir: Path | None = field(
        default=Path(".dgsim-cache"), metadata={"help": "where TensorRT plans/engines are cached; None disables"}
    )
    workspace_bytes: int = field(default=1 << 30, metadata={"help": "TensorRT builder workspace limit"})
    device: int = field(default=0, metadata={"help": "CUDA device index"})

    def __post_init__(self) -> None:
        if self.cores is not None:
            object.__setattr__(self, "cores", tuple(int(c) for c in self.cores))
            if not self.cores or min(self.cores) < 0 or len(set(self.cores)) != len(self.cores):
                raise BackendError(f"cores must be distinct non-negative CPU ids, got {self.cores}")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if self.threads < 1:
            raise BackendError(f"threads must be >= 1, got {self.threads}")
        if self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise BackendError(
                f"graph_optimization must be one of {GRAPH_OPTIMIZATION_LEVELS}, got {self.graph_optimization!r}"
            )
        if not 1 <= self.profile_opt <= self.max_batch:
            raise BackendError(f"need 1 <= opt_batch <= max_batch, got {self.opt_batch} and {self.max_batch}")
        if self.workspace_bytes < 1 or self.device < 0:
            raise BackendError("workspace_bytes must be positive and device non-negative")

    @property
    def profile_opt(self) -> int:
        """The batch size TensorRT tunes for."""
        return self.max_batch if self.opt_batch is None else self.opt_batch


@dataclass(frozen=True)
class StageTimings:
    """Where the time of the last batch went, in seconds, and which clock said so."""

    h2d_s: float
    compute_s: float
    d2h_s: float
    clock: str

    @property
    def total_s(self) -> float:
        return self.h2d_s + self.compute_s + self.d2h_s


@dataclass(frozen=True)
class InputSpec:
    """The model's one input: its name, dims (None where dynamic) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def check(self, x: np.ndarray, kind: str) -> None:
        """Raise BackendError unless ``x`` fits this input."""
        if x.dtype != self.dtype:
            raise BackendError(f"{kind}: input {self.name!r} takes {self.dtype}, got {x.dtype}")
        if x.ndim != len(self.shape) or any(d is not None and d != s for d, s in zip(self.shape, x.shape, strict=True)):
            want = "x".join("?" if d is None else str(d) for d in self.shape)
            raise BackendError(f"{kind}: input {self.name!r} takes shape {want}, got {x.shape}")
        if x.shape[0] < 1:
            raise BackendError(f"{kind}: empty batch")

    def fixed_tail(self, kind: str) -> tuple[int, ...]:
        """The non-batch dims, which must be static to build a batch profile."""
        if any(d is None for d in self.shape[1:]):
            raise BackendError(f"{kind}: only the batch dim of {self.name!r} may be dynamic, shape is {self.shape}")
        return tuple(int(d) for d in self.shape[1:])


def read_input_specs(model_path: Path) -> tuple[InputSpec, ...]:
    """Every real graph input of an ONNX file, in order (weights are not loaded)."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise BackendError(f"cannot read ONNX model {model_path}: {exc}") from exc
    weights = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None  # -1: dynamic
                     for d in tensor.shape.dim)
        specs.append(InputSpec(value.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type))))
    return tuple(specs)


def read_input_spec(model_path: Path) -> InputSpec:
    """Read the single graph input of an ONNX file (weights are not loaded)."""
    specs = read_input_specs(model_path)
    if len(specs) != 1:
        raise BackendError(f"{model_path}: this backend runs single-input models, found inputs "
                           f"{[s.name for s in specs]}")
    return specs[0]


class InferenceBackend(abc.ABC):
    """An ONNX model on one engine. Construction is pure; ``open()`` loads.

    Subclasses implement ``probe`` (can it run here?), ``_open`` (load, return
    the input spec), ``_run`` (one checked, contiguous batch), ``_close`` and
    ``_describe``.
    """

    kind: ClassVar[str]
    several_inputs: ClassVar[bool] = False  # whether run_feeds takes models with more than one input

    def __init__(
        self, model_path: str | Path, options: BackendOptions | None = None, *, selection: Capability | None = None
    ) -> None:
        self.model_path = Path(model_path)
        self.options = options if options is not None else BackendOptions()
        self.selection = selection
        self._spec: InputSpec | None = None
        self._timings: StageTimings | None = None

    @classmethod
    @abc.abstractmethod
    def probe(cls) -> Capability:
        """Whether this backend can run on this machine, and why not."""

    @abc.abstractmethod
    def _open(self) -> InputSpec: ...

    @abc.abstractmethod
    def _run(self, x: np.ndarray) -> list[np.ndarray]: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _describe(self) -> str: ...

    @property
    def is_open(self) -> bool:
        return self._spec is not None

    def open(self) -> InferenceBackend:
        """Load the model (idempotent); returns self."""
        if self._spec is None:
            if not self.model_path.is_file():
                raise BackendError(f"{self.kind}: model file {self.model_path} does not exist")
            self._spec = self._open()
        return self

    def close(self) -> None:
        """Release sessions, engines and buffers (idempotent)."""
        if self._spec is not None:
            try:
                self._close()
            finally:
                self._spec = None
                self._timings = None

    def __enter__(self) -> InferenceBackend:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def input_spec(self) -> InputSpec:
        if self._spec is None:
            raise BackendError(f"{self.kind}: backend is not open; call open() or use it as a context manager")
        return self._spec

    @property
    def input_name(self) -> str:
        return self.input_spec.name

    def run(self, inputs: np.ndarray) -> list[np.ndarray]:
        """Run one batch; returns the model's outputs in graph order."""
        spec = self.input_spec
        x = np.asarray(inputs)
        spec.check(x, self.kind)
        return self._run(np.ascontiguousarray(x))

    def run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one call with named inputs; returns the outputs in graph order."""
        if len(feeds) == 1 and not self.several_inputs:
            (x,) = feeds.values()
            return self.run(x)
        if not self.several_inputs:
            raise BackendError(f"{self.kind}: runs single-input models, got inputs {list(feeds)}")
        self.input_spec  # noqa: B018 - raises unless open
        return self._run_feeds({name: np.require(np.asarray(x), requirements="C") for name, x in feeds.items()})

    def _run_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise BackendError(f"{self.kind}: runs single-input models")

    def last_timings(self) -> StageTimings | None:
        """H2D / compute / D2H split of the last ``run`` (None before one)."""
        return self._timings

    def describe(self) -> str:
        """What this backend really runs on, in one line."""
        text = self._describe() if self.is_open else f"{self._describe()} (not open)"
        return text if self.selection is None else f"{text}; {self.selection.detail}"
