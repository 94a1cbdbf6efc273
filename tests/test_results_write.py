"""The results folder is replaced whole or not at all, and read back strictly.

``dgsim run`` writes into a folder beside ``--out`` and renames it into
place; these tests break the write on purpose (a disk that fills up half
way, a parent that cannot be written, ``--out`` naming a file or a folder
of something else) and check that the previous results are still there,
byte for byte, that one ``error:`` line says why, and that no temporary
folder is left behind. ``read_summary`` gets summaries with missing and
mistyped fields, binary and non-UTF-8 files. Tiny scenarios (one second of
light load) keep each run well under a second.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import sim.plan
from sim.cli import app
from sim.experiment import run_variants
from sim.results import ResultsError, read_summary, write_results
from sim.scenario.load import load_scenario_file

TWO_VARIANTS = """\
name: tiny
hardware:
  pools:
    cpu: {profile: host-cpu, servers: 2}
    gpu: {profile: a100}
  links:
    - {name: pcie, between: [cpu, gpu], profile: pcie-gen4-x16}
workload:
  sources:
    - {name: reqs, kind: poisson, rate: 50/s, payload: 10 KB}
pipeline:
  stages:
    - name: pre
      costs: {cpu: {kind: exponential, mean: 1 ms}}
    - name: infer
      costs: {gpu: {kind: deterministic, value: 2 ms}}
policies:
  placement: {strategy: cpu-path}
  batching: {infer: {kind: dynamic, max_batch: 4, max_delay: 2 ms}}
run: {duration: 1 s, warmup: 0.2 s, drain: 0.5 s, seed: 5, replications: 2}
variants:
  slow: {}
  fast:
    pipeline:
      stages:
        - {name: infer, costs: {gpu: {kind: deterministic, value: 1 ms}}}
"""


@pytest.fixture()
def scenario(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TWO_VARIANTS)
    return path


def run(*args) -> "CliRunner.Result":
    result = CliRunner().invoke(app, ["run", *map(str, args), "--jobs", "1"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


def test_a_write_that_fails_half_way_keeps_the_previous_results(scenario, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run(scenario, "--out", out).exit_code == 0
    before = snapshot(out)
    written = []

    def disk_full_on_the_second(frame, path, **kwargs):
        written.append(path)
        if len(written) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(frame, path, **kwargs)

    original = pd.DataFrame.to_parquet
    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full_on_the_second)
    result = run(scenario, "--out", out, "--seed", "9")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    [line] = errors(result)
    assert "No space left on device" in line and "previous results" in line and str(out) in line
    assert snapshot(out) == before  # the old summary and tables, byte for byte, nothing new beside them
    assert leftovers(out) == []


def test_reusing_out_with_fewer_variants_leaves_no_stale_files(scenario, tmp_path):
    out = tmp_path / "out"
    assert run(scenario, "--out", out).exit_code == 0
    assert sorted(p.name for p in (out / "requests").iterdir()) == ["fast.parquet", "slow.parquet"]
    assert run(scenario, "--out", out, "--variant", "fast").exit_code == 0
    assert sorted(p.name for p in (out / "requests").iterdir()) == ["fast.parquet"]
    assert sorted(p.name for p in (out / "resolved").iterdir()) == ["fast.yaml"]
    assert list(json.loads((out / "summary.json").read_text())["variants"]) == ["fast"]
    assert leftovers(out) == []


def test_out_naming_a_file_is_refused_before_simulating(scenario, tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("not a folder")
    result = run(scenario, "--out", out)
    assert result.exit_code == 2
    [line] = errors(result)
    assert str(out) in line and "is a file" in line
    assert out.read_text() == "not a folder"


def test_out_holding_something_else_is_refused(scenario, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8\xff")
    (out / "summary.json").write_text('{"format": "someone-else/3"}')
    result = run(scenario, "--out", out)
    assert result.exit_code == 2
    [line] = errors(result)
    assert "not dgsim results" in line
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg", "summary.json"]


def test_an_unwritable_place_gives_one_line_and_exit_2(scenario):
    out = Path("/proc/dgsim-cannot-be-here/out")  # /proc refuses new folders, even for root
    result = run(scenario, "--out", out)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    [line] = errors(result)
    assert str(out) in line and "no results written" in line


def test_entries_outside_the_format_are_carried_into_the_new_folder(scenario, tmp_path):
    """The harness streams into OUT/stream/ before the summary is written: a rewrite keeps it."""
    file = load_scenario_file(scenario)
    out = tmp_path / "out"
    result = run(scenario, "--out", out)
    assert result.exit_code == 0
    (out / "stream").mkdir()
    (out / "stream" / "log.jsonl").write_text("[1]\n")
    (out / "failures.json").write_text("[]\n")
    from sim.experiment import ExperimentResult

    variants = run_variants(file, ["slow"], range(1))
    write_results(ExperimentResult("tiny", "simulation", 5, variants), out, scenario.parent)
    assert (out / "stream" / "log.jsonl").read_text() == "[1]\n" and (out / "failures.json").exists()
    assert sorted(p.name for p in (out / "requests").iterdir()) == ["slow.parquet"]


def test_each_variant_is_compiled_once(scenario, tmp_path, monkeypatch):
    """2 variants x 2 replications, written with resolved/: two compilations (was 12 for 2 x 3)."""
    calls = []
    original = sim.plan.compile_plan

    def counting(*args, **kwargs):
        calls.append(args[0].name)
        return original(*args, **kwargs)

    monkeypatch.setattr(sim.plan, "compile_plan", counting)
    monkeypatch.setattr("sim.results.compile_plan", counting)
    result = run(scenario, "--out", tmp_path / "out")
    assert result.exit_code == 0
    assert len(calls) == 2


# --- reading a summary back ---------------------------------------------------


GOOD = {"format": "dgsim-summary/2", "scenario": "s", "source": "simulation", "seed": 1,
        "variants": {"v": {"metrics": {"latency.p99": {"mean": 0.1, "ci95": [0.09, 0.11], "values": [0.1, None]}}}}}


def _with(path: list, value) -> dict:
    document = json.loads(json.dumps(GOOD))
    node = document
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return document


@pytest.mark.parametrize("path, value, expected", [
    (["variants", "v", "metrics", "latency.p99", "mean"], "fast", "variants.v.metrics.latency.p99.mean"),
    (["variants", "v", "metrics", "latency.p99", "ci95"], [1], "variants.v.metrics.latency.p99.ci95"),
    (["variants", "v", "metrics", "latency.p99", "values"], KeyError, "values"),
    (["variants", "v", "metrics"], [1, 2], "variants.v.metrics"),
    (["variants", "v"], KeyError, "variants"),  # no variant is fine: an empty summary
    (["seed"], "one", "seed"),
    (["seed"], True, "seed"),
    (["scenario"], KeyError, "scenario"),
    (["format"], KeyError, "format"),
])
def test_malformed_summaries_give_one_clear_line(tmp_path, path, value, expected):
    document = _with(path, value)
    (tmp_path / "summary.json").write_text(json.dumps(document))
    if path == ["variants", "v"]:
        assert read_summary(tmp_path).variants == {}
        return
    with pytest.raises(ResultsError) as raised:
        read_summary(tmp_path)
    message = str(raised.value)
    assert "\n" not in message and str(tmp_path / "summary.json") in message and expected in message


def test_a_summary_from_before_the_metric_key_rename_is_refused_with_why(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({**GOOD, "format": "dgsim-summary/1"}))
    with pytest.raises(ResultsError, match="older dgsim whose metric names differ.*run it again"):
        read_summary(tmp_path)


@pytest.mark.parametrize("data, expected", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
    ('{"format": "dgsim-summary/2", "scenario": "caf\xe9"}'.encode("latin-1"), "not UTF-8"),
    (b"", "not valid JSON"),
    (b"[1, 2]", "got a JSON list"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_binary_and_non_utf8_summaries_give_one_clear_line(tmp_path, data, expected):
    (tmp_path / "summary.json").write_bytes(data)
    with pytest.raises(ResultsError) as raised:
        read_summary(tmp_path)
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_check_results_on_a_bad_summary_exits_2(tmp_path):
    folder = tmp_path / "res"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(_with(["seed"], "one")))
    result = CliRunner().invoke(app, ["check", "--results", str(folder)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert any(line.startswith("error:") and "seed" in line for line in result.output.splitlines())


def test_a_folder_left_by_an_interrupted_harness_run_is_accepted(tmp_path):
    """``dgsim hil run`` streams into OUT/stream/ before any summary exists: that folder is dgsim's."""
    from sim.results import check_out

    out = tmp_path / "hil"
    (out / "stream").mkdir(parents=True)
    check_out(out)  # no error
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ResultsError, match="not dgsim results"):
        check_out(out)


def test_records_option_keeps_a_sample_or_no_rows(scenario, tmp_path):
    full, sample, none = tmp_path / "full", tmp_path / "sample", tmp_path / "none"
    assert run(scenario, "--out", full).exit_code == 0
    assert run(scenario, "--out", sample, "--records", "sample:10").exit_code == 0
    assert run(scenario, "--out", none, "--records", "none").exit_code == 0
    every = pd.read_parquet(full / "requests" / "slow.parquet")
    kept = pd.read_parquet(sample / "requests" / "slow.parquet")
    assert len(kept) == 10 and len(every) > 10
    pd.testing.assert_frame_equal(kept.reset_index(drop=True),
                                  every.merge(kept[["replication", "id"]]).reset_index(drop=True))
    assert list((none / "requests").iterdir()) == []
    docs = {k: json.loads((f / "summary.json").read_text()) for k, f in (("a", full), ("s", sample), ("n", none))}
    assert "records_kept" not in docs["a"] and docs["s"]["records_kept"] == "sample:10"
    assert docs["n"]["records_kept"] == "none"
    assert docs["a"]["variants"] == docs["s"]["variants"] == docs["n"]["variants"]  # the summary is of every request
    result = run(scenario, "--out", tmp_path / "bad", "--records", "half")
    assert result.exit_code == 2 and errors(result) == ["error: --records: expected all, sample:N (N > 0) or none, "
                                                        "got 'half'"]


def test_one_replication_s_streamed_file_is_the_table_several_are_concatenated(scenario, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert run(scenario, "--replications", "1", "--out", one).exit_code == 0
    assert run(scenario, "--replications", "2", "--out", two).exit_code == 0
    for variant in ("slow", "fast"):
        single = pd.read_parquet(one / "requests" / f"{variant}.parquet")
        both = pd.read_parquet(two / "requests" / f"{variant}.parquet")
        assert set(single["replication"]) == {0} and set(both["replication"]) == {0, 1}
        # replication 0 is the same run either way: its rows, as the linked file holds them
        first = both[both["replication"] == 0].reset_index(drop=True)
        pd.testing.assert_frame_equal(single, first)
        assert len(both) > len(single) > 20
    assert not leftovers(one) and not leftovers(two)  # the spool (and its linked files) went
