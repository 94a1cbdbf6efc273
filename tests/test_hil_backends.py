"""Inference backends: right answers, honest labels, safe failures.

A tiny Conv+Relu+GlobalAveragePool+Gemm model with a dynamic batch dim is
built inline. The CPU backend must agree with a plain onnxruntime session and
with numpy; its threads and cores must really be applied (checked in a
spawned child, so the test process keeps its own affinity). Without a GPU,
asking for TensorRT must raise a BackendError that says why - never crash.
GPU tests are real but skip with the probe's reason where there is no GPU.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from hil.backends import (  # noqa: E402
    BackendError,
    BackendOptions,
    OrtCpuBackend,
    OrtGpuBackend,
    TensorRTBackend,
    open_backend,
    probe_backends,
)
from hil.backends.base import read_input_spec  # noqa: E402
from hil.backends.cuda_probe import cuda_devices, probe_gpu  # noqa: E402
from hil.backends.ort_cpu import thread_affinities  # noqa: E402
from hil.backends.ort_gpu import tensorrt_provider_options  # noqa: E402
from hil.backends.tensorrt_native import plan_key  # noqa: E402
from hil.probe import Capability  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
C_IN, HW, C_MID, N_OUT = 3, 8, 4, 5


def make_weights(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W": rng.standard_normal((C_MID, C_IN, 3, 3)).astype(np.float32) * 0.5,
        "B": rng.standard_normal(C_MID).astype(np.float32) * 0.1,
        "W2": rng.standard_normal((N_OUT, C_MID)).astype(np.float32),
        "B2": rng.standard_normal(N_OUT).astype(np.float32),
    }


def write_model(path: Path, weights: dict[str, np.ndarray]) -> Path:
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "W2", "B2"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", C_IN, HW, HW])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", N_OUT])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def numpy_reference(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # n c h w i j
    conv = np.einsum("nchwij,ocij->nohw", windows, w["W"]) + w["B"][None, :, None, None]
    pooled = np.maximum(conv, 0.0).mean(axis=(2, 3))
    return pooled @ w["W2"].T + w["B2"]


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return make_weights()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, weights: dict[str, np.ndarray]) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "tiny.onnx", weights)


def batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, C_IN, HW, HW)).astype(np.float32)


# -- CPU backend: correctness ------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 16])
def test_ort_cpu_matches_plain_session_and_numpy(model: Path, weights: dict[str, np.ndarray], n: int) -> None:
    x = batch(n, seed=n)
    direct = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    with OrtCpuBackend(model, BackendOptions(threads=1)) as backend:
        assert backend.input_name == "x"
        got = backend.run(x)
        timings = backend.last_timings()
    assert len(got) == 1 and got[0].shape == (n, N_OUT)
    np.testing.assert_allclose(got[0], direct[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[0], numpy_reference(x, weights), rtol=1e-4, atol=1e-5)
    assert timings is not None and timings.compute_s > 0 and timings.h2d_s == 0


def test_run_rejects_wrong_inputs_and_closed_backend(model: Path) -> None:
    backend = OrtCpuBackend(model)
    with pytest.raises(BackendError, match="not open"):
        backend.run(batch(1))
    with backend:
        with pytest.raises(BackendError, match="float32"):
            backend.run(batch(1).astype(np.float64))
        with pytest.raises(BackendError, match="shape"):
            backend.run(np.zeros((2, C_IN, HW + 1, HW), np.float32))
    assert not backend.is_open
    with pytest.raises(BackendError, match="not open"):
        _ = backend.input_name


def test_options_are_validated_with_clear_messages(model: Path) -> None:
    with pytest.raises(BackendError, match="threads"):
        BackendOptions(threads=0)
    with pytest.raises(BackendError, match="cores"):
        BackendOptions(cores=(1, 1))
    with pytest.raises(BackendError, match="opt_batch"):
        BackendOptions(max_batch=4, opt_batch=8)
    with pytest.raises(BackendError, match="do not exist"):
        OrtCpuBackend(model, BackendOptions(cores=(os.cpu_count() or 1,))).open()
    with pytest.raises(BackendError, match="does not exist"):
        OrtCpuBackend(model.with_name("missing.onnx")).open()


def test_multi_input_models_are_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(BackendError, match="single-input"):
        OrtCpuBackend(path).open()


# -- GPU configuration that can be checked without a GPU ---------------------


def test_ort_affinity_string_is_one_based_one_core_per_worker() -> None:
    assert thread_affinities(1, (3,)) == ""
    assert thread_affinities(3, (4, 5)) == "6;5"  # workers 1, 2 -> cores 5, 4 (ids + 1)


def test_ort_tensorrt_provider_gets_batch_profile_and_cache(model: Path, tmp_path: Path) -> None:
    found = tensorrt_provider_options(
        read_input_spec(model), BackendOptions(max_batch=16, opt_batch=4, fp16=True, cache_dir=tmp_path)
    )
    assert found["trt_profile_min_shapes"] == f"x:1x{C_IN}x{HW}x{HW}"
    assert found["trt_profile_opt_shapes"] == f"x:4x{C_IN}x{HW}x{HW}"
    assert found["trt_profile_max_shapes"] == f"x:16x{C_IN}x{HW}x{HW}"
    assert found["trt_fp16_enable"] is True and found["trt_engine_cache_path"].startswith(str(tmp_path))
    assert not tensorrt_provider_options(read_input_spec(model), BackendOptions(cache_dir=None))[
        "trt_engine_cache_enable"
    ]


def test_plan_key_changes_exactly_when_the_plan_would() -> None:
    base = BackendOptions(max_batch=8)
    key = plan_key(b"onnx", "10.9.0", "NVIDIA H100", base)
    assert key == plan_key(b"onnx", "10.9.0", "NVIDIA H100", BackendOptions(max_batch=8, threads=4))
    for other in (
        plan_key(b"onnx2", "10.9.0", "NVIDIA H100", base),
        plan_key(b"onnx", "10.10.0", "NVIDIA H100", base),
        plan_key(b"onnx", "10.9.0", "NVIDIA A100", base),
        plan_key(b"onnx", "10.9.0", "NVIDIA H100", BackendOptions(max_batch=16)),
        plan_key(b"onnx", "10.9.0", "NVIDIA H100", BackendOptions(max_batch=8, fp16=True)),
    ):
        assert other != key


# -- CPU backend: threads and cores, seen from a child process ---------------


def _thread_cpus(wait_for_a_pinned_worker: bool) -> dict[int, str]:
    """Each thread's allowed CPUs (``Cpus_allowed_list``). An ORT worker pins itself when it first
    runs, which on a busy machine can come after an inference has returned: with
    ``wait_for_a_pinned_worker`` this reads again, for up to 30 s, until some thread's CPUs differ
    from the others' (and returns what it read last either way)."""
    deadline = time.monotonic() + 30.0
    while True:
        per_thread = {}
        for tid in os.listdir("/proc/self/task"):
            status = Path(f"/proc/self/task/{tid}/status").read_text()
            line = next(ln for ln in status.splitlines() if ln.startswith("Cpus_allowed_list"))
            per_thread[int(tid)] = line.split(":")[1].strip()
        if not wait_for_a_pinned_worker or len(set(per_thread.values())) > 1 or time.monotonic() > deadline:
            return per_thread
        time.sleep(0.05)


def _child_report(
    model_path: str, threads: int, cores: tuple[int, ...], pin: bool, queue: multiprocessing.Queue
) -> None:
    from hil.backends import BackendOptions, OrtCpuBackend

    with OrtCpuBackend(model_path, BackendOptions(threads=threads, cores=cores, pin_process=pin)) as backend:
        backend.run(np.zeros((4, C_IN, HW, HW), np.float32))
        so = backend._session.get_session_options()
        per_thread = _thread_cpus(wait_for_a_pinned_worker=not pin)
        queue.put(
            {
                "affinity": sorted(os.sched_getaffinity(0)),
                "intra": so.intra_op_num_threads,
                "inter": so.inter_op_num_threads,
                "mode": str(so.execution_mode),
                "threads": per_thread,
                "main": per_thread[os.getpid()],
                "describe": backend.describe(),
            }
        )


def _in_child(model: Path, threads: int, cores: tuple[int, ...], pin: bool = True) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_report, args=(str(model), threads, cores, pin, queue))
    proc.start()
    report = queue.get(timeout=120)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    return report


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not Path("/proc/self/task").is_dir(), reason="needs Linux")
def test_threads_and_pinning_are_applied_in_child(model: Path) -> None:
    before = os.sched_getaffinity(0)
    core = max(before)
    report = _in_child(model, threads=2, cores=(core,))
    assert report["affinity"] == [core]
    assert (report["intra"], report["inter"]) == (2, 1)
    assert "SEQUENTIAL" in report["mode"]
    assert set(report["threads"].values()) == {str(core)}, report["threads"]  # every thread, ORT's workers too
    assert f"cores {{{core}}}" in report["describe"] and "2 intra-op threads" in report["describe"]
    assert os.sched_getaffinity(0) == before  # the test process itself was left alone


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable cores")
def test_ort_workers_get_one_core_each_without_process_pinning(model: Path) -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]
    report = _in_child(model, threads=2, cores=(first, second), pin=False)
    assert report["main"] != str(second)  # the calling thread is not pinned
    assert str(second) in report["threads"].values()  # ORT's one worker sits on the second core
    assert "ORT workers pinned" in report["describe"]


# -- construction is pure ----------------------------------------------------


def test_construction_has_no_side_effects(model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("touched at construction")

    monkeypatch.setattr(ort, "InferenceSession", forbidden)
    monkeypatch.setattr(os, "sched_setaffinity", forbidden)
    cache = tmp_path / "cache"
    options = BackendOptions(threads=2, cores=(0,), cache_dir=cache)
    backends = [cls(tmp_path / "absent.onnx", options) for cls in (OrtCpuBackend, OrtGpuBackend, TensorRTBackend)]
    backends += [cls(model, options) for cls in (OrtCpuBackend, OrtGpuBackend, TensorRTBackend)]
    for backend in backends:
        assert not backend.is_open
        assert "(not open)" in backend.describe()
        assert backend.last_timings() is None
    assert not cache.exists()


# -- asking for what is not there --------------------------------------------


def _require_no_tensorrt() -> Capability:
    cap = TensorRTBackend.probe()
    if cap.available:
        pytest.skip("TensorRT is usable here; the missing-TensorRT path does not apply")
    return cap


def test_requesting_tensorrt_without_it_raises_with_the_reason(model: Path) -> None:
    cap = _require_no_tensorrt()
    with pytest.raises(BackendError) as err:
        open_backend("tensorrt", model)
    message = str(err.value)
    assert "tensorrt" in message and cap.detail in message
    assert any(word in message for word in ("GPU", "not installed", "driver"))
    with pytest.raises(BackendError, match="GPU|driver|cuda-python"):
        TensorRTBackend(model).open()


def test_auto_falls_back_to_cpu_and_says_why(model: Path) -> None:
    if OrtGpuBackend.probe().available or TensorRTBackend.probe().available:
        pytest.skip("a GPU backend is usable here; auto does not fall back to CPU")
    with open_backend("auto", model, BackendOptions(threads=1)) as backend:
        assert isinstance(backend, OrtCpuBackend)
        assert backend.selection is not None
        assert "auto -> onnxruntime-cpu" in backend.selection.detail
        assert "tensorrt:" in backend.selection.detail and "onnxruntime-gpu:" in backend.selection.detail
        assert "host cores emulating" in backend.describe() or "Arm cores" in backend.describe()
    with pytest.raises(BackendError, match="unknown backend kind"):
        open_backend("cuda", model)  # type: ignore[arg-type]


def test_tensorrt_request_never_crashes_the_process(model: Path, tmp_path: Path) -> None:
    """A stand-in ``tensorrt`` that kills the process on import: without a GPU it must stay unimported."""
    if cuda_devices()[0]:
        pytest.skip("a GPU is present; the no-GPU guard is not exercised here")
    fake = tmp_path / "fake" / "tensorrt"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import os\nos._exit(139)  # what a real TensorRT without a driver may do\n")
    script = textwrap.dedent(
        f"""
        from hil.backends import BackendError, open_backend, probe_backends
        caps = probe_backends()
        for kind in ("tensorrt", "auto"):
            try:
                backend = open_backend(kind, {str(model)!r})
                print(kind, "opened", backend.kind)
                backend.close()
            except BackendError as exc:
                print(kind, "refused:", exc)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(REPO)])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tensorrt refused:" in done.stdout and "left unloaded" in done.stdout
    assert "auto opened onnxruntime-cpu" in done.stdout


# -- probes --------------------------------------------------------------------


def test_probes_return_capabilities_with_details() -> None:
    caps = probe_backends()
    names = [c.name for c in caps]
    for expected in ("nvidia GPU", "tensorrt", "onnxruntime providers", "backend onnxruntime-cpu"):
        assert expected in names
    for cap in caps:
        assert isinstance(cap, Capability) and cap.detail.strip()
    by_name = {c.name: c for c in caps}
    assert (
        by_name["onnxruntime providers"].available and "CPUExecutionProvider" in by_name["onnxruntime providers"].detail
    )
    assert by_name["backend onnxruntime-cpu"].available
    if not by_name["nvidia GPU"].available:
        assert not by_name["backend tensorrt"].available


# -- GPU backends: real tests, skipped here with the probe's reason ----------


def _require(cap: Capability) -> None:
    if not cap.available:
        pytest.skip(f"{cap.name}: {cap.detail}")


def _cpu_outputs(model: Path, x: np.ndarray) -> np.ndarray:
    with OrtCpuBackend(model) as cpu:
        return cpu.run(x)[0]


@pytest.mark.gpu
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_matches_ort_cpu(model: Path, tmp_path: Path, fp16: bool) -> None:
    _require(TensorRTBackend.probe())
    options = BackendOptions(max_batch=16, opt_batch=8, fp16=fp16, cache_dir=tmp_path)
    tol = 3e-2 if fp16 else 5e-3  # FP32 layers may run in TF32, TensorRT's default
    with TensorRTBackend(model, options) as trt:
        for n in (1, 5, 16):
            x = batch(n, seed=10 + n)
            got = trt.run(x)
            assert got[0].shape == (n, N_OUT)
            np.testing.assert_allclose(got[0], _cpu_outputs(model, x), rtol=tol, atol=tol)
            t = trt.last_timings()
            assert t is not None and t.clock == "CUDA events"
            assert min(t.h2d_s, t.compute_s, t.d2h_s) >= 0 and t.total_s > 0
        with pytest.raises(BackendError, match="max_batch"):
            trt.run(batch(17))
        assert "TensorRT" in trt.describe() and "from cache" not in trt.describe()


@pytest.mark.gpu
def test_tensorrt_plan_cache_is_reused_and_keyed(model: Path, tmp_path: Path) -> None:
    _require(TensorRTBackend.probe())
    options = BackendOptions(max_batch=8, cache_dir=tmp_path)
    with TensorRTBackend(model, options) as first:
        assert not first.plan_from_cache and first.plan_path is not None and first.plan_path.is_file()
        plan, stamp = first.plan_path, first.plan_path.stat().st_mtime_ns
        reference = first.run(batch(3))[0]
    with TensorRTBackend(model, options) as second:
        assert second.plan_from_cache and second.plan_path == plan
        np.testing.assert_array_equal(second.run(batch(3))[0], reference)
    assert plan.stat().st_mtime_ns == stamp
    with TensorRTBackend(model, BackendOptions(max_batch=4, cache_dir=tmp_path)) as other:
        assert not other.plan_from_cache and other.plan_path != plan
    plan.write_bytes(b"not a plan")
    with TensorRTBackend(model, options) as rebuilt:  # an unreadable plan is rebuilt, not trusted
        assert not rebuilt.plan_from_cache
        np.testing.assert_allclose(rebuilt.run(batch(3))[0], reference, rtol=5e-3, atol=5e-3)


@pytest.mark.gpu
def test_ort_gpu_matches_ort_cpu(model: Path, tmp_path: Path) -> None:
    _require(OrtGpuBackend.probe())
    with OrtGpuBackend(model, BackendOptions(max_batch=16, cache_dir=tmp_path)) as gpu:
        x = batch(6, seed=3)
        np.testing.assert_allclose(gpu.run(x)[0], _cpu_outputs(model, x), rtol=5e-3, atol=5e-3)  # TF32
        t = gpu.last_timings()
        assert t is not None and t.compute_s > 0
        assert "ExecutionProvider" in gpu.describe()


@pytest.mark.gpu
def test_auto_prefers_a_gpu_backend(model: Path) -> None:
    _require(probe_gpu())
    if not (TensorRTBackend.probe().available or OrtGpuBackend.probe().available):
        pytest.skip("a GPU is present but neither TensorRT nor onnxruntime-gpu is installed")
    with open_backend("auto", model) as backend:
        assert backend.kind in ("tensorrt", "onnxruntime-gpu")
