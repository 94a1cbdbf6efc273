"""A run records utilisation and queue time series without changing what it simulates."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.experiment import run_plans
from sim.model import timeseries
from sim.scenario.builtin import scenario_path
from sim.scenario.load import load_scenario_file


@pytest.mark.slow  # four replications simulated twice
def test_sampling_reads_the_model_and_changes_nothing() -> None:
    scenario = load_scenario_file(scenario_path(None), ["run.replications=2", "run.duration=2 s"])
    plans = {v: scenario.plan(v) for v in scenario.variant_names}
    plain = run_plans(plans, None, None, 1, None)
    sampled = run_plans(plans, None, None, 1, timeseries.DEFAULT_INTERVAL)
    for variant in plans:
        assert plain[variant].timeseries is None
        assert sampled[variant].runs == plain[variant].runs
        assert sampled[variant].frame.equals(plain[variant].frame)
        table = sampled[variant].timeseries
        assert set(table["replication"]) == {0, 1}
        pools = set(plans[variant].pools)
        assert pools <= set(table["resource"].astype(str))
        busy = table[table["resource"].astype(str) == "gpu"]
        assert (busy["busy"] <= busy["capacity"]).all() and busy["busy"].max() > 0


def test_dgsim_run_writes_a_time_series_per_variant(tmp_path: Path) -> None:
    out = tmp_path / "res"
    result = CliRunner().invoke(app, ["run", "--duration", "2 s", "--set", "run.replications=1", "-j", "1",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    for variant in ("cpu-path", "dpu-offload"):
        table = timeseries.read_timeseries(out, variant)
        assert table is not None and len(table) > 0
        assert table["time"].max() <= 2.0 + 5.0  # the run's duration plus its default 5 s drain at most
