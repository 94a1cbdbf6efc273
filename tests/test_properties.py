"""Properties that hold for any scenario, checked on random ones (Hypothesis).

- every arrival ends in exactly one outcome, none left pending;
- a served request's latency is at least the sum of its stages' service
  times plus the least time each hop over a link can take;
- a request's timestamps are ordered: arrival <= enqueued <= start <= end
  of each stage <= the next stage's enqueue <= done;
- the same scenario and seed give identical results.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.experiment import run_replication
from sim.contract.outcomes import LABELS
from sim.metrics.records import column
from sim.plan import compile_plan
from sim.scenario.schema import Scenario

KINDS = ("cpu", "dpu", "gpu")
PROFILES = {"cpu": "host-cpu", "dpu": "bluefield-3", "gpu": "a100"}


@st.composite
def scenarios(draw) -> Scenario:
    stage_count = draw(st.integers(1, 4))
    stages = []
    for i in range(stage_count):
        kind = draw(st.sampled_from(KINDS))
        mean = draw(st.sampled_from(["50 us", "200 us", "1 ms"]))
        cost = draw(st.sampled_from([
            mean,
            {"kind": "exponential", "mean": mean},
            {"kind": "lognormal", "mean": mean, "cv": 0.5},
            {"kind": "affine", "base": mean, "per_item": "20 us"},
        ]))
        stage = {"name": f"s{i}", "costs": {kind: cost},
                 "pass_probability": draw(st.sampled_from([1.0, 1.0, 0.5]))}
        if draw(st.booleans()):
            stage["output"] = draw(st.sampled_from(["1 KB", "600 KB", "5 MB"]))
        stages.append(stage)
    used = sorted({next(iter(s["costs"])) for s in stages})
    pools = {k: {"profile": PROFILES[k], "servers": draw(st.integers(1, 3)),
                 "count": draw(st.integers(1, 2))} for k in used}
    links = []
    for a in used:
        for b in used:
            if a < b:
                for kind, bw in draw(st.sampled_from([[("tcp", "10 Gbit/s")], [("tcp", "10 Gbit/s"), ("rdma", "100 Gbit/s")]])):
                    links.append({"name": f"{a}-{b}-{kind}", "between": [a, b], "kind": kind, "bandwidth": bw,
                                  "latency": draw(st.sampled_from(["0 s", "5 us"])),
                                  "overhead": draw(st.sampled_from(["0 s", "2 us"])),
                                  "contention": draw(st.sampled_from(["fifo", "shared"])),
                                  "sharing": draw(st.sampled_from(["per-pair", "shared"]))})
    links.append({"name": "net", "between": ["client", next(iter(stages[0]["costs"]))], "kind": "tcp",
                  "bandwidth": "25 Gbit/s", "latency": "5 us"})
    links.append({"name": "net-out", "between": [next(iter(stages[-1]["costs"])), "client"], "kind": "tcp",
                  "bandwidth": "25 Gbit/s", "latency": "5 us"})
    batching = {}
    for s in stages:
        choice = draw(st.sampled_from(["none", "dynamic", "fixed", "deadline"]))
        if choice != "none":
            batching[s["name"]] = {"kind": choice, "max_batch": draw(st.integers(2, 8)), "max_delay": "1 ms",
                                   "timeout": "2 ms"}
    placement_map = {s["name"]: next(iter(s["costs"])) for s in stages}
    document = {
        "name": "random",
        "hardware": {"pools": pools, "links": links},
        "workload": {"sources": [{
            "name": "load", "kind": draw(st.sampled_from(["poisson", "gamma"])), "cv": 2.0,
            "rate": draw(st.sampled_from(["200/s", "800/s", "3000/s"])), "payload": "10 KB",
            "deadline": draw(st.sampled_from(["2 ms", "50 ms"])),
            "priority": 1,
        }]},
        "pipeline": {"stages": stages},
        "policies": {
            "placement": {"strategy": "explicit", "map": placement_map},
            "routing": {"kind": draw(st.sampled_from(["round-robin", "shortest-queue", "power-of-two", "random"]))},
            "batching": batching,
            "queue": {"kind": draw(st.sampled_from(["fifo", "priority", "edf"]))},
            "admission": {"kind": draw(st.sampled_from(["none", "queue-cap", "deadline"])), "cap": 4},
        },
        "run": {"duration": "0.3 s", "warmup": "0.05 s", "drain": "0.5 s",
                "seed": draw(st.integers(0, 1000)), "replications": 1},
    }
    if document["workload"]["sources"][0]["kind"] == "poisson":
        del document["workload"]["sources"][0]["cv"]
    return Scenario.model_validate(document)


def _run(scenario: Scenario):
    plan = compile_plan(scenario)
    frame, _ = run_replication(plan, 0)
    return plan, frame


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(scenarios())
def test_every_arrival_ends_in_exactly_one_outcome(scenario):
    _, frame = _run(scenario)
    assert frame["id"].is_unique
    assert frame["outcome"].notna().all()
    assert set(frame["outcome"].unique()) <= set(LABELS) - {"failed"}
    finished = frame["outcome"] != "unfinished"
    assert frame.loc[finished, "done"].notna().all()
    assert frame.loc[~finished, "done"].isna().all()


@pytest.mark.slow
@SETTINGS
@given(scenarios())
def test_latency_covers_service_and_transfers(scenario):
    plan, frame = _run(scenario)
    served = frame[frame["outcome"].isin(["completed", "deadline_missed"])]
    if served.empty:
        return
    stages = [s.name for s in plan.stages]
    service = sum(served[column(s, "end")] - served[column(s, "start")] for s in stages)
    # the least any hop can take: the fastest link's overhead + bytes / bandwidth + latency
    hop_floor = np.zeros(len(served))
    previous_pool, size = "client", served["size"].to_numpy()
    for stage in plan.stages + (None,):
        pool = stage.pools[0] if stage else "client"
        links = plan.links_between(previous_pool, pool) if pool != previous_pool else []
        if links:
            hop_floor += min(link.overhead + link.latency.mean() for link in links) + size / max(
                link.bandwidth for link in links)
        if stage is not None:
            size = np.full(len(served), stage.output) if stage.output is not None else size
            previous_pool = pool
    assert (served["latency"].to_numpy() + 1e-12 >= service.to_numpy() + hop_floor * 0.999).all()


@pytest.mark.slow
@SETTINGS
@given(scenarios())
def test_timestamps_are_ordered(scenario):
    plan, frame = _run(scenario)
    served = frame[frame["outcome"].isin(["completed", "deadline_missed"])]
    previous = served["arrival"].to_numpy()
    for stage in plan.stages:
        enqueued, start, end = (served[column(stage.name, c)].to_numpy() for c in ("enqueued", "start", "end"))
        assert (enqueued >= previous - 1e-12).all()
        assert (start >= enqueued).all() and (end >= start).all()
        previous = end
    assert (served["done"].to_numpy() >= previous - 1e-12).all()


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_same_seed_same_results(scenario):
    _, first = _run(scenario)
    _, second = _run(scenario)
    assert first.equals(second)


@st.composite
def failing_scenarios(draw) -> Scenario:
    """A random scenario whose devices and links fail and recover, with random reactions."""
    base = draw(scenarios())
    document = base.model_dump(by_alias=True, exclude_none=True, exclude={"failures", "resilience"})
    pools = list(document["hardware"]["pools"])
    targets = pools + [f"{p}[0]" for p in pools] + [link["name"] for link in document["hardware"]["links"]]
    failures = []
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from(targets))
        in_flight = draw(st.sampled_from(["fail", "requeue"]))
        if draw(st.booleans()):  # scheduled, inside the busy part of the run so work is in flight
            failures.append({"target": target, "at": draw(st.sampled_from(["60 ms", "100 ms", "200 ms"])),
                             "for": draw(st.sampled_from(["5 ms", "30 ms", "200 ms"])), "in_flight": in_flight})
        else:
            failures.append({"target": target, "mtbf": draw(st.sampled_from(["20 ms", "100 ms"])),
                             "mttr": draw(st.sampled_from(["2 ms", "20 ms"])), "in_flight": in_flight,
                             "each": draw(st.booleans())})
    stage = draw(st.sampled_from([s["name"] for s in document["pipeline"]["stages"]]))
    own: dict = {}
    if draw(st.booleans()):
        own["timeout"] = draw(st.sampled_from(["0.5 ms", "5 ms"]))
    if draw(st.booleans()):
        own["breaker"] = {"kind": "consecutive", "failures": draw(st.integers(1, 4)), "open_for": "10 ms"}
    if draw(st.booleans()):
        own["fallback"] = {"pools": [draw(st.sampled_from(pools))], "costs": {"cpu": "200 us", "dpu": "200 us", "gpu": "200 us"},
                           "degraded": draw(st.booleans())}
    resilience = {
        "health_aware": draw(st.booleans()),
        "retry": draw(st.sampled_from([{"kind": "none"}, {"kind": "fixed", "attempts": 2, "backoff": "1 ms"},
                                       {"kind": "exponential", "attempts": 3, "backoff": "0.5 ms", "target": "same"}])),
        "stages": {stage: own},
    }
    if draw(st.booleans()):
        resilience["timeout"] = draw(st.sampled_from(["2 ms", "50 ms"]))
    document["failures"] = failures
    document["resilience"] = resilience
    return Scenario.model_validate(document)


def _compiles(scenario: Scenario):
    from sim.scenario.errors import ScenarioError

    try:
        return compile_plan(scenario)
    except ScenarioError:  # a fallback pool without the links it needs: refused at load time, not run
        return None


@pytest.mark.slow
@SETTINGS
@given(failing_scenarios())
def test_every_arrival_ends_in_exactly_one_outcome_with_failures(scenario):
    plan = _compiles(scenario)
    if plan is None:
        return
    frame, _ = run_replication(plan, 0)
    assert frame["id"].is_unique and len(frame) == len(set(frame["id"]))
    assert frame["outcome"].notna().all()
    assert set(frame["outcome"].unique()) <= set(LABELS)
    finished = frame["outcome"] != "unfinished"
    assert frame.loc[finished, "done"].notna().all()
    assert frame.loc[~finished, "done"].isna().all()
    assert (frame.loc[finished, "done"] >= frame.loc[finished, "arrival"] - 1e-12).all()
    again, _ = run_replication(plan, 0)
    assert frame.equals(again)  # failures are drawn from named streams: reproducible


@st.composite
def path_scenarios(draw) -> Scenario:
    """Two classes on their own stages sharing pools; the video class's prefilter picks one of two
    branches, which may merge again; sometimes a pool fails and requests retry."""
    kind = lambda: draw(st.sampled_from(KINDS))  # noqa: E731
    cost = lambda: draw(st.sampled_from(["50 us", "200 us", {"kind": "exponential", "mean": "300 us"}]))  # noqa: E731
    stages = [
        {"name": "decode", "costs": {kind(): cost()}, "output": draw(st.sampled_from(["1 KB", "600 KB"]))},
        {"name": "pick", "costs": {kind(): cost()}, "pass_probability": draw(st.sampled_from([1.0, 0.6])),
         "branch": {"kind": draw(st.sampled_from(["by-score", "by-class"])), "to": [
             {"stage": "left", "probability": draw(st.sampled_from([0.2, 0.5, 0.9])), "classes": [0]},
             {"stage": "right", "probability": 0.0}]}},
        {"name": "left", "after": ["pick"], "costs": {kind(): cost()}, "output": "1 KB"},
        {"name": "right", "after": ["pick"], "costs": {kind(): cost()}},
        {"name": "solo", "after": [], "costs": {kind(): cost()}},
    ]
    branch = stages[1]["branch"]
    branch["to"][1]["probability"] = round(1.0 - branch["to"][0]["probability"], 10)
    if branch["kind"] == "by-score":
        del branch["to"][0]["classes"]
    merge = draw(st.booleans())
    if merge:
        stages.append({"name": "join", "after": ["left", "right"], "costs": {kind(): cost()}})
    used = sorted({next(iter(s["costs"])) for s in stages})
    pools = {k: {"profile": PROFILES[k], "servers": draw(st.integers(1, 2)), "count": draw(st.integers(1, 2))}
             for k in used}
    links = [{"name": f"{a}-{b}", "between": [a, b], "kind": "tcp", "bandwidth": "10 Gbit/s", "latency": "5 us"}
             for a in used for b in used if a < b]
    document = {
        "name": "paths",
        "hardware": {"pools": pools, "links": links},
        "workload": {"sources": [
            {"name": "cams", "kind": "poisson", "rate": draw(st.sampled_from(["300/s", "2000/s"])),
             "payload": "10 KB", "class": "video", "deadline": "20 ms"},
            {"name": "queries", "kind": "poisson", "rate": "500/s", "payload": "1 KB", "class": "api"}]},
        "pipeline": {"stages": stages, "entries": {"video": ["decode"], "api": ["solo"]}},
        "policies": {"placement": {"strategy": "explicit", "map": {s["name"]: next(iter(s["costs"])) for s in stages}},
                     "batching": {"left": {"kind": "dynamic", "max_batch": 4, "max_delay": "1 ms"}},
                     "admission": {"kind": draw(st.sampled_from(["none", "queue-cap"])), "cap": 4}},
        "run": {"duration": "0.3 s", "warmup": "0.05 s", "drain": "0.5 s", "seed": draw(st.integers(0, 1000)),
                "replications": 1},
    }
    if draw(st.booleans()):
        document["failures"] = [{"target": draw(st.sampled_from(used)), "at": "0.1 s", "for": "50 ms",
                                 "in_flight": draw(st.sampled_from(["fail", "requeue"]))}]
        document["resilience"] = {"retry": {"kind": "fixed", "attempts": 1, "backoff": "1 ms"}}
    return Scenario.model_validate(document)


@SETTINGS
@given(path_scenarios())
def test_every_arrival_ends_once_on_its_classs_path_and_one_branch(scenario):
    plan, frame = _run(scenario)
    assert frame["id"].is_unique
    assert frame["outcome"].notna().all()
    finished = frame["outcome"] != "unfinished"
    assert frame.loc[finished, "done"].notna().all()
    assert frame.loc[~finished, "done"].isna().all()
    ran = {s.name: frame[column(s.name, "end")].notna() for s in plan.stages}
    video, api = frame["class"] == "video", frame["class"] == "api"
    for name in ("decode", "pick", "left", "right", "join"):
        if name in ran:
            assert not (ran[name] & api).any()
    assert not (ran["solo"] & video).any()
    assert not (ran["left"] & ran["right"]).any()
    served = frame["outcome"].isin(["completed", "deadline_missed"])
    assert (ran["left"] ^ ran["right"])[served & video].all()
    if "join" in ran:
        assert ran["join"][served & video].all()
    assert ran["solo"][served & api].all()


_times = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.just(0.0) | st.just(1.0)


@given(_times, _times, _times, st.one_of(_times, st.just(float("inf"))))
def test_window_overlap_is_the_length_of_the_intersection(a: float, b: float, start: float, end: float) -> None:
    """``Window.overlap`` (written without calls, for speed) gives the textbook formula's bits."""
    from sim.model.device import Window

    assert Window(start, end).overlap(a, b) == max(0.0, min(b, end) - max(a, start))
