"""``dgsim compare``: which differences between two results folders are real.

Tiny simulations of video-analytics-64's dpu-offload variant (2 s, 2
replications): the same run twice (no difference), a run with the GPU at
half speed (latency significantly higher, GPU busier), and a run with
another seed (unpaired: Welch).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from sim.cli import app
from sim.report.compare import compare, paired_difference, welch_difference
from sim.results import read_summary

pytestmark = pytest.mark.slow  # simulates two results folders first (fast lane: pytest -m 'not slow')

TINY = ["--duration", "2 s", "--set", "run.replications=2", "-j", "1", "--variant", "dpu-offload"]


def dgsim(*args):
    return CliRunner().invoke(app, [*map(str, args)])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("compare")
    made = {}
    for name, extra in (("a", []), ("again", []), ("slow-gpu", ["--set", "hardware.pools.gpu.speed=0.5"]),
                        ("other-seed", ["--seed", "7"])):
        out = base / name
        done = dgsim("run", "video-analytics-64", *TINY, *extra, "--out", out)
        assert done.exit_code == 0, done.output
        made[name] = out
    return made


def test_identical_runs_differ_in_nothing(runs):
    result = compare(read_summary(runs["a"]), read_summary(runs["again"]))
    assert result.paired == {"dpu-offload": True}
    assert result.rows and all(r.method == "paired" for r in result.rows)
    assert not [r for r in result.rows if r.significant]
    assert all(r.diff == 0 for r in result.rows if not math.isnan(r.diff))


def test_a_slower_gpu_is_significantly_slower(runs):
    result = compare(read_summary(runs["a"]), read_summary(runs["slow-gpu"]))
    rows = {r.metric: r for r in result.rows}
    for metric in ("latency.mean", "latency.p50"):
        row = rows[metric]
        assert row.method == "paired" and row.significant and row.diff > 0 and row.low > 0, row
        assert row.verdict == "B higher"
    gpu = next(r for m, r in rows.items() if m.startswith("utilisation.") and m.endswith("gpu"))
    assert gpu.significant and gpu.diff > 0
    # and the other way round, the sign flips
    back = {r.metric: r for r in compare(read_summary(runs["slow-gpu"]), read_summary(runs["a"])).rows}
    assert back["latency.mean"].significant and back["latency.mean"].high < 0


def test_other_seeds_are_compared_unpaired(runs):
    result = compare(read_summary(runs["a"]), read_summary(runs["other-seed"]))
    assert result.paired == {"dpu-offload": False}
    assert any("seeds differ" in note for note in result.notes)
    assert {r.method for r in result.rows} <= {"welch", "none"}


def test_pairing_narrows_the_interval_on_common_random_numbers():
    rng = np.random.default_rng(3)
    shared = rng.normal(10.0, 2.0, 8)  # what both runs saw (common random numbers)
    a, b = shared + rng.normal(0, 0.05, 8), shared + 0.3 + rng.normal(0, 0.05, 8)
    _, p_low, p_high, _ = paired_difference(list(a), list(b))
    _, w_low, w_high, _ = welch_difference(list(a), list(b))
    assert p_low > 0  # paired sees the +0.3
    assert w_low < 0 < w_high  # Welch drowns it in the runs' shared spread
    assert p_high - p_low < (w_high - w_low) / 5


def test_command_prints_a_table_and_writes_html(runs, tmp_path):
    page = tmp_path / "cmp.html"
    done = dgsim("compare", runs["a"], runs["slow-gpu"], "--html", page)
    assert done.exit_code == 0, done.output
    assert "paired on common random numbers" in done.output and "B higher" in done.output
    assert "metrics differ significantly" in done.output
    text = page.read_text()
    assert "<table class='compare'>" in text and "latency.p50" in text and "B higher" in text


def test_bad_folders_exit_2(runs, tmp_path):
    done = dgsim("compare", runs["a"], tmp_path / "missing")
    assert done.exit_code == 2 and "summary.json" in done.output
    assert "Traceback" not in done.output
