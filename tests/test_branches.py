"""Per-class pipelines and conditional routing (issue 13, items 1 and 2).

- the branching policies map a signal to a branch, and the simulator's
  drawn signals take each branch with its probability (within a CI);
- a two-class scenario whose classes share a device but not stages: each
  request visits only its class's stages and one branch, a merge after the
  branches runs for every served request, per-class metrics come out;
- designs compared on common random numbers take the same branches;
- bad input: one line per problem naming the file and the field, exit 2.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from sim.capacity import offered_loads
from sim.experiment import run_replication
from sim.metrics.records import column
from sim.plan import compile_plan
from sim.policies.branching import BRANCHING, Branch, build_branching
from sim.scenario.errors import ScenarioError
from sim.scenario.load import load_scenario_file
from sim.scenario.schema import Scenario

TWO_CLASSES = {
    "name": "two-classes",
    "hardware": {
        "pools": {"dpu": {"profile": "bluefield-3"}, "gpu": {"profile": "a100"}},
        "links": [{"name": "pcie", "between": ["dpu", "gpu"], "profile": "pcie-gen4-x16"}],
    },
    "workload": {"sources": [
        {"name": "cams", "kind": "poisson", "rate": "600/s", "payload": "100 KB", "class": "video"},
        {"name": "queries", "kind": "poisson", "rate": "300/s", "payload": "2 KB", "class": "api"},
    ]},
    "pipeline": {
        "entries": {"video": ["decode"], "api": ["tokenize"]},
        "stages": [
            {"name": "decode", "costs": {"dpu": "300 us"}, "output": "50 KB"},
            {"name": "prefilter", "costs": {"dpu": "100 us"},
             "branch": {"to": [{"stage": "small", "probability": 0.7}, {"stage": "large", "probability": 0.3}]}},
            {"name": "small", "after": ["prefilter"], "costs": {"gpu": "100 us"}, "output": "1 KB"},
            {"name": "large", "after": ["prefilter"], "costs": {"gpu": "300 us"}, "output": "2 KB"},
            {"name": "post", "after": ["small", "large"], "costs": {"dpu": "50 us"}},
            {"name": "tokenize", "after": [], "costs": {"dpu": "80 us"}},
            {"name": "answer", "costs": {"gpu": "200 us"}},
        ],
    },
    "run": {"duration": "1 s", "warmup": "0.1 s", "drain": "0.5 s", "seed": 5, "replications": 1},
}
VIDEO = ("decode", "prefilter", "small", "large", "post")
API = ("tokenize", "answer")


def _scenario(doc: dict) -> Scenario:
    return Scenario.model_validate(doc)


def _frame(doc: dict):
    frame, _ = run_replication(compile_plan(_scenario(doc)), 0)
    return frame


def _ran(frame, stage: str):
    return frame[column(stage, "end")].notna()


# --- the policies -------------------------------------------------------------


def test_by_score_cuts_the_score_into_probability_bands():
    policy = build_branching("by-score", [Branch("small", 0.7), Branch("large", 0.2), Branch("huge", 0.1)])
    assert [policy.choose(s) for s in (0.0, 0.69, 0.7, 0.89, 0.9, 0.999, 1.0)] == [0, 0, 1, 1, 2, 2, 2]
    # the simulator's signal is the uniform draw itself: each band's width is its probability
    draws = np.random.default_rng(1).random(40_000)
    taken = np.bincount([policy.choose(policy.simulated_signal(u)) for u in draws], minlength=3) / len(draws)
    assert np.allclose(taken, [0.7, 0.2, 0.1], atol=4 * math.sqrt(0.25 / len(draws)))


def test_by_class_takes_the_listed_classes_and_sends_the_rest_to_the_last_branch():
    policy = build_branching("by-class", [Branch("people", 0.25, (0,)), Branch("cars", 0.25, (2, 7)),
                                          Branch("other", 0.5)])
    assert [policy.choose(k) for k in (0, 1, 2, 7, 3, 99)] == [0, 2, 1, 1, 2, 2]
    for u, expected in ((0.1, 0), (0.3, 1), (0.6, 2), (0.99, 2)):
        assert policy.choose(policy.simulated_signal(u)) == expected


def test_the_registry_lists_both_kinds_and_refuses_others():
    assert set(BRANCHING.kinds) == {"by-score", "by-class"}
    with pytest.raises(ValueError, match="by-score"):
        BRANCHING["by-name"]


# --- the simulator --------------------------------------------------------------


@pytest.fixture(scope="module")
def two_classes():
    return _frame(TWO_CLASSES)


def test_every_arrival_ends_once_and_visits_only_its_classs_stages(two_classes):
    frame = two_classes
    assert frame["id"].is_unique and (frame["outcome"] == "completed").all()
    video, api = frame[frame["class"] == "video"], frame[frame["class"] == "api"]
    assert len(video) > 300 and len(api) > 150
    for stage in API:
        assert not _ran(video, stage).any()
        assert _ran(api, stage).all()
    for stage in VIDEO:
        assert not _ran(api, stage).any()
    for stage in ("decode", "prefilter", "post"):
        assert _ran(video, stage).all()
    # exactly one branch each, and the merge after them ran for every request
    assert (_ran(video, "small") ^ _ran(video, "large")).all()
    assert (video[column("post", "start")] >= video[[column("small", "end"), column("large", "end")]].max(axis=1)).all()


def test_the_classes_share_the_gpu_but_not_stages(two_classes):
    frame = two_classes
    gpu_devices = set(frame.loc[frame["class"] == "api", column("answer", "device")]) & set(
        frame.loc[frame["class"] == "video", column("small", "device")])
    assert gpu_devices == {"gpu[0]"}


def test_branch_frequencies_match_the_probabilities(two_classes):
    video = two_classes[two_classes["class"] == "video"]
    n = len(video)
    share = _ran(video, "small").mean()
    assert abs(share - 0.7) < 4 * math.sqrt(0.7 * 0.3 / n)


def test_the_merge_receives_the_output_of_the_branch_taken():
    doc = copy.deepcopy(TWO_CLASSES)
    doc["pipeline"]["stages"][4]["costs"] = {"gpu": "50 us"}  # post on the GPU: its input crosses no link
    doc["pipeline"]["stages"][2]["costs"] = {"dpu": "100 us"}  # small on the DPU: its 1 KB crosses PCIe to post
    frame = _frame(doc)
    video = frame[frame["class"] == "video"]
    small, large = _ran(video, "small"), _ran(video, "large")
    assert (video.loc[small, column("post", "link")] == "pcie").all()  # over PCIe from the DPU
    assert video.loc[large, column("post", "link")].isna().all()  # large ran on the GPU: no hop


def test_designs_take_the_same_branches_on_common_random_numbers():
    first = _frame(TWO_CLASSES)
    doc = copy.deepcopy(TWO_CLASSES)
    doc["pipeline"]["stages"][3]["costs"] = {"gpu": "600 us"}  # a slower large model: another design
    second = _frame(doc)
    merged = first.merge(second, on="id")
    assert merged[column("small", "end") + "_x"].notna().equals(merged[column("small", "end") + "_y"].notna())
    assert not first[column("large", "end")].equals(second[column("large", "end")])


def test_a_prefilter_that_also_branches_filters_first():
    doc = copy.deepcopy(TWO_CLASSES)
    doc["pipeline"]["stages"][1]["pass_probability"] = 0.5
    frame = _frame(doc)
    video = frame[frame["class"] == "video"]
    n = len(video)
    filtered = video["outcome"] == "filtered"
    assert abs(filtered.mean() - 0.5) < 4 * math.sqrt(0.25 / n)
    assert not (_ran(video, "small") | _ran(video, "large"))[filtered].any()
    assert (_ran(video, "small") ^ _ran(video, "large"))[~filtered].all()


def test_per_class_metrics_and_offered_load_follow_the_paths(tmp_path):
    plan = compile_plan(_scenario(TWO_CLASSES))
    loads = {load.name: load for load in offered_loads(plan)}
    # gpu: video 600/s x (0.7 x 100 us + 0.3 x 300 us) + api 300/s x 200 us = 0.156 busy servers
    assert loads["gpu"].offered == pytest.approx(600 * (0.7 * 100e-6 + 0.3 * 300e-6) + 300 * 200e-6)
    # dpu: video decode + prefilter + post, api tokenize
    assert loads["dpu"].offered == pytest.approx(600 * (300e-6 + 100e-6 + 50e-6) + 300 * 80e-6)


def test_a_scenario_without_branches_or_entries_keeps_its_old_form():
    doc = copy.deepcopy(TWO_CLASSES)
    del doc["pipeline"]["entries"]
    del doc["pipeline"]["stages"][1]["branch"]
    doc["pipeline"]["stages"][3]["after"] = ["small"]
    doc["pipeline"]["stages"][4]["after"] = ["large"]
    scenario = _scenario(doc)
    dumped = scenario.model_dump(by_alias=True)
    assert "entries" not in dumped["pipeline"]
    assert all("branch" not in stage for stage in dumped["pipeline"]["stages"])
    assert not compile_plan(scenario).branched


def test_branches_with_failures_and_a_fallback_still_end_every_request_once():
    doc = copy.deepcopy(TWO_CLASSES)
    doc["hardware"]["pools"]["gpu"]["count"] = 2
    doc["failures"] = [{"target": "gpu[0]", "at": "0.3 s", "for": "0.3 s"}]
    doc["resilience"] = {"retry": {"kind": "fixed", "attempts": 1, "backoff": "1 ms"},
                         "stages": {"large": {"fallback": {"pools": ["dpu"], "costs": {"dpu": "2 ms"}}}}}
    frame = _frame(doc)
    assert frame["id"].is_unique and frame["outcome"].notna().all()
    assert not (frame["outcome"] == "unfinished").any()
    video = frame[frame["class"] == "video"]
    served = video["outcome"].isin(["completed", "degraded", "deadline_missed"])
    assert (_ran(video, "post") == served).all()
    assert not (_ran(video, "small") & _ran(video, "large")).any()


# --- bad input ------------------------------------------------------------------


def _problems(doc: dict) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        compile_plan(_scenario(doc), "f.yaml")
    return [str(p) for p in caught.value.problems]


def _edited(edit) -> dict:
    doc = copy.deepcopy(TWO_CLASSES)
    edit(doc)
    return doc


BAD = {
    "branch to a stage not after it": (
        lambda d: d["pipeline"]["stages"][1]["branch"]["to"][1].update(stage="tokenize"),
        ["pipeline.stages[1].branch.to[1].stage: stage 'tokenize' does not come after 'prefilter'",
         "pipeline.stages[1].branch.to: stage 'large' comes after 'prefilter' but is none of its branches"]),
    "branch to an unknown stage": (
        lambda d: d["pipeline"]["stages"][1]["branch"]["to"][0].update(stage="tiny"),
        ["pipeline.stages[1].branch.to[0].stage: unknown stage 'tiny'",
         "pipeline.stages[1].branch.to: stage 'small' comes after 'prefilter' but is none of its branches"]),
    "a class without an entry": (
        lambda d: d["pipeline"]["entries"].pop("api"),
        ["pipeline.entries: class 'api' has no entry"]),
    "an entry for a class no source has": (
        lambda d: d["pipeline"]["entries"].update(audio=["tokenize"]),
        ["pipeline.entries.audio: no source has this class"]),
    "an empty entry list": (
        lambda d: d["pipeline"]["entries"].update(api=[]),
        ["pipeline.entries.api: class 'api' has no entry stage: its requests would reach no sink",
         "pipeline.stages[5]: no class reaches stage 'tokenize'", "pipeline.stages[6]: no class reaches stage 'answer'"]),
    "a stage no class reaches": (
        lambda d: d["pipeline"]["entries"].update(api=["answer"]),
        ["pipeline.stages[5]: no class reaches stage 'tokenize' from its entries"]),
    "an entry after another entry": (
        lambda d: d["pipeline"]["entries"].update(video=["decode", "post"]),
        ["pipeline.entries.video: stage 'post' is an entry of class 'video' and also comes after its entry 'decode'"]),
    "a branching stage skipped": (
        lambda d: d.setdefault("policies", {}).update(placement={"map": {"prefilter": "skip"}}),
        ["pipeline.stages[1].branch: stage 'prefilter' chooses a branch; placement must not skip it"]),
    "a branch target skipped": (
        lambda d: d.setdefault("policies", {}).update(placement={"map": {"large": "skip"}}),
        ["pipeline.stages[1].branch.to[1].stage: branch 'large' is skipped by placement"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_paths_are_reported_one_line_each(name):
    edit, expected = BAD[name]
    problems = _problems(_edited(edit))
    assert len(problems) == len(expected), problems
    for line, want in zip(problems, expected):
        assert line.startswith("f.yaml: ") and want in line, (line, want)
        assert "\n" not in line


@pytest.mark.parametrize("branch, field, words", [
    ({"to": [{"stage": "small", "probability": 0.7}, {"stage": "large", "probability": 0.2}]}, "branch",
     "sum to 1"),
    ({"to": [{"stage": "small", "probability": 1.0}]}, "branch.to", "at least 2"),
    ({"kind": "by-class", "to": [{"stage": "small", "probability": 0.5}, {"stage": "large", "probability": 0.5}]},
     "branch", "must list its classes"),
    ({"to": [{"stage": "small", "probability": 0.5, "classes": [1]}, {"stage": "large", "probability": 0.5}]},
     "branch", "classes are for kind by-class"),
    ({"kind": "by-name", "to": [{"stage": "small", "probability": 0.5}, {"stage": "large", "probability": 0.5}]},
     "branch.kind", "unknown branching policy 'by-name'"),
])
def test_bad_branches_are_one_line_naming_the_field(tmp_path, branch, field, words):
    doc = copy.deepcopy(TWO_CLASSES)
    doc["pipeline"]["stages"][1]["branch"] = branch
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(path)
    lines = [str(p) for p in caught.value.problems]
    hits = [line for line in lines if f"pipeline.stages[1].{field}" in line and words in line]
    assert len(lines) == 1 and len(hits) == 1 and "bad.yaml" in hits[0], lines


def test_a_bad_branch_exits_2_through_the_command_line(tmp_path):
    doc = copy.deepcopy(TWO_CLASSES)
    doc["pipeline"]["stages"][1]["branch"]["to"][1]["probability"] = 0.2
    field, words = "branch", "sum to 1"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    done = subprocess.run([sys.executable, "-m", "sim.cli", "run", str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr
    hits = [line for line in lines if f"pipeline.stages[1].{field}" in line and words in line]
    assert len(hits) == 1 and "bad.yaml" in hits[0], lines


# --- the harness: the same policy objects, the real model output ---------------------

from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MIXED = REPO / "scenarios" / "mixed-classes.yaml"


def test_the_harness_routes_a_request_as_the_simulator_does(two_classes):
    from hil.runner.ops import Routes

    plan = compile_plan(_scenario(TWO_CLASSES))
    routes = Routes(type("Layout", (), {"plan": plan})(), TWO_CLASSES["run"]["seed"], 0)
    index = {s.name: s.index for s in plan.stages}
    video = two_classes[two_classes["class"] == "video"]
    ids = [int(i) for i in video["id"]]
    # an op without a model output: the harness draws the simulator's signal for each request
    went = routes.after(index["prefilter"], ids, None)
    assert [plan.stages[s].name for s in went] == ["small" if s else "large" for s in _ran(video, "small")]
    # an op with one: the same policy object maps the same signal to the same branch
    policy = build_branching("by-score", plan.stages[index["prefilter"]].branch.branches)
    scores = np.linspace(0, 1, 101)
    op = type("Op", (), {"signals": {"by-score": scores, "by-class": np.zeros(101)}})()
    went = routes.after(index["prefilter"], list(range(101)), op)
    assert went == [plan.stages[index["prefilter"]].branch.targets[policy.choose(s)] for s in scores]
    assert [plan.stages[s].name for s in went] == ["small"] * 70 + ["large"] * 31
    # classes enter at their own stages; a stage without a branch goes on to its one successor
    names = list(dict.fromkeys(s["class"] for s in TWO_CLASSES["workload"]["sources"]))
    assert [plan.stages[routes.entry(k)].name for k in range(2)] == [
        TWO_CLASSES["pipeline"]["entries"][n][0] for n in names]
    assert routes.after(index["tokenize"], [0, 1], None) == [index["answer"]] * 2
    assert routes.after(index["answer"], [0], None) == [len(plan.stages)]


def test_closed_loop_requests_carry_the_scenarios_classes_in_order():
    from hil.runner.load import make_load
    from sim.workload import generate_arrivals

    scenario = _scenario(TWO_CLASSES)
    load = make_load(scenario, "offline", 0, 10, 64, Path("."))
    issued = load.due(0.0, 0)
    arrivals = generate_arrivals(scenario.workload, scenario.run.duration, scenario.run.seed, 0, Path("."))
    assert [i[3] for i in issued] == list(arrivals.klass[:64])  # both classes, as the scenario mixes them
    assert [i[2] for i in issued] == list(arrivals.source[:64])
    assert [i[5] for i in issued] == list(arrivals.size[:64])
    assert set(i[3] for i in issued) == {0, 1}


@pytest.mark.parametrize("edit, field, words", [
    (lambda d: d["pipeline"]["stages"][1].pop("branch"), "pipeline.stages[1].after", "stage 'prefilter' forks"),
    (lambda d: d["pipeline"]["entries"].update(video=["decode", "tokenize"]), "pipeline.entries.video",
     "enter at 2 stages"),
])
def test_the_harness_refuses_more_than_one_path_per_request(edit, field, words):
    from hil.runner.layout import lay_out

    doc = _edited(edit)
    if "branch" not in doc["pipeline"]["stages"][1]:
        doc["pipeline"]["stages"][4]["after"] = ["small"]
        doc["pipeline"]["stages"][3]["after"] = ["prefilter"]
    with pytest.raises(ScenarioError) as caught:
        lay_out(compile_plan(_scenario(doc)), "base", "f.yaml", [0, 1])
    lines = [str(p) for p in caught.value.problems]
    assert len(lines) == 1 and field in lines[0] and words in lines[0], lines


@pytest.mark.slow
def test_a_measured_run_branches_on_the_real_prefilter_score(tmp_path):
    """`dgsim hil run` of the shipped two-class scenario: each class on its own stages, and the branch
    each frame took is the one the prefilter model's score picks (checked by a direct onnxruntime call)."""
    ort = pytest.importorskip("onnxruntime")
    import json

    import pandas as pd

    from hil.models import prefilter_probabilities
    from hil.runner.ops import FrameBank

    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "hil", "run", str(MIXED), "--variant", "dpu-offload", "--mode", "offline",
         "--duration", "2 s", "--warmup", "0.2 s", "--min-requests", "40", "--replications", "1",
         "--set", f"hil.cache={REPO / '.dgsim-cache'}", "--set", "hil.frames.count=16", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode in (0, 1), done.stderr[-3000:]  # 1: budgets missed on a slow machine, not a failure here
    frame = pd.read_parquet(tmp_path / "requests" / "dpu-offload.parquet")
    video, api = frame[frame["class"] == "video"], frame[frame["class"] == "api"]
    assert len(video) > 10 and len(api) > 5
    for stage in ("tokenize", "embed", "respond"):
        assert not _ran(video, stage).any()
    for stage in ("parse", "preprocess", "prefilter", "track", "infer", "postprocess"):
        assert not _ran(api, stage).any()
    scored = video[_ran(video, "prefilter") & (_ran(video, "track") | _ran(video, "infer"))]
    assert not (_ran(scored, "track") & _ran(scored, "infer")).any()
    info = json.loads((tmp_path / "stream" / "dpu-offload" / "r0" / "run.json").read_text())
    bank = FrameBank(**info["frames"])
    session = ort.InferenceSession(info["models"]["prefilter"], providers=["CPUExecutionProvider"])
    scores = prefilter_probabilities(session, np.stack([bank.frame(int(i)) for i in scored["id"]]))
    np.testing.assert_array_equal(_ran(scored, "infer").to_numpy(), scores >= 0.71)
    assert 0 < (scores >= 0.71).mean() < 1


def test_the_harness_estimates_remaining_work_along_the_requests_path():
    from hil.runner.layout import lay_out
    from hil.runner.station import MeasuredEstimates

    plan = compile_plan(_scenario(TWO_CLASSES))
    layout = lay_out(plan, "base", "f.yaml", [0, 1])
    estimates = MeasuredEstimates(layout.stages, [s.succs for s in plan.stages])
    mean = {s.name: s.model_mean(1) for s in layout.stages}
    index = {s.name: s.index for s in plan.stages}
    # the longest branch, as the simulator's ModelEstimates; never the other class's stages
    assert estimates.remaining(index["prefilter"]) == pytest.approx(
        mean["prefilter"] + max(mean["small"], mean["large"]) + mean["post"])
    assert estimates.after(index["tokenize"]) == pytest.approx(mean["answer"])
    assert estimates.after(index["post"]) == 0.0


def test_a_model_stage_branches_on_its_real_argmax_class(tmp_path):
    """A text-angle classifier (shipped by rapidocr) picks the next stage per request: its argmax class
    through the by-class policy, checked against a direct onnxruntime call on the same inputs."""
    ort = pytest.importorskip("onnxruntime")
    from hil.runner.layout import lay_out
    from hil.runner.ops import Routes, _Job, open_op
    from tests.test_hil_any_model import OCR_CLS
    from tests.test_partition import packaged

    path = packaged(*OCR_CLS)
    output = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()[0].name
    doc = {
        "name": "angle",
        "hardware": {"pools": {"dpu": {"profile": "bluefield-3"}}},
        "workload": {"sources": [{"name": "s", "kind": "poisson", "rate": "40/s", "payload": "1 KB"}]},
        "pipeline": {"stages": [
            {"name": "angle", "costs": {"dpu": "1 ms"},
             "hil": {"op": "model", "model": str(path), "shapes": {"x": [1, 3, 48, 192]}, "inputs": {"x": "random"},
                     "score": {"output": output, "index": 0}},
             "branch": {"kind": "by-class", "to": [{"stage": "upright", "probability": 0.5, "classes": [0]},
                                                   {"stage": "rotated", "probability": 0.5}]}},
            {"name": "upright", "after": ["angle"], "costs": {"dpu": "0.1 ms"}},
            {"name": "rotated", "after": ["angle"], "costs": {"dpu": "0.2 ms"}}]},
        "run": {"duration": "1 s", "warmup": "0 s", "drain": "1 s", "replications": 1},
        "hil": {"cores": {"front": [0], "gpu": [1]}},
    }
    plan = compile_plan(_scenario(doc))
    layout = lay_out(plan, "base", "f.yaml", [0, 1])
    cores = os.sched_getaffinity(0)  # opening the op pins this (the test's) thread to the front's cores
    op = open_op(layout.stages[0], layout, None, "onnxruntime-cpu", 0)
    try:
        ids = list(range(16))
        op([_Job(i, np.zeros(8, np.uint8)) for i in ids])
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        direct = [int(session.run(None, {"x": op.bank["x"][i % op.BANK]})[0].reshape(-1).argmax()) for i in ids]
        np.testing.assert_array_equal(op.signals["by-class"], direct)
        assert 0 < sum(direct) < len(direct)  # both classes occur: both branches are taken
        went = Routes(layout, 1, 0).after(0, ids, op)
        assert [plan.stages[s].name for s in went] == ["upright" if k == 0 else "rotated" for k in direct]
    finally:
        op.close()
        os.sched_setaffinity(0, cores)


def test_an_arrival_on_a_path_reads_its_own_fields_not_whole_arrays():
    # Arrivals' klass/priority/deadline/size are whole arrays built on demand: built per arrival, a
    # run with classes or branches costs time quadratic in its arrivals
    from dataclasses import fields

    from sim.model.system import System
    from sim.workload import Arrivals, generate_arrivals

    class Counting(Arrivals):
        built = 0

        @property
        def klass(self):
            Counting.built += 1
            return super().klass

        @property
        def deadline(self):
            Counting.built += 1
            return super().deadline

        @property
        def size(self):
            Counting.built += 1
            return super().size

    scenario_file = load_scenario_file(MIXED, ["run.duration=1 s", "run.warmup=0.2 s", "run.drain=0.5 s"])
    plan = scenario_file.plan(scenario_file.variant_names[0])
    assert plan.branched
    run = plan.scenario.run
    drawn = generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir)
    arrivals = Counting(**{f.name: getattr(drawn, f.name) for f in fields(drawn)})
    out = System(plan, arrivals, run.seed, 0).run()
    assert len(out.requests) == len(arrivals) > 100
    assert Counting.built < 10
