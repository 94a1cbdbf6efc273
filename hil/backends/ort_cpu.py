"""onnxruntime on CPU cores: the DPU side of the pipeline.

On a BlueField the same code runs on the DPU's Arm cores. On a host it runs
on a few host cores standing in for them: ``cores`` names those cores and
``threads`` how many onnxruntime intra-op threads share them. With
``pin_process`` every thread of the calling process is pinned to ``cores``
(the harness gives each side its own process); in any case onnxruntime's
worker threads are pinned one per core, round-robin, through the
``session.intra_op_thread_affinities`` entry (onnxruntime >= 1.14, 1-based
processor ids). Operators run sequentially with one inter-op thread, so
``threads`` is the whole parallelism. ``describe()`` says which case
applies, so a result from host cores is never labelled as a DPU result.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from hil.backends.base import BackendError, BackendOptions, InferenceBackend, InputSpec, StageTimings, read_input_spec
from hil.backends.cuda_probe import ort_providers
from hil.probe import Capability

AFFINITY_KEY = "session.intra_op_thread_affinities"


def cpu_role() -> str:
    """What these CPU cores are: BlueField Arm cores, or host cores emulating them."""
    if platform.machine() != "aarch64":
        return "host cores emulating the DPU's Arm cores"
    for hint in ("/sys/class/dmi/id/product_name", "/sys/firmware/devicetree/base/model", "/etc/mlnx-release"):
        try:
            text = Path(hint).read_text(errors="replace").strip("\x00\n ")
        except OSError:
            continue
        if "bluefield" in text.lower() or hint.endswith("mlnx-release"):
            return f"BlueField DPU Arm cores ({text.splitlines()[0]})"
    return "Arm host cores, not identified as a BlueField DPU"


def pin_process(cores: tuple[int, ...]) -> None:
    """Pin every current thread of this process to ``cores``; new threads inherit it."""
    if not hasattr(os, "sched_setaffinity"):
        raise BackendError("pinning cores needs Linux (os.sched_setaffinity)")
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except ProcessLookupError:  # the thread ended meanwhile
            continue
        except OSError as exc:
            raise BackendError(
                f"cannot pin to cores {sorted(cores)}: {exc.strerror} (this process may use {sorted(os.sched_getaffinity(0))})"
            ) from exc


def thread_affinities(threads: int, cores: tuple[int, ...]) -> str:
    """onnxruntime's affinity string: one 1-based core per worker (the caller's thread is not ORT's)."""
    return ";".join(str(cores[i % len(cores)] + 1) for i in range(1, threads))


def session_options(ort: Any, options: BackendOptions, affinities: str = "") -> Any:
    """SessionOptions for measured runs: fixed threads, sequential operators."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[options.graph_optimization]
    if affinities:
        so.add_session_config_entry(AFFINITY_KEY, affinities)
    return so


def load_session(ort: Any, model_path: Path, so: Any, providers: list[Any]) -> Any:
    try:
        return ort.InferenceSession(str(model_path), so, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise BackendError(f"onnxruntime could not load {model_path}: {exc}") from exc


class OrtCpuBackend(InferenceBackend):
    """onnxruntime CPUExecutionProvider with fixed threads and pinned cores."""

    kind = "onnxruntime-cpu"

    def __init__(
        self, model_path: str | Path, options: BackendOptions | None = None, *, selection: Capability | None = None
    ):
        super().__init__(model_path, options, selection=selection)
        self._session: Any = None
        self._version = ""
        self._cores: tuple[int, ...] = ()
        self._pinning = ""

    @classmethod
    def probe(cls) -> Capability:
        found = ort_providers()
        name = f"backend {cls.kind}"
        if found is None:
            return Capability(name, False, "onnxruntime is not installed (pip install 'dgsim[hil]')")
        if "CPUExecutionProvider" not in found[1]:
            return Capability(name, False, f"onnxruntime {found[0]} offers no CPUExecutionProvider")
        return Capability(name, True, f"onnxruntime {found[0]} CPUExecutionProvider on {cpu_role()}")

    def _open(self) -> InputSpec:
        import onnxruntime as ort

        spec = read_input_spec(self.model_path)
        opts = self.options
        if opts.cores is not None:
            ncpu = os.cpu_count() or 1
            if max(opts.cores) >= ncpu:
                raise BackendError(f"cores {list(opts.cores)} do not exist: this machine has CPUs 0..{ncpu - 1}")
            if opts.pin_process:
                pin_process(opts.cores)
        affinities = thread_affinities(opts.threads, opts.cores) if opts.cores else ""
        session = load_session(ort, self.model_path, session_options(ort, opts, affinities), ["CPUExecutionProvider"])
        self._session, self._version = session, ort.__version__
        self._cores = opts.cores or tuple(sorted(os.sched_getaffinity(0)))
        if opts.cores is None:
            self._pinning = "not pinned"
        elif opts.pin_process:
            self._pinning = "process pinned" + (", one core per ORT worker" if affinities else "")
        else:
            self._pinning = (
                "ORT workers pinned, calling thread not" if affinities else "not pinned (1 thread, pin_process off)"
            )
        return spec

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        start = time.perf_counter()
        outputs = self._session.run(None, {self.input_name: x})
        self._timings = StageTimings(0.0, time.perf_counter() - start, 0.0, "host perf_counter")
        return outputs

    def _close(self) -> None:
        self._session = None

    def _describe(self) -> str:
        o = self.options
        cores = self._cores or o.cores
        where = f"cores {{{','.join(map(str, cores))}}} ({self._pinning})" if cores else "cores not chosen yet"
        threads = f"{o.threads} intra-op thread{'s' if o.threads > 1 else ''}"
        engine = f"onnxruntime {self._version}" if self._version else "onnxruntime"
        return f"{engine} CPUExecutionProvider, {threads}, sequential, graph opt {o.graph_optimization}, {where} - {cpu_role()}"
