"""``dgsim run`` end to end on tiny scenarios: the table, the results
folder, determinism, and the command-line options.

One run goes through the real ``dgsim`` script; the others call the same
typer app in-process (``CliRunner``), which saves the interpreter start-up.
The scenarios simulate about a second of light load, so each run takes a
fraction of a second.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.costs import Deterministic
from sim.metrics.records import column
from sim.plan import compile_plan
from sim.scenario.load import BASE, load_scenario_file

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))

# Two pools and a PCIe link, two stages; Poisson arrivals so the seed matters.
SMALL = """\
name: small
hardware:
  pools:
    cpu: {profile: host-cpu, servers: 4}
    gpu: {profile: a100}
  links:
    - {name: pcie, between: [cpu, gpu], profile: pcie-gen4-x16}
workload:
  sources:
    - {name: reqs, kind: poisson, rate: 100/s, payload: 10 KB, deadline: 50 ms}
pipeline:
  stages:
    - name: pre
      costs: {cpu: {kind: exponential, mean: 1 ms}}
    - name: infer
      costs: {gpu: {kind: deterministic, value: 2 ms}}
policies:
  placement: {strategy: cpu-path}
run: {duration: 1 s, warmup: 0.2 s, drain: 0.5 s, seed: 3, replications: 2}
variants:
  slow: {}
  fast:
    pipeline:
      stages:
        - {name: infer, costs: {gpu: {kind: deterministic, value: 1 ms}}}
"""

# One camera at 20 frames/s without jitter and one 1 ms stage on a 1-core
# CPU, no links: nothing ever waits, so every latency is the service time.
UNLOADED = """\
name: unloaded
hardware:
  pools:
    cpu: {profile: host-cpu, servers: 1}
workload:
  sources:
    - {name: cam, kind: periodic, streams: 1, rate: 20 fps, payload: 1 KB}
pipeline:
  stages:
    - name: work
      costs: {cpu: {kind: deterministic, value: 1 ms}}
policies:
  placement: {strategy: cpu-path}
run: {duration: 1 s, warmup: 0.25 s, drain: 0.1 s, seed: 1, replications: 1}
"""

STAGE_COLUMNS = ("enqueued", "start", "end", "device", "batch", "batch_size", "link")
FIXED_COLUMNS = ("variant", "id", "replication", "source", "class", "arrival", "deadline", "size", "done", "latency",
                 "outcome", "reply_link")


def _dgsim() -> list[str]:
    exe = shutil.which("dgsim")
    return [exe] if exe else [sys.executable, "-m", "sim.cli"]


def invoke(*args: str):
    result = CliRunner().invoke(app, ["run", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def metric(document: dict, variant: str, name: str) -> float:
    return document["variants"][variant]["metrics"][name]["mean"]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small") / "small.yaml"
    path.write_text(SMALL)
    return path


@pytest.fixture(scope="module")
def unloaded(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("unloaded") / "unloaded.yaml"
    path.write_text(UNLOADED)
    return path


@pytest.fixture(scope="module")
def real_run(small, tmp_path_factory):
    """``dgsim run small.yaml`` through the installed script."""
    out = tmp_path_factory.mktemp("real") / "out"
    done = subprocess.run([*_dgsim(), "run", str(small), "--out", str(out), "--jobs", "1"],
                          capture_output=True, text=True, timeout=300)
    return done, out


# --- the run and its results folder ----------------------------------------


def test_run_exits_0_and_prints_a_table_with_a_column_per_variant(real_run):
    done, out = real_run
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    header = next(line for line in done.stdout.splitlines() if "metric" in line)
    cells = [c.strip() for c in header.strip("┃│ ").replace("┃", "|").split("|")]
    assert cells[:3] == ["metric", "slow", "fast"]
    rows = {line.split("│")[1].strip() for line in done.stdout.splitlines() if line.count("│") > 2}
    assert {"throughput /s", "latency p99 ms", "util % pool gpu"} <= rows
    assert str(out) in done.stdout.replace("\n", "")


def test_results_folder_has_summary_requests_and_resolved_files(real_run):
    _, out = real_run
    assert sorted(p.name for p in out.iterdir()) == ["requests", "resolved", "summary.json", "timeseries"]
    assert sorted(p.name for p in (out / "requests").iterdir()) == ["fast.parquet", "slow.parquet"]
    assert sorted(p.name for p in (out / "resolved").iterdir()) == ["fast.yaml", "slow.yaml"]
    document = summary(out)
    assert document["scenario"] == "small" and document["seed"] == 3 and document["source"] == "simulation"
    assert set(document["variants"]) == {"slow", "fast"}
    for body in document["variants"].values():
        assert body["replications"] == 2 and body["duration"] == 1.0 and body["warmup"] == 0.2
        assert len(body["metrics"]["latency.mean"]["values"]) == 2


def test_request_table_has_the_documented_columns_and_consistent_values(real_run):
    _, out = real_run
    frame = pd.read_parquet(out / "requests" / "slow.parquet")
    stage_columns = [column(s, c) for s in ("pre", "infer") for c in STAGE_COLUMNS]
    assert set(FIXED_COLUMNS) | set(stage_columns) <= set(frame.columns)
    assert sorted(frame["replication"].unique()) == [0, 1]
    # about rate * duration requests per replication: 100 each, 4 sigma is 40
    for _, rows in frame.groupby("replication"):
        assert abs(len(rows) - 100) < 40
        assert sorted(rows["id"]) == list(range(len(rows)))
    assert set(frame["outcome"]) <= {"completed", "deadline_missed"}
    assert (frame["source"] == "reqs").all() and (frame["class"] == "default").all()
    assert (frame["size"] == 10_000).all()
    assert frame["deadline"].to_numpy() == pytest.approx(frame["arrival"].to_numpy() + 0.050)
    assert frame["latency"].to_numpy() == pytest.approx((frame["done"] - frame["arrival"]).to_numpy())
    # the path of every request: queue -> start -> end per stage, stage after stage, reply after the last
    assert (frame["pre__enqueued"] >= frame["arrival"]).all()
    assert (frame["pre__start"] >= frame["pre__enqueued"]).all()
    assert (frame["infer__enqueued"] >= frame["pre__end"]).all()
    assert (frame["done"] >= frame["infer__end"]).all()
    assert frame["infer__end"].to_numpy() - frame["infer__start"].to_numpy() == pytest.approx(0.002)
    assert set(frame["pre__device"]) == {"cpu[0]"} and set(frame["infer__device"]) == {"gpu[0]"}


def test_resolved_scenarios_load_back_as_valid_scenarios(real_run, small):
    _, out = real_run
    original = load_scenario_file(small)
    for variant in ("slow", "fast"):
        resolved = load_scenario_file(out / "resolved" / f"{variant}.yaml")
        assert resolved.variant_names == [BASE]
        again = resolved.resolve(BASE)
        # the same design: the resolved file only spells out what the profiles supplied
        assert compile_plan(again).pools == compile_plan(original.resolve(variant)).pools
        assert compile_plan(again).links == compile_plan(original.resolve(variant)).links
        assert again.pipeline == original.resolve(variant).pipeline
        assert again.workload == original.resolve(variant).workload
        assert all(pool.servers is not None and pool.speed is not None for pool in again.hardware.pools.values())
    fast = load_scenario_file(out / "resolved" / "fast.yaml").resolve(BASE)
    assert fast.pipeline.stages[1].costs["gpu"].mean() == pytest.approx(0.001)


# --- determinism ------------------------------------------------------------


def test_same_seed_gives_byte_identical_summary_sequential_and_parallel(real_run, small, tmp_path):
    _, first = real_run
    sequential = invoke(small, "--out", tmp_path / "seq", "--jobs", "1")
    parallel = invoke(small, "--out", tmp_path / "par", "--jobs", "2")
    assert sequential.exit_code == 0 and parallel.exit_code == 0, parallel.output
    reference = (first / "summary.json").read_bytes()
    assert (tmp_path / "seq" / "summary.json").read_bytes() == reference
    assert (tmp_path / "par" / "summary.json").read_bytes() == reference
    pd.testing.assert_frame_equal(pd.read_parquet(first / "requests" / "fast.parquet"),
                                  pd.read_parquet(tmp_path / "par" / "requests" / "fast.parquet"))


def test_a_different_seed_gives_different_results(real_run, small, tmp_path):
    _, first = real_run
    result = invoke(small, "--out", tmp_path, "--seed", "4", "--jobs", "1")
    assert result.exit_code == 0, result.output
    other, base = summary(tmp_path), summary(first)
    assert other["seed"] == 4
    assert other != base
    for variant in ("slow", "fast"):
        assert metric(other, variant, "latency.mean") != metric(base, variant, "latency.mean")
        assert (metric(other, variant, "requests.arrived") != metric(base, variant, "requests.arrived")
                or metric(other, variant, "latency.p99") != metric(base, variant, "latency.p99"))


# --- options ----------------------------------------------------------------


def test_variant_option_limits_the_variants_run(small, tmp_path):
    result = invoke(small, "--out", tmp_path, "--variant", "fast", "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert set(summary(tmp_path)["variants"]) == {"fast"}
    assert [p.name for p in (tmp_path / "requests").iterdir()] == ["fast.parquet"]
    header = next(line for line in result.stdout.splitlines() if "metric" in line)
    assert "fast" in header and "slow" not in header


def test_unloaded_latency_is_the_service_time_and_set_doubles_it(unloaded, tmp_path):
    plain = invoke(unloaded, "--out", tmp_path / "plain", "--jobs", "1")
    doubled = invoke(unloaded, "--out", tmp_path / "doubled", "--jobs", "1",
                     "--set", "pipeline.stages.work.costs.cpu.value=2 ms")
    assert plain.exit_code == 0 and doubled.exit_code == 0, doubled.output
    one, two = summary(tmp_path / "plain"), summary(tmp_path / "doubled")
    # nothing waits: latency is exactly the 1 ms service, then 2 ms
    for name in ("latency.mean", "latency.p50", "latency.max"):
        assert metric(one, BASE, name) == pytest.approx(0.001, rel=1e-9)
        assert metric(two, BASE, name) == pytest.approx(0.002, rel=1e-9)
    resolved = yaml.safe_load((tmp_path / "doubled" / "resolved" / f"{BASE}.yaml").read_text())
    assert resolved["pipeline"]["stages"][0]["costs"]["cpu"]["value"] == "2 ms"


def test_duration_seed_and_replications_options(unloaded, tmp_path):
    result = invoke(unloaded, "--out", tmp_path, "--duration", "2.25 s", "--seed", "5", "--replications", "2",
                    "--jobs", "1")
    assert result.exit_code == 0, result.output
    document = summary(tmp_path)
    assert document["seed"] == 5
    body = document["variants"][BASE]
    assert body["duration"] == 2.25 and body["replications"] == 2
    # 20 frames/s over the 2 s after warm-up: 40 frames, give or take the phase
    for arrived in body["metrics"]["requests.arrived"]["values"]:
        assert 39 <= arrived <= 41
    frame = pd.read_parquet(tmp_path / "requests" / f"{BASE}.parquet")
    assert frame["arrival"].max() < 2.25
    assert sorted(frame["replication"].unique()) == [0, 1]


# --- scenario files ---------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_scenario_loads_without_problems(path):
    scenario_file = load_scenario_file(path)
    assert scenario_file.variant_names
    for variant in scenario_file.variant_names:
        scenario = scenario_file.resolve(variant)
        assert scenario.name == path.stem


def test_the_shipped_scenarios_are_there():
    assert {p.stem for p in SHIPPED} >= {"video-analytics-64", "edge-cloud", "recsys-ctr"}


def test_a_bare_duration_is_shorthand_for_a_deterministic_cost(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text(UNLOADED.replace("{cpu: {kind: deterministic, value: 1 ms}}", "{cpu: 1.5 ms}"))
    cost = load_scenario_file(path).resolve(BASE).pipeline.stages[0].costs["cpu"]
    assert isinstance(cost, Deterministic) and cost.value == pytest.approx(1.5e-3)


def test_a_variant_named_base_gets_its_overrides(tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(UNLOADED + "variants:\n  base: {run: {seed: 9}}\n  other: {}\n")
    scenario_file = load_scenario_file(path)
    assert scenario_file.variant_names == ["base", "other"]
    assert scenario_file.resolve("base").run.seed == 9


def test_short_run_of_the_seed_scenario_filters_only_with_the_dpu_prefilter(tmp_path):
    result = invoke("video-analytics-64", "--out", tmp_path, "--duration", "1.5 s", "--replications", "1",
                    "--jobs", "1")
    assert result.exit_code == 0, result.output
    document = summary(tmp_path)
    assert set(document["variants"]) == {"cpu-path", "dpu-offload"}
    # the CPU path skips the prefilter: nothing is filtered
    assert metric(document, "cpu-path", "rate.filter") == 0.0
    # the DPU prefilter passes 29%: the filtered share is binomial around 0.71
    arrived = metric(document, "dpu-offload", "requests.arrived")
    assert arrived > 500  # 64 cameras at 25-30 fps over the 0.5 s after warm-up
    sigma = math.sqrt(0.71 * 0.29 / arrived)
    assert metric(document, "dpu-offload", "rate.filter") == pytest.approx(0.71, abs=5 * sigma)
    # both designs see the same frames (common random numbers)
    assert metric(document, "cpu-path", "requests.arrived") == arrived


# --- bad option values, work limit, overload ---------------------------------


@pytest.mark.parametrize("args, expected", [
    (["run", "--seed", "abc"], "--seed"),
    (["run", "--jobs", "0"], "--jobs"),
    (["run", "--max-work", "lots"], "--max-work"),
    (["run", "--no-such-option"], "--no-such-option"),
    (["check", "--max-replications", "many"], "--max-replications"),
])
def test_bad_option_values_give_one_error_line_and_exit_2(args, expected, capsys):
    from sim.cli import main

    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], captured.err
    assert "Usage:" not in captured.err and "╭" not in captured.err and captured.out == ""


def test_a_run_above_the_work_limit_is_refused_with_the_estimate_and_the_flag(small, tmp_path):
    out = tmp_path / "out"
    result = invoke(small, "--out", out, "--max-work", "100")
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "request-stages" in line and "--max-work" in line and "above the limit" in line
    assert not out.exists()
    assert invoke(small, "--out", out, "--max-work", "1e6", "--jobs", "1").exit_code == 0


OVERLOADED = UNLOADED.replace("rate: 20 fps", "rate: 1500 fps").replace("name: unloaded", "name: overloaded")


def test_an_overloaded_design_is_warned_after_the_table_and_recorded(tmp_path):
    path = tmp_path / "overloaded.yaml"
    path.write_text(OVERLOADED)  # 1,500 requests/s of 1 ms on one core: 1.5x its capacity
    out = tmp_path / "out"
    result = invoke(path, "--out", out, "--jobs", "1", "--duration", "0.5 s", "--set", "run.warmup=0.1 s")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    warning = next(i for i, line in enumerate(lines) if line.startswith("warning:"))
    assert warning > max(i for i, line in enumerate(lines) if "latency p99" in line)
    assert "pool cpu" in lines[warning] and "1.50x" in lines[warning]
    [recorded] = summary(out)["variants"]["base"]["overload"]
    assert recorded["kind"] == "pool" and recorded["name"] == "cpu" and recorded["utilisation"] == pytest.approx(1.5)
    assert summary(out)["records"] == "dgsim-requests/2"


def test_the_request_table_works_with_query_and_names_batches_and_links(small, tmp_path):
    out = tmp_path / "out"
    assert invoke(small, "--out", out, "--jobs", "1", "--set", "policies.batching.infer.kind=dynamic",
                  "--set", "policies.batching.infer.max_batch=4", "--set", "policies.batching.infer.max_delay=5 ms"
                  ).exit_code == 0
    frame = pd.read_parquet(out / "requests" / "fast.parquet")
    assert not [c for c in frame.columns if "." in c]
    assert set(frame["variant"]) == {"fast"}
    late = frame.query("infer__start > 0.5 and outcome == 'completed'")
    assert len(late) and (late["infer__start"] > 0.5).all()
    if frame["infer__batch"].notna().any():  # the model records batches
        served = frame[frame["infer__batch"].notna()]
        sizes = served.groupby(["replication", "infer__batch"])["id"].transform("size")
        assert (sizes == served["infer__batch_size"]).all() and served["infer__batch_size"].max() <= 4
        assert set(served["infer__link"].dropna()) == {"pcie"}
