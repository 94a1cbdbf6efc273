"""Dask as the engine: a real LocalCluster with two workers gives the same bytes as a local run.

Workers run in threads of this process (``processes=False``: the 2-core
test machine need not start more interpreters); the scheduler, the task
graph, serialisation and completion order are Dask's own. The command-line
path (``--dask local``, separate worker processes) is exercised by
benchmarks/sweep_scaling.py.
"""

from __future__ import annotations

import hashlib

import pytest
from typer.testing import CliRunner

pytest.importorskip("distributed")

from sim.cli import app  # noqa: E402
from sim.explore.capacity import find_capacity  # noqa: E402
from sim.explore.executors import CONNECT_TIMEOUT_S, DaskCluster, ExecutorError, Serial  # noqa: E402
from sim.explore.grid import parse_grid  # noqa: E402
from sim.explore.sweep import plan_cells, run_cells, sweep_table, write_table  # noqa: E402
from sim.scenario.load import load_scenario_file  # noqa: E402

SCENARIO = """
name: dask-tiny
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
run: {duration: 2 s, warmup: 0.2 s, drain: 0.5 s, seed: 4, replications: 2}
"""


@pytest.fixture(scope="module")
def cluster():
    executor = DaskCluster("local", workers=2, processes=False)
    yield executor
    executor.close()


def sweep_bytes(path, executor, folder):
    axes = parse_grid(["workload.sources.arrivals.rate=100/s,200/s,300/s,400/s"])
    cells = plan_cells(path, [], ["base"], axes, False)
    table = sweep_table(cells, run_cells(cells, executor, folder / "points"), axes)
    write_table(table, folder / "sweep.parquet")
    return hashlib.sha256((folder / "sweep.parquet").read_bytes()).hexdigest()


def test_sweep_on_a_local_cluster_gives_the_local_bytes(tmp_path, cluster):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    assert cluster.workers == 2
    assert sweep_bytes(path, cluster, tmp_path / "dask") == sweep_bytes(path, Serial(), tmp_path / "local")


@pytest.mark.slow
def test_capacity_on_a_local_cluster_matches_local(tmp_path, cluster):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    scenario_file = load_scenario_file(path)
    on_dask = find_capacity(scenario_file, "base", cluster, tolerance=0.2, cap=3)
    local = find_capacity(scenario_file, "base", Serial(), tolerance=0.2, cap=3)
    assert [(p.value, p.verdict, p.replications) for p in on_dask.search.probes] == \
        [(p.value, p.verdict, p.replications) for p in local.search.probes]
    assert on_dask.search.low.estimates == local.search.low.estimates


@pytest.mark.slow  # waits out the 5 s connect timeout
def test_an_unreachable_scheduler_is_one_line_within_seconds(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    result = CliRunner().invoke(app, ["sweep", str(path), "--grid", "run.seed=1,2", "--dask", "tcp://127.0.0.1:9",
                                      "-o", str(tmp_path / "o"), "--no-plots"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no Dask scheduler answered" in lines[0], result.output
    # bounded by the client's connect timeout (not timed here: this machine's speed is no test's business)
    assert f"within {CONNECT_TIMEOUT_S} s" in lines[0]


def test_a_bad_address_is_refused():
    with pytest.raises(ExecutorError, match="expected 'local' or a scheduler address"):
        DaskCluster("localhost:8786")


def test_dgsim_run_replications_on_a_local_cluster_give_the_local_summary_bytes(tmp_path, cluster):
    """``dgsim run --dask``: the same replications on Dask workers, the same summary.json."""
    from sim.experiment import simulate_plans
    from sim.results import write_results

    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    scenario_file = load_scenario_file(path)
    plans = {v: scenario_file.plan(v) for v in scenario_file.variant_names}
    write_results(simulate_plans(plans, executor=cluster), tmp_path / "dask")
    write_results(simulate_plans(plans), tmp_path / "local")
    assert (tmp_path / "dask" / "summary.json").read_bytes() == (tmp_path / "local" / "summary.json").read_bytes()


@pytest.mark.slow  # waits out the 5 s connect timeout
def test_dgsim_run_with_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    result = CliRunner().invoke(app, ["run", str(path), "--dask", "tcp://127.0.0.1:1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no Dask scheduler answered" in lines[0] and "Traceback" not in result.output
    assert not list(tmp_path.glob(".o.records-*"))  # nothing left behind
