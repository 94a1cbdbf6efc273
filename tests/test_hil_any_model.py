"""The harness with any ONNX model: generated inputs, split segments run for real, checks before workers start.

Three public models shipped by PyPI packages (the ``test`` extra): the
PP-OCRv4 text detector (vision), silero VAD (audio; ``state`` and ``sr``
inputs) and magika (bytes -> file type). Runs are very short: they check
that the cut runs and what the results say ran, not its speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from hil.cli import register
from hil.models.inputs import Generator, InputPlan
from hil.partition.partition import partition_model
from hil.partition.search import segment_costs, split_document
from hil.runner.layout import lay_out
from sim.scenario.errors import ScenarioError
from sim.scenario.load import load_scenario_file
from tests.test_partition import MAGIKA, OCR_DET, VAD, packaged

OCR_CLS = ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx")  # text-angle classifier

REPO = Path(__file__).resolve().parents[1]
SHORT = ["--duration", "0.6 s", "--warmup", "0 s", "--min-requests", "8", "--transport", "tcp"]


def dgsim(*args) -> object:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return CliRunner().invoke(app, list(map(str, args)))


def base_document(rate: str = "40/s") -> dict:
    return {
        "name": "any-model",
        "hardware": {"pools": {"dpu": {"profile": "bluefield-3", "servers": 1}, "gpu": {"profile": "a100"}},
                     "links": [{"name": "net", "between": ["client", "dpu"], "profile": "tcp-100g"},
                               {"name": "rdma", "between": ["dpu", "gpu"], "profile": "roce-200g"},
                               {"name": "back", "between": ["client", "gpu"], "profile": "tcp-100g"}]},
        "workload": {"sources": [{"name": "s", "kind": "poisson", "rate": rate, "payload": "1 KB",
                                  "deadline": "10 s"}]},
        "pipeline": {"stages": [{"name": "infer", "costs": {"gpu": "1 ms"}}]},
        "run": {"duration": "1 s", "warmup": "0 s", "drain": "5 s", "replications": 1},
        "hil": {"cores": {"front": [0], "gpu": [1]}},
    }


CASES = {
    "ocr-det": (OCR_DET, {"x": [1, 3, 64, 64]}, {}),
    "vad": (VAD, {"input": [1, 512]}, {"sr": "const:16000", "input": "audio"}),
    "magika": (MAGIKA, {"bytes": [1, 2048]}, {"bytes": "tokens:257"}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.slow
def test_hil_run_on_a_cut_runs_head_on_the_front_and_tail_on_the_gpu_side(case, tmp_path):
    package, shapes, feeds = CASES[case]
    path = packaged(*package)
    listed = partition_model(path, shapes, feeds, None)
    cut = listed.cuts[len(listed.cuts) // 2].cut.name
    result = partition_model(path, shapes, feeds, tmp_path, [cut])
    costs = segment_costs(result, "estimated", 1)
    scenario = tmp_path / "split.yaml"
    scenario.write_text(yaml.safe_dump(split_document(base_document(), "infer", result, costs, cut, tmp_path)))
    out = tmp_path / "results"
    run = dgsim("hil", "run", scenario, "--variant", cut, "--out", out, *SHORT)
    assert run.exit_code == 0, run.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["source"] == "measurement" and cut in json.dumps(summary)
    described = json.loads((out / "stream" / cut / "r0" / "run.json").read_text())
    text = json.dumps(described)
    assert f"ONNX model {cut}-head.onnx" in text and f"ONNX model {cut}-tail.onnx" in text
    assert "previous:infer-head" in text  # the tail's inputs are the head's tensors, not generated ones
    import pandas as pd

    frame = pd.read_parquet(out / "requests" / f"{cut}.parquet")
    assert (frame["outcome"] == "completed").sum() >= 5, frame["outcome"].value_counts()
    assert frame["infer-tail__end"].notna().sum() >= 5


@pytest.mark.slow  # real harness runs (spawned workers): the fast lane skips them
def test_a_stateful_model_carries_its_state_between_calls(tmp_path):
    path = packaged(*VAD)
    document = base_document("30/s")
    document["pipeline"]["stages"] = [{
        "name": "vad", "costs": {"gpu": "0.5 ms"},
        "hil": {"op": "model", "model": str(path), "shapes": {"input": [1, 512], "state": [2, 1, 128]},
                "inputs": {"input": "audio", "state": "carry:stateN", "sr": "const:16000"}}}]
    scenario = tmp_path / "vad.yaml"
    scenario.write_text(yaml.safe_dump(document))
    out = tmp_path / "results"
    run = dgsim("hil", "run", scenario, "--out", out, "--record", "3", *SHORT)
    assert run.exit_code == 0, run.output
    text = (out / "stream" / "base" / "r0" / "run.json").read_text()
    assert "state 2x1x128 float32 <- carry:stateN" in text and "sr scalar int64 <- const:16000" in text
    recorded = np.load(out / "stream" / "base" / "r0" / "gpu-outputs.npz")
    assert len(recorded.files) >= 1


def test_model_stage_problems_are_found_before_workers_start_and_name_the_field(tmp_path):
    path = packaged(*OCR_DET)
    document = base_document()
    document["pipeline"]["stages"] = [
        {"name": "infer", "costs": {"gpu": "1 ms"}, "hil": {"op": "model", "model": str(path)}},
        {"name": "detect", "costs": {"gpu": "1 ms"}, "hil": {"op": "detect", "model": str(path)}},
        {"name": "prefilter", "costs": {"gpu": "1 ms"},
         "hil": {"op": "prefilter", "model": str(packaged(*OCR_CLS)), "score": {"output": "p_object"}}},
    ]
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(yaml.safe_dump(document))
    run = dgsim("hil", "run", scenario, "--out", tmp_path / "r", *SHORT)
    assert run.exit_code == 2
    out = " ".join(run.output.split())
    assert "pipeline.stages[0].hil.shapes" in out and "x: float32 (p2o.DynamicDimension.0, 3," in out
    assert "pipeline.stages[1].hil.model" in out and "op detect needs (N, 3, H, W) with fixed H, W" in out
    assert "pipeline.stages[2].hil.score.output" in out and "no output 'p_object'" in out
    assert "pipeline.stages[2].hil.model" in out and "op prefilter needs (N, 3, H, W)" in out  # no 1x1 resize
    assert not (tmp_path / "r" / "stream").exists()  # nothing started


def test_a_calibration_of_another_model_is_refused(tmp_path):
    from hil.calibrate.model_identity import model_tag

    calibration = yaml.safe_load((REPO / "docs" / "examples" / "calibration-quick.yaml").read_text())
    entry = next(name for name, e in calibration["entries"].items() if not name.startswith("transport."))
    magika, vad = packaged(*MAGIKA), packaged(*VAD)
    document = base_document()
    document["pipeline"]["stages"] = [{
        "name": "infer", "costs": {"gpu": {"kind": "calibrated", "file": "calib.yaml", "entry": entry}},
        "hil": {"op": "model", "model": str(magika), "inputs": {"bytes": "tokens:257"}}}]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(document))

    def layout_with(measured_model: Path):
        calibration["entries"][entry]["measured"] = f"op model on the gpu side; {model_tag(measured_model)}"
        (tmp_path / "calib.yaml").write_text(yaml.safe_dump(calibration))
        plan = load_scenario_file(tmp_path / "s.yaml").plan("base")
        return lay_out(plan, "base", "s.yaml", available_cores=[0, 1])

    assert layout_with(magika).stages[0].op == "model"
    with pytest.raises(ScenarioError) as error:
        layout_with(vad)
    text = str(error.value)
    assert "pipeline.stages[0].costs.gpu" in text and "was measured with model" in text and "calibrate again" in text


def test_generators_are_reproducible_and_check_their_arguments(tmp_path):
    plan = InputPlan("x", np.dtype(np.float32), (2, 3, 16, 16), Generator.parse("image"), True)
    first, again = plan.values([4, 5], seed=1), plan.values([4, 5], seed=1)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (2, 3, 16, 16) and not np.array_equal(first[0], first[1])
    tokens = InputPlan("t", np.dtype(np.int64), (1, 64), Generator.parse("tokens:7"), True).values([0], 0)
    assert tokens.min() >= 0 and tokens.max() < 7 and tokens.dtype == np.int64
    scalar = InputPlan("sr", np.dtype(np.int64), (), Generator.parse("const:16000"), False).values([0], 0)
    assert scalar.shape == () and int(scalar) == 16000
    np.save(tmp_path / "rows.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    rows = InputPlan("r", np.dtype(np.float32), (1, 4), Generator.parse(f"npy:{tmp_path / 'rows.npy'}"), True)
    np.testing.assert_array_equal(rows.values([4], 0), [[4, 5, 6, 7]])  # item 4 -> row 4 mod 3
    for bad in ("tokens", "tokens:x", "const:abc", "npy", "nope", "image:bgr"):
        with pytest.raises(ValueError):
            Generator.parse(bad)


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["ocr-det", "vad"])
def test_tensorrt_builds_an_engine_from_a_tail_segment(case, tmp_path):
    from hil.backends import BackendOptions, TensorRTBackend
    from hil.partition.verify import run_model

    capability = TensorRTBackend.probe()
    if not capability.available:
        pytest.skip(f"TensorRT unavailable here: {capability.detail}")
    import onnx

    package, shapes, feeds = CASES[case]
    path = packaged(*package)
    listed = partition_model(path, shapes, feeds, None)
    cut = listed.cuts[len(listed.cuts) // 2].cut.name
    result = partition_model(path, shapes, feeds, tmp_path, [cut])
    r = next(r for r in result.cuts if r.cut.name == cut)
    middle = run_model(onnx.load(str(r.head)), {p.name: result.graph.reference[p.name] for p in result.plans})
    want = run_model(onnx.load(str(r.tail)), middle)
    with TensorRTBackend(r.tail, BackendOptions(max_batch=1, cache_dir=tmp_path / "plans")) as engine:
        got = engine.run_feeds(middle)
        assert "TensorRT" in engine.describe()
    for name, value in zip(want, got):  # TF32 kernels: looser than the CPU composition check
        np.testing.assert_allclose(value, want[name], rtol=1e-2, atol=1e-3)


def test_postprocess_refuses_an_output_that_is_not_a_detector_head():
    from hil.runner.ops import Postprocess, _Job

    op = Postprocess(None, None)
    with pytest.raises(ValueError, match=r"got float32 \(1, 214\)"):
        op([_Job(0, np.zeros(214, np.float32))])
    rows = np.zeros((1, 10, 85), np.float32)
    rows[0, 0, :5] = [50, 50, 20, 20, 0.9]
    rows[0, 0, 5] = 0.9
    (found,), _ = op([_Job(0, rows[0])])
    assert found.shape == (1, 6)  # one box: x1 y1 x2 y2, score, class


def test_validate_twin_scores_a_user_prefilter_with_its_own_tensor_names(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from hil.models.preprocess import to_model_input
    from hil.runner.ops import FrameBank
    from hil.validate.twin import pass_fractions

    nodes = [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["scores"])]
    graph = helper.make_graph(nodes, "user-prefilter",
                              [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(tmp_path / "mine.onnx"))
    document = base_document()
    document["pipeline"]["stages"] = [
        {"name": "prefilter", "costs": {"dpu": "1 ms"}, "pass_probability": 0.5,
         "hil": {"model": "mine.onnx", "threshold": 0.45, "score": {"output": "scores", "index": 1}}},
        {"name": "infer", "costs": {"gpu": "1 ms"}}]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(document))
    layout = lay_out(load_scenario_file(tmp_path / "s.yaml").plan("base"), "base", "s.yaml", available_cores=[0, 1])
    fraction = pass_fractions(layout)["prefilter"]
    green = to_model_input(FrameBank.of(layout).images, 32, 32)[:, 1].mean(axis=(1, 2))  # channel 1's mean
    assert fraction == pytest.approx(float((green >= 0.45).mean()))


def test_a_batch_dimension_stored_as_minus_one_is_dynamic():
    from hil.backends.base import read_input_spec
    from hil.models import inspect_model

    path = packaged(*OCR_CLS)  # declares x as [-1, 3, ?, ?]
    assert inspect_model(path).input_shape[0] is None and inspect_model(path).dynamic_batch
    assert read_input_spec(path).shape[0] is None
