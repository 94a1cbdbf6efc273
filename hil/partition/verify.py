"""Check that a head and a tail compose to the original model.

The head runs on the generated inputs, the tail on the head's outputs, and
every model output is compared with the original model's on the same
inputs (observed by ``ModelGraph.observe``). Segments run in onnxruntime
with its default graph optimisations, as the harness runs them, so fused
kernels may round differently from the unoptimised reference: floats must
agree within ``|got - want| <= ATOL + RTOL x |want|``; integers and
booleans exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

RTOL, ATOL = 1e-3, 1e-4
TOLERANCE = f"|got - want| <= {ATOL:g} + {RTOL:g} x |want| (floats); integers exactly"


@dataclass(frozen=True)
class Composition:
    ok: bool
    worst: float  # largest |got - want| / (ATOL + RTOL |want|) over every output (<= 1 passes)
    detail: str


def session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    s = session(model)
    names = {i.name for i in s.get_inputs()}
    outputs = [o.name for o in s.get_outputs()]
    return dict(zip(outputs, s.run(outputs, {k: v for k, v in feeds.items() if k in names})))


def compose(head: onnx.ModelProto, tail: onnx.ModelProto, feeds: dict[str, np.ndarray],
            reference: dict[str, np.ndarray], outputs: list[str]) -> Composition:
    """Run head then tail on ``feeds``; compare each of ``outputs`` with ``reference``."""
    try:
        middle = run_model(head, feeds)
        final = run_model(tail, middle)
    except Exception as error:  # onnxruntime raises its own exception types
        return Composition(False, float("inf"), f"segments failed to run: {error}")
    worst, problems = 0.0, []
    for name in outputs:
        got, want = np.asarray(final[name]), np.asarray(reference[name])
        if got.shape != want.shape:
            problems.append(f"{name}: shape {got.shape}, original {want.shape}")
            continue
        if want.dtype.kind in "fc":
            scale = np.abs(got.astype(np.float64) - want) / (ATOL + RTOL * np.abs(want.astype(np.float64)))
            err = float(scale.max()) if scale.size else 0.0
        else:
            err = 0.0 if np.array_equal(got, want) else float("inf")
        worst = max(worst, err)
        if err > 1:
            problems.append(f"{name}: off by {err:.3g} x tolerance")
    ok = not problems
    return Composition(ok, worst, "composes" if ok else "; ".join(problems))
