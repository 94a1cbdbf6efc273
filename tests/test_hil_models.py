"""The harness's real models: trained, deterministic, cached, and checked.

The prefilter is trained once per test module (seconds) into a
temporary cache; it must reach a meaningful accuracy on frames from a seed it never
saw, and its ONNX export must agree with onnxruntime and with the numpy
forward pass it was trained with. The detector is built small (128 x 128)
so it runs fast; its shape, dynamic batch and determinism are what matter.
NMS is checked against the properties greedy suppression guarantees.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from hil.models import (  # noqa: E402
    DetectorSpec,
    ModelFileError,
    ModelSpec,
    PrefilterSpec,
    batched_nms,
    build_detector,
    build_prefilter,
    ensure_models,
    evaluate_prefilter,
    inspect_model,
    iou_matrix,
    make_frames,
    nms,
    postprocess,
    predict_numpy,
    prefilter_probabilities,
    to_model_input,
    weights_from_model,
)

# a lighter training run than the default (2048 frames, 6 epochs) to keep the tests quick
SPEC = ModelSpec(
    prefilter=PrefilterSpec(train_frames=1024, epochs=4), detector=DetectorSpec(input_size=128, num_classes=8)
)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return ensure_models(tmp_path_factory.mktemp("models"), SPEC)


@pytest.fixture(scope="module")
def held_out():
    return make_frames(400, seed=10_000)


# --- synthetic frames -------------------------------------------------------


def test_frames_are_seeded_and_labelled():
    a, b = make_frames(40, seed=3, height=48, width=80), make_frames(40, seed=3, height=48, width=80)
    assert a.images.shape == (40, 48, 80, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images, make_frames(40, seed=4, height=48, width=80).images)
    for label, boxes in zip(a.labels, a.boxes):
        assert (1 <= len(boxes) <= 3) if label else len(boxes) == 0
        assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 80) and np.all(boxes[:, 3] <= 48)
        assert np.all(boxes[:, 2:] > boxes[:, :2])


def test_resize_averages_when_shrinking():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    x = to_model_input(images, 2, 2)
    expected = images.reshape(2, 2, 2, 2, 2, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2) / 255
    assert x.shape == (2, 3, 2, 2) and x.dtype == np.float32
    np.testing.assert_allclose(x, expected, atol=1e-6)


# --- prefilter ----------------------------------------------------------------


def test_prefilter_is_accurate_on_held_out_frames(models, held_out):
    score = evaluate_prefilter(_session(models.prefilter), held_out)
    assert score.accuracy >= 0.85
    assert score.recall >= 0.8
    assert abs(score.pass_rate - held_out.labels.mean()) < 0.15


def test_prefilter_still_works_on_downscaled_large_frames(models):
    frames = make_frames(100, seed=20_000, height=256, width=256)
    assert evaluate_prefilter(_session(models.prefilter), frames).accuracy >= 0.85


def test_prefilter_agrees_with_onnxruntime_and_numpy(models, held_out):
    session = _session(models.prefilter)
    images = held_out.images[:64]
    x = to_model_input(images, 64, 64)
    direct = session.run(["p_object"], {"frames": x})[0]
    assert direct.shape == (64, 1)
    assert np.array_equal(prefilter_probabilities(session, images) >= 0.5, direct[:, 0] >= 0.5)
    weights = weights_from_model(onnx.load(str(models.prefilter)))
    np.testing.assert_allclose(predict_numpy(weights, x), direct, atol=1e-4)


def test_prefilter_build_is_byte_identical():
    tiny = PrefilterSpec(train_frames=64, epochs=1)
    assert build_prefilter(tiny).SerializeToString() == build_prefilter(tiny).SerializeToString()


# --- detector -----------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_detector_output_shape(models, batch):
    spec = SPEC.detector
    out = _session(models.detector).run(None, {"images": np.full((batch, 3, 128, 128), 0.5, np.float32)})[0]
    assert out.shape == (batch, spec.num_anchors, 5 + spec.num_classes)
    assert np.isfinite(out).all()
    assert np.all((out[..., 4:] >= 0) & (out[..., 4:] <= 1))


def test_detector_batch_is_dynamic_and_rows_independent(models):
    info = inspect_model(models.detector)
    assert info.dynamic_batch and info.input_shape[1:] == (3, 128, 128)
    session = _session(models.detector)
    x = to_model_input(make_frames(3, seed=5, height=128, width=128).images, 128, 128)
    together = session.run(None, {"images": x})[0]
    alone = np.concatenate([session.run(None, {"images": x[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-3)


def test_detector_is_deterministic(models):
    session = _session(models.detector)
    x = np.random.default_rng(0).random((2, 3, 128, 128), dtype=np.float32)
    assert np.array_equal(session.run(None, {"images": x})[0], session.run(None, {"images": x})[0])
    first = build_detector(SPEC.detector).SerializeToString()
    assert first == build_detector(SPEC.detector).SerializeToString()
    assert first == models.detector.read_bytes()
    assert first != build_detector(replace(SPEC.detector, seed=1)).SerializeToString()


def test_detector_width_sizes_the_model():
    narrow, wide = DetectorSpec(input_size=64, width=0.25), DetectorSpec(input_size=64, width=0.5)
    assert narrow.channels == (16, 32, 64, 128, 256) and wide.channels == (32, 64, 128, 256, 512)
    assert len(build_detector(wide).SerializeToString()) > 3 * len(build_detector(narrow).SerializeToString())
    with pytest.raises(ValueError, match="multiple of 32"):
        DetectorSpec(input_size=100)


# --- cache and validation -------------------------------------------------------


def test_cache_reuses_and_rekeys(models, tmp_path):
    cache = models.detector.parent
    assert ensure_models(cache, SPEC) == models  # already there: nothing is rebuilt
    bigger = replace(SPEC, detector=replace(SPEC.detector, input_size=160))
    rebuilt = ensure_models(cache, bigger)
    assert rebuilt.prefilter == models.prefilter and rebuilt.detector != models.detector
    assert inspect_model(rebuilt.detector).input_shape[2:] == (160, 160)
    assert not [p for p in os.listdir(cache) if p.startswith(".")]  # no temporary files left behind


def test_inspect_model_accepts_built_models(models):
    info = inspect_model(models.prefilter)
    assert (info.input_name, info.input_type, info.output_names) == ("frames", "float32", ("p_object",))
    assert info.input_shape == ("N", 3, 64, 64)


def _write_model(path: Path, inputs: list, elem_type: int = TensorProto.FLOAT) -> Path:
    values = [helper.make_tensor_value_info(name, elem_type, shape) for name, shape in inputs]
    node = helper.make_node("Identity", [inputs[0][0]], ["y"])
    output = helper.make_tensor_value_info("y", elem_type, inputs[0][1])
    graph = helper.make_graph([node], "g", values, [output])
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


@pytest.mark.parametrize(
    ("inputs", "elem_type", "message"),
    [
        ([("x", ["N", 3]), ("z", ["N", 3])], TensorProto.FLOAT, "has 2 inputs"),
        ([("x", ["N", 3])], TensorProto.INT64, "is not float32 or float16"),
        ([("x", [3])], TensorProto.FLOAT, "no leading batch dimension"),
    ],
)
def test_inspect_model_names_the_file_and_the_problem(tmp_path, inputs, elem_type, message):
    path = _write_model(tmp_path / "user.onnx", inputs, elem_type)
    with pytest.raises(ModelFileError, match=message) as error:
        inspect_model(path)
    assert str(path) in str(error.value)


def test_inspect_model_rejects_missing_and_garbage_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        inspect_model(tmp_path / "absent.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="junk.onnx is not a valid ONNX model"):
        inspect_model(tmp_path / "junk.onnx")


# --- NMS ------------------------------------------------------------------------

_box = st.tuples(
    st.floats(0, 100, width=32), st.floats(0, 100, width=32), st.floats(1, 60, width=32), st.floats(1, 60, width=32)
)
_detections = st.lists(st.tuples(_box, st.floats(0, 1, width=32), st.integers(0, 3)), max_size=40)


def _arrays(rows):
    boxes = np.array([[x, y, x + w, y + h] for (x, y, w, h), _, _ in rows], np.float32).reshape(-1, 4)
    return boxes, np.array([s for _, s, _ in rows], np.float32), np.array([c for _, _, c in rows], np.int64)


@settings(max_examples=200, deadline=None)
@given(_detections, st.floats(0.1, 0.9))
def test_batched_nms_properties(rows, threshold):
    boxes, scores, classes = _arrays(rows)
    keep = batched_nms(boxes, scores, classes, threshold)
    assert len(set(keep.tolist())) == len(keep) and np.all((keep >= 0) & (keep < len(rows)))  # a subset
    assert np.all(np.diff(scores[keep]) <= 0)  # best first
    if len(rows):
        assert np.argmax(scores) in keep  # the best box always survives
    for c in np.unique(classes):
        kept = keep[classes[keep] == c]
        overlap = iou_matrix(boxes[kept], boxes[kept])
        np.fill_diagonal(overlap, 0)
        assert np.all(overlap <= threshold)  # no two kept boxes of one class overlap too much
        dropped = np.setdiff1d(np.flatnonzero(classes == c), kept)
        if len(dropped):  # and each dropped box was suppressed by a kept one of its class, scoring at least as high
            cover = (iou_matrix(boxes[dropped], boxes[kept]) > threshold) & (
                scores[kept][None] >= scores[dropped][:, None]
            )
            assert cover.any(axis=1).all()


@settings(max_examples=100, deadline=None)
@given(_detections)
def test_iou_matrix_is_a_symmetric_similarity(rows):
    boxes, _, _ = _arrays(rows)
    overlap = iou_matrix(boxes, boxes)
    np.testing.assert_allclose(overlap, overlap.T, atol=1e-6)
    assert np.all((overlap >= 0) & (overlap <= 1 + 1e-6))
    np.testing.assert_allclose(np.diag(overlap), 1.0, atol=1e-6)


def test_nms_on_known_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.5).tolist() == [0, 2]
    assert batched_nms(boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0]), 0.5).tolist() == [0, 1, 2]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


def test_postprocess_decodes_thresholds_and_suppresses():
    def row(cx, cy, w, h, obj, cls, num_classes=3):
        return [cx, cy, w, h, obj] + [0.9 if c == cls else 0.01 for c in range(num_classes)]

    output = np.array(
        [
            [
                row(50, 50, 20, 20, 0.9, 0),
                row(51, 51, 20, 20, 0.8, 0),
                row(51, 51, 20, 20, 0.8, 1),
                row(5, 5, 4, 4, 0.2, 2),
            ]
        ],
        np.float32,
    )
    (result,) = postprocess(output, conf_threshold=0.25, iou_threshold=0.45)
    assert result.classes.tolist() == [0, 1]  # the duplicate of class 0 is suppressed, the weak box dropped
    np.testing.assert_allclose(result.boxes[0], [40, 40, 60, 60])
    np.testing.assert_allclose(result.scores, [0.81, 0.72], rtol=1e-6)


def test_postprocess_runs_on_detector_output(models):
    x = to_model_input(make_frames(2, seed=7, height=128, width=128).images, 128, 128)
    results = postprocess(_session(models.detector).run(None, {"images": x})[0], conf_threshold=0.0)
    assert len(results) == 2
    for result in results:
        assert 0 < len(result) <= 300 and result.boxes.shape == (len(result), 4)
