"""Metric names: one typed key, one formatter, one parser, the same keys on both sides.

Every kind round-trips through its name (names with dots included), pools
and links no longer share a name, malformed names are refused with a
message that says what was expected, and the harness's summary of a run
carries every metric name the simulator's carries for the same scenario.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.contract.metric_keys import ALL, Kind, MetricKey, Namespace, Subject, Unit
from sim.contract.outcomes import LABELS
from sim.metrics.summary import summarise
from sim.metrics.usage import ResourceUsage

SUBJECTS = {Namespace.ALL: lambda name: ALL, Namespace.CLASS: Subject.of_class, Namespace.STAGE: Subject.stage,
            Namespace.POOL: Subject.pool, Namespace.LINK: Subject.link}
UNITS = {Kind.LATENCY: Unit.SECONDS, Kind.THROUGHPUT: Unit.PER_SECOND, Kind.GOODPUT: Unit.PER_SECOND,
         Kind.REPLIES: Unit.PER_SECOND, Kind.REQUESTS: Unit.REQUESTS, Kind.RATE: Unit.FRACTION,
         Kind.WAIT: Unit.SECONDS, Kind.SERVICE: Unit.SECONDS, Kind.BATCH: Unit.JOBS, Kind.UTILISATION: Unit.FRACTION,
         Kind.QUEUE: Unit.JOBS, Kind.BYTES_PER_S: Unit.BYTES_PER_SECOND}


def every_key(name: str) -> list[MetricKey]:
    return [MetricKey(kind, SUBJECTS[space](name), statistic)
            for kind in Kind for space in kind.namespaces for statistic in (kind.statistics or (None,))]


def test_every_kind_round_trips_and_has_the_unit_of_its_kind():
    keys = every_key("gpu")
    assert {k.kind for k in keys} == set(Kind) and len(keys) == len(set(keys)) == len({k.name for k in keys})
    for key in keys:
        assert MetricKey.parse(str(key)) == key and key.name == str(key)
        assert key.unit is UNITS.get(key.kind, key.kind.unit)
    assert set(UNITS) <= set(Kind)


@given(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12))
def test_any_name_round_trips_even_with_dots(name):
    for key in every_key(name):
        assert MetricKey.parse(key.name) == key


@pytest.mark.parametrize("name, key", [
    ("latency.p99", MetricKey(Kind.LATENCY, ALL, "p99")),
    ("throughput", MetricKey(Kind.THROUGHPUT)),
    ("goodput", MetricKey(Kind.GOODPUT)),
    ("replies", MetricKey(Kind.REPLIES)),
    ("rate.drop", MetricKey(Kind.RATE, ALL, "drop")),
    ("requests.completed", MetricKey(Kind.REQUESTS, ALL, "completed")),
    ("class.video.latency.p99", MetricKey(Kind.LATENCY, Subject.of_class("video"), "p99")),
    ("class.a.b.rate.miss", MetricKey(Kind.RATE, Subject.of_class("a.b"), "miss")),
    ("stage.infer.wait", MetricKey(Kind.WAIT, Subject.stage("infer"))),
    ("stage.infer.batch", MetricKey(Kind.BATCH, Subject.stage("infer"))),
    ("utilisation.pool.gpu", MetricKey(Kind.UTILISATION, Subject.pool("gpu"))),
    ("utilisation.link.gpu", MetricKey(Kind.UTILISATION, Subject.link("gpu"))),
    ("queue.pool.dpu", MetricKey(Kind.QUEUE, Subject.pool("dpu"))),
    ("bytes_per_s.link.pcie", MetricKey(Kind.BYTES_PER_S, Subject.link("pcie"))),
])
def test_request_level_names_are_unchanged_and_resources_have_namespaces(name, key):
    assert MetricKey.parse(name) == key and str(key) == name


def test_request_outcomes_come_from_the_outcome_enum():
    assert Kind.REQUESTS.statistics == ("arrived", *LABELS)


@pytest.mark.parametrize("name, message", [
    ("", "non-empty"),
    ("utilisation.gpu", "utilisation.pool.gpu or utilisation.link.gpu"),
    ("queue.gpu", "queue.pool.gpu"),
    ("batch.infer", "stage.infer.batch"),
    ("link_bytes_per_s.pcie", "bytes_per_s.link.pcie"),
    ("latency.p98", "expected"),
    ("latency", "expected"),
    ("throughput.p99", "expected"),
    ("queue.link.pcie", "expected"),
    ("stage.infer.latency", "expected"),
    ("class..latency.p99", "expected"),
    ("class.video", "expected"),
    ("utilisation.pool.", "expected"),
    ("bogus", "expected"),
])
def test_bad_names_are_refused_with_what_was_expected(name, message):
    with pytest.raises(ValueError, match="metric name") as error:
        MetricKey.parse(name)
    assert message in str(error.value)


def test_keys_refuse_impossible_combinations():
    with pytest.raises(ValueError, match="about pool or link"):
        MetricKey(Kind.UTILISATION, Subject.stage("infer"))
    with pytest.raises(ValueError, match="unknown statistic"):
        MetricKey(Kind.LATENCY, ALL, "p42")
    with pytest.raises(ValueError, match="needs a name"):
        MetricKey(Kind.QUEUE, Subject.pool(""))


def test_a_pool_and_a_link_of_the_same_name_no_longer_collide():
    import pandas as pd

    frame = pd.DataFrame({"arrival": [0.5], "class": pd.Categorical(["c"]), "outcome": pd.Categorical(["completed"]),
                          "latency": [0.01]})
    usage = ResourceUsage(1.0, pool_utilisation={"x": 0.25}, link_utilisation={"x": 0.75})
    metrics = summarise(frame, usage, 0.0, 1.0)
    assert metrics["utilisation.pool.x"] == 0.25 and metrics["utilisation.link.x"] == 0.75


# --- the harness keys what the simulator keys --------------------------------------

TWO_CLASSES = """\
name: two
hardware:
  pools:
    dpu: {profile: bluefield-3, count: 1}
    gpu: {profile: a100, count: 1}
  links:
    - {name: wire, between: [dpu, gpu], kind: pcie, bandwidth: 10 Gbit/s}
    - {name: net, between: [client, dpu], kind: tcp, bandwidth: 10 Gbit/s}
workload:
  sources:
    - {name: a, kind: poisson, rate: 100/s, payload: 10 KB, class: gold}
    - {name: b, kind: poisson, rate: 100/s, payload: 10 KB, class: bronze}
pipeline:
  stages:
    - {name: prep, costs: {dpu: {kind: deterministic, value: 0.2 ms}}}
    - {name: infer, costs: {gpu: {kind: deterministic, value: 1 ms}}, output: 1 KB}
    - {name: post, costs: {dpu: {kind: deterministic, value: 0.1 ms}}}
run: {duration: 0.5 s, warmup: 0.1 s, replications: 1}
"""


def test_the_harness_summary_carries_every_metric_the_simulator_does(tmp_path):
    """Events as the harness's workers log them, for the simulator's own requests: the same metric names."""
    pytest.importorskip("onnxruntime")
    from hil.runner.layout import lay_out
    from hil.runner.stream import assemble
    from sim.experiment import simulate
    from sim.scenario.load import load_scenario_file

    path = tmp_path / "two.yaml"
    path.write_text(TWO_CLASSES)
    scenario_file = load_scenario_file(path)
    simulated = simulate(scenario_file).variants["base"]
    layout = lay_out(scenario_file.plan("base"), "base", "test", [0, 1])
    frame = simulated.frame
    classes = list(frame["class"].cat.categories)
    events: dict[str, list] = {"a": [], "s": [], "b": [], "h": [], "d": []}
    for rid, t, klass, outcome in zip(frame["id"], frame["arrival"], frame["class"], frame["outcome"]):
        rid, t = int(rid), float(t)
        events["a"].append([rid, t, 0, classes.index(klass), 0, float("inf"), 1e4])
        if outcome != "completed":
            continue
        for k in range(3):  # prep on the front, infer on the GPU side, post on the front
            events["s"].append([rid, k, t + k * 0.002, t + k * 0.002, t + k * 0.002 + 0.001])
            events["b"].append([k, 1, t + k * 0.002, t + k * 0.002 + 0.001])
        events["h"] += [[rid, "shm", 10_000, t + 0.0011, t + 0.0015], [rid, "shm", 1_000, t + 0.0031, t + 0.0035]]
        events["d"].append([rid, t + 0.006, "completed", ""])
    measured_frame, usage, _ = assemble(events, layout, 0, 0.5)
    measured = summarise(measured_frame, usage, 0.1, 0.5)
    assert set(simulated.runs[0]) <= set(measured)
    assert {"class.gold.latency.p99", "class.bronze.latency.p99", "utilisation.link.wire"} <= set(measured)
    assert measured["utilisation.link.wire"] > 0 and measured["bytes_per_s.link.wire"] > 0
    assert np.isnan(measured["utilisation.link.net"])  # the front stands in for the client: not measured
    assert "utilisation.link.shm" not in measured  # keyed by the scenario's link, not by the transport
