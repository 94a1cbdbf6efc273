"""``dgsim sweep``: grid parsing and validation, results per variant x point, the cache, failures, Pareto."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.explore.grid import GridError, parse_grid, points, scenario_key, split_values
from sim.scenario.load import load_scenario_file
from sim.explore.pareto import pareto_front

SCENARIO = """
name: tiny-sweep
hardware:
  pools:
    server: {profile: host-cpu, cores: 1}
workload:
  sources:
    - {name: arrivals, kind: poisson, rate: 200/s, payload: 0 B}
pipeline:
  stages:
    - name: serve
      costs: {cpu: {kind: exponential, mean: 1 ms}}
slo:
  latency: {p99: 30 ms}
run: {duration: 1 s, warmup: 0.2 s, drain: 0.5 s, seed: 2, replications: 2}
variants:
  one-core: {}
  two-cores:
    hardware: {pools: {server: {profile: host-cpu, cores: 2}}}
"""


@pytest.fixture
def scenario(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SCENARIO)
    return path


def sweep(*args: str, plots: bool = False):
    return CliRunner().invoke(app, ["sweep", *args, "-j", "1", "--plots" if plots else "--no-plots"])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_values_split_outside_brackets_and_grids_combine():
    assert split_values("[25 fps, 30 fps],[10 fps, 20 fps]") == ["[25 fps, 30 fps]", "[10 fps, 20 fps]"]
    axes = parse_grid(["a=1,2,3", "b=x,y"])
    assert [p.settings for p in points(axes, False)][:3] == [(("a", "1"), ("b", "x")), (("a", "1"), ("b", "y")),
                                                             (("a", "2"), ("b", "x"))]
    assert len(points(axes, False)) == 6
    with pytest.raises(GridError, match="as many values"):
        points(axes, True)
    assert [p.settings for p in points(parse_grid(["a=1,2", "b=x,y"]), True)] == [(("a", "1"), ("b", "x")),
                                                                                 (("a", "2"), ("b", "y"))]


def test_sweep_rows_metrics_cache_and_same_bytes(scenario, tmp_path):
    out = tmp_path / "out"
    grid = ["--grid", "workload.sources.arrivals.rate=100/s,300/s", "--pareto"]
    first = sweep(str(scenario), *grid, "-o", str(out))
    assert first.exit_code == 0, first.output
    table = pd.read_parquet(out / "sweep.parquet")
    assert list(table["variant"]) == ["one-core", "two-cores"] * 2
    assert list(table["workload.sources.arrivals.rate"]) == ["100/s", "100/s", "300/s", "300/s"]
    assert list(table["load"]) == [100.0, 100.0, 300.0, 300.0] and set(table["load_unit"]) == {"requests/s"}
    assert (table["replications"] == 2).all() and (table["status"] == "ok").all()
    assert (table["latency.p99.low"] <= table["latency.p99"]).all()
    assert (table["latency.p99"] <= table["latency.p99.high"]).all()
    # more load on one core: longer tail; a second core at the same load: shorter
    one, two = table[table.variant == "one-core"], table[table.variant == "two-cores"]
    assert one["latency.p99"].iloc[1] > one["latency.p99"].iloc[0]
    assert (two["latency.p99"].to_numpy() < one["latency.p99"].to_numpy()).all()
    # two cores cost twice one core: each is on the cost-vs-p99 front at its load
    assert (two["cost_per_hour"].to_numpy() == pytest.approx(2 * one["cost_per_hour"].to_numpy()))
    assert table["pareto"].all()
    before = digest(out / "sweep.parquet")
    cached = len(list((out / "points").glob("*.json")))
    assert cached == 4
    again = sweep(str(scenario), *grid, "-o", str(out))
    assert again.exit_code == 0 and "4 from the cache" in again.output, again.output
    assert digest(out / "sweep.parquet") == before


def test_a_failed_point_is_reported_and_the_others_kept(scenario, tmp_path, monkeypatch):
    """A cell whose simulation raises (injected here: validation now catches every bad input we can write)."""
    from sim.explore import sweep as module
    from sim.explore.executors import Serial

    real = module.simulate_cell

    def flaky(task):
        scenario_file, variant = task
        if "workload.sources.arrivals.rate=300/s" in scenario_file.overrides:
            raise RuntimeError("worker lost")
        return real(task)

    monkeypatch.setattr(module, "simulate_cell", flaky)
    axes = parse_grid(["workload.sources.arrivals.rate=100/s,300/s"])
    cells = module.plan_cells(scenario, [], ["one-core"], axes, False)
    results = module.run_cells(cells, Serial(), tmp_path / "points")
    table = module.sweep_table(cells, results, axes)
    assert list(table["status"]) == ["ok", "failed"]
    assert table["error"].iloc[1] == "RuntimeError: worker lost"
    assert table["latency.p99"].notna().iloc[0] and table["latency.p99"].isna().iloc[1]
    assert len(list((tmp_path / "points").glob("*.json"))) == 1  # the failure is not cached: a rerun retries it
    monkeypatch.setattr(module, "simulate_cell", real)
    again = module.run_cells(cells, Serial(), tmp_path / "points")
    assert [r.cached for r in again] == [True, False] and not any(r.error for r in again)


@pytest.mark.parametrize("grid, expected", [
    (["workload.sources.arrivals.rate=100/s,fast"], "--grid workload.sources.arrivals.rate=fast: workload.sources[0].rate"),
    (["workload.sources.arrivals.nope=1,2"], "unknown key 'nope'"),
    (["policies.queue.kind=fifo,"], "empty value"),
    (["no-equals-sign"], "expected dotted.path=v1,v2"),
    ([], "empty grid"),
])
def test_bad_grid_is_one_line_exit_2_before_anything_runs(scenario, tmp_path, grid, expected):
    args = [a for g in grid for a in ("--grid", g)]
    result = sweep(str(scenario), *args, "-o", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.output
    assert not (tmp_path / "o").exists()


def test_sweep_section_in_the_scenario(scenario, tmp_path):
    scenario.write_text(SCENARIO + "sweep:\n  grid:\n    run.seed: [1, 2]\n")
    out = tmp_path / "out"
    result = sweep(str(scenario), "--variant", "one-core", "-o", str(out), plots=True)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "sweep.parquet")
    assert list(table["run.seed"]) == ["1", "2"]
    assert table["latency.p99"].iloc[0] != table["latency.p99"].iloc[1]
    page = (out / "sweep.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(list((out / "plots").glob("*.png"))) >= 2
    assert "http://" not in page and "https://" not in page  # opens without a network


def test_pareto_front():
    assert pareto_front([(1, 10), (2, 5), (3, 6), (1, 11)], [False, False]) == [True, True, False, False]
    assert pareto_front([(10, 1.0), (12, 2.0), (8, float("nan"))], [True, False]) == [True, True, False]


def _trace(path: Path, spacing: float, count: int) -> None:
    path.write_text("timestamp\n" + "".join(f"{i * spacing:.4f}\n" for i in range(count)))


def test_editing_a_file_the_scenario_reads_invalidates_its_cached_points(scenario, tmp_path):
    """The cache key holds the contents of referenced files (here a trace replay), not only their names."""
    trace = tmp_path / "arrivals.csv"
    _trace(trace, 0.005, 150)
    scenario.write_text(SCENARIO.replace("{name: arrivals, kind: poisson, rate: 200/s, payload: 0 B}",
                                         "{name: arrivals, kind: trace, file: arrivals.csv}"))
    out = tmp_path / "out"
    args = [str(scenario), "--grid", "run.seed=1,2", "--variant", "one-core", "-o", str(out)]
    first = sweep(*args)
    assert first.exit_code == 0 and "0 from the cache" in first.output, first.output
    before = pd.read_parquet(out / "sweep.parquet")
    again = sweep(*args)
    assert "2 from the cache" in again.output, again.output
    _trace(trace, 0.01, 80)  # same file name, other arrivals
    edited = sweep(*args)
    assert edited.exit_code == 0 and "0 from the cache" in edited.output, edited.output
    after = pd.read_parquet(out / "sweep.parquet")
    assert (after["requests.arrived"] < before["requests.arrived"]).all()


def test_the_cache_key_follows_a_calibration_file(tmp_path):
    from test_calibration import synthetic_file  # a valid calibration file, as the calibration tests write it

    calibration = synthetic_file(tmp_path / "calib.yaml")
    path = tmp_path / "c.yaml"
    path.write_text(SCENARIO.replace("costs: {cpu: {kind: exponential, mean: 1 ms}}",
                                     "costs: {cpu: {kind: calibrated, file: calib.yaml, entry: parse}}"))
    scenario = load_scenario_file(path).resolve("one-core")
    key = scenario_key(scenario, tmp_path)
    assert scenario_key(scenario, tmp_path) == key
    synthetic_file(tmp_path / "other" / "calib.yaml")  # the same name elsewhere changes nothing here
    assert scenario_key(scenario, tmp_path) == key
    calibration.write_text(calibration.read_text() + "# recalibrated\n")
    edited = scenario_key(scenario, tmp_path)
    assert edited != key
    calibration.unlink()
    assert scenario_key(scenario, tmp_path) not in (key, edited)
