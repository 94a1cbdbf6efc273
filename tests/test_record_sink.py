"""The streaming request sink writes the table ``collect`` builds, in bounded row groups.

One short simulated run; its finished requests are fed to ``RequestSink``
with a tiny row group (so the file has many groups) and the file read back
must equal the table built in memory row for row (sorted by id), and the
summary computed from the sink's compact columns must equal the summary of
the full table exactly. ``sample:N`` keeps N distinct requests, the same
ones for the same run; ``none`` writes no file and the summary is the same.
"""

from __future__ import annotations

import math

import pandas as pd
import pyarrow.parquet as pq
import pytest

from sim.metrics.records import column
from sim.metrics.sink import RecordsChoice, RecordsError, RequestSink, TableNames
from sim.metrics.summary import summarise
from sim.model.collect import collect
from sim.model.system import System
from sim.scenario.load import load_scenario_file
from sim.workload import generate_arrivals

SCENARIO = """\
name: sink
hardware:
  pools:
    cpu: {profile: host-cpu, servers: 2}
    gpu: {profile: a100}
  links:
    - {name: pcie, between: [cpu, gpu], profile: pcie-gen4-x16}
workload:
  sources:
    - {name: reqs, kind: poisson, rate: 300/s, payload: 10 KB, deadline: 20 ms}
pipeline:
  stages:
    - {name: pre, pass_probability: 0.8, costs: {cpu: {kind: exponential, mean: 2 ms}}}
    - {name: infer, costs: {gpu: {kind: deterministic, value: 3 ms}}}
policies:
  placement: {strategy: cpu-path}
  batching: {infer: {kind: dynamic, max_batch: 4, max_delay: 2 ms}}
run: {duration: 1 s, warmup: 0.2 s, drain: 0.2 s, seed: 11, replications: 1}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("sink") / "sink.yaml"
    path.write_text(SCENARIO)
    plan = load_scenario_file(path).plan("base")
    r = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, r.duration, r.seed, 0, plan.base_dir)
    output = System(plan, arrivals, r.seed, 0).run()
    frame, usage = collect(output, 0)
    return plan, arrivals, output, frame, usage


def _feed(run, choice: str, path, rows_per_group: int = 7):
    plan, arrivals, output, _, _ = run
    sink = RequestSink(TableNames.of(plan, arrivals), arrivals, 0, "base", RecordsChoice.parse(choice), path, seed=11,
                       rows_per_group=rows_per_group)
    for request in sorted(output.requests, key=lambda r: (r.done if not math.isnan(r.done) else math.inf, r.id)):
        sink.add(request)  # in the order requests end, as the model will call it
    return sink.close()


def test_streamed_table_equals_the_in_memory_table(run, tmp_path):
    _, _, output, frame, _ = run
    result = _feed(run, "all", tmp_path / "r.parquet")
    assert result.written == len(frame) and len(frame) > 100
    assert pq.ParquetFile(tmp_path / "r.parquet").num_row_groups == math.ceil(len(frame) / 7)
    back = pd.read_parquet(tmp_path / "r.parquet").sort_values("id", ignore_index=True)
    expected = frame.assign(variant=pd.Categorical(["base"] * len(frame)))
    batch_sizes = [c for c in frame.columns if c.endswith("__batch_size")]
    if not hasattr(output.requests[0], "batch_size"):  # the model does not record sizes yet: null columns
        assert all(back[c].isna().all() for c in batch_sizes)
        expected, back = expected.drop(columns=batch_sizes), back.drop(columns=batch_sizes)
    pd.testing.assert_frame_equal(back, expected, check_categorical=False, check_dtype=False)


def test_summary_from_compact_columns_is_exact(run, tmp_path):
    plan, _, _, frame, usage = run
    r = plan.scenario.run
    for choice in ("all", "none", "sample:5"):
        result = _feed(run, choice, tmp_path / f"{choice}.parquet")
        assert summarise(result.columns, usage, r.warmup, r.duration) == summarise(frame, usage, r.warmup,
                                                                                         r.duration)


def test_sample_keeps_n_distinct_requests_the_same_each_time_and_none_writes_nothing(run, tmp_path):
    _, _, _, frame, _ = run
    first = _feed(run, "sample:25", tmp_path / "a.parquet")
    second = _feed(run, "sample:25", tmp_path / "b.parquet", rows_per_group=1000)
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert first.written == second.written == 25 and a["id"].is_unique and list(a["id"]) == list(b["id"])
    assert list(a["id"]) == sorted(a["id"]) and set(a["id"]) <= set(frame["id"])
    row = frame.set_index("id").loc[a["id"].iloc[0]]
    assert a[column("pre", "start")].iloc[0] == row[column("pre", "start")] or math.isnan(row[column("pre", "start")])
    none = _feed(run, "none", tmp_path / "none.parquet")
    assert none.written == 0 and none.path is None and not (tmp_path / "none.parquet").exists()


@pytest.mark.parametrize("text", ["some", "sample:", "sample:0", "sample:-3", "sample:x", ""])
def test_bad_records_choices_are_refused(text):
    with pytest.raises(RecordsError, match="expected all, sample:N"):
        RecordsChoice.parse(text)


def test_only_the_categorical_columns_are_dictionary_encoded(run, tmp_path):
    _feed(run, "all", tmp_path / "r.parquet", rows_per_group=1000)
    meta = pq.ParquetFile(tmp_path / "r.parquet").metadata
    group = meta.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    dictionary = {name for name, used in encodings.items() if "RLE_DICTIONARY" in used or "PLAIN_DICTIONARY" in used}
    # names (outcome, devices, links) are; times and ids, nearly all distinct, are written plain
    assert {"outcome", column("pre", "device"), column("infer", "link")} <= dictionary
    assert not {"arrival", "done", "id", column("infer", "start"), column("infer", "batch")} & dictionary


def test_outcome_values_and_labels_make_the_same_column():
    """The sink hands ``request_frame`` the outcomes' values (no string per row); the column must be the
    one their labels give, whatever order the outcomes are declared in."""
    import numpy as np

    from sim.contract.outcomes import ENDINGS
    from sim.metrics.records import _outcomes

    endings = list(ENDINGS) * 2
    by_value = _outcomes(np.array([o.value for o in endings], dtype=np.int8))
    by_label = _outcomes([o.label for o in endings])
    assert list(by_value) == [o.label for o in endings]
    pd.testing.assert_extension_array_equal(by_value, by_label)
