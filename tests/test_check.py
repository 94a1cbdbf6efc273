"""``dgsim check``: sound verdicts, exit codes, reports, baselines, measured data.

Scenarios are tiny (a second or two of simulated time at 100-200 requests
per second), so each replication takes a few hundredths of a second. The
command is registered on a local typer app, as sim/cli.py registers it.
Budgets that must land inside the noise are placed from the simulator's
own numbers for the same seed, so every path is deterministic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import typer
import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats
from typer.testing import CliRunner

from sim.check.baseline import BaselineError, parse_tolerance
from sim.check.budgets import MAX, MIN, budget, budgets_of
from sim.check.command import check_command
from sim.check.evidence import TAIL_ALPHA, evidence, samples_needed
from sim.check.verdict import Verdict, against, decide, judge, replicate
from sim.contract.metric_keys import ALL, Kind, MetricKey
from sim.experiment import run_variant, simulate
from sim.metrics.summary import Estimate, combine, estimate
from sim.report.table import estimates_table
from sim.results import write_results
from sim.scenario.load import load_scenario_file
from sim.scenario.schema import Hardware, Slo

MM1 = """\
name: {name}
hardware:
  pools:
    cpu: {{profile: host-cpu, count: 1, servers: 1}}
workload:
  sources:
    - {{name: jobs, kind: poisson, rate: 200/s, payload: 1 KB}}
pipeline:
  stages:
    - name: work
      costs: {{cpu: {{kind: exponential, mean: 1 ms}}}}
policies:
  placement: {{strategy: cpu-path}}
run: {{duration: 3 s, warmup: 0.3 s, replications: 3, seed: 11}}
"""

XFER = """\
name: xfer
hardware:
  pools:
    dpu: {profile: bluefield-3, count: 1}
    gpu: {profile: a100, count: 1}
  links:
    - {name: pcie, between: [dpu, gpu], kind: pcie, bandwidth: 80 Mbit/s}
workload:
  sources:
    - {name: cam, kind: poisson, rate: 100/s, payload: 150 KB}
pipeline:
  stages:
    - {name: prep, costs: {dpu: {kind: deterministic, value: 0.2 ms}}}
    - {name: infer, costs: {gpu: {kind: deterministic, value: 1 ms}}}
slo: {latency: {p90: 5 ms}}
run: {duration: 2 s, warmup: 0.2 s, replications: 3}
"""

BATCH = """\
name: batch
hardware:
  pools:
    gpu: {profile: a100, count: 1}
workload:
  sources:
    - {name: cam, kind: poisson, rate: 200/s, payload: 10 KB}
pipeline:
  stages:
    - {name: infer, costs: {gpu: {kind: deterministic, value: 1 ms}}}
policies:
  batching:
    infer: {kind: dynamic, max_batch: 8, max_delay: 0.1 ms}
slo: {latency: {p99: 0.5 ms}}
run: {duration: 2.5 s, warmup: 0.2 s, replications: 3}
"""

app = typer.Typer()


@app.callback()
def _group() -> None:
    """Keeps ``check`` a sub-command."""


app.command("check")(check_command)


def check(*args: object, env: dict | None = None, jobs: int = 1):
    result = CliRunner().invoke(app, ["check", "--jobs", str(jobs), *map(str, args)], env=env)
    assert "Traceback" not in result.output, result.output
    return result


def scenario(tmp_path: Path, text: str = MM1, name: str = "mm1", extra: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.format(name=name) + extra if "{name}" in text else text + extra)
    return path


def parse_junit(path: Path) -> ET.Element:
    """Parse the report back and check it against the JUnit layout pytest writes."""
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    total = {"tests": 0, "failures": 0, "skipped": 0}
    for suite in root:
        assert suite.tag == "testsuite" and suite.get("name")
        assert {c.tag for c in suite} <= {"properties", "testcase"}
        cases = suite.findall("testcase")
        for case in cases:
            assert case.get("name") and case.get("classname") and float(case.get("time")) == 0
            children = [c.tag for c in case]
            assert set(children) <= {"failure", "skipped", "system-out"}
            assert children.count("failure") + children.count("skipped") <= 1
            assert case.findtext("system-out")
        counts = {"tests": len(cases), "failures": sum(c.find("failure") is not None for c in cases),
                  "skipped": sum(c.find("skipped") is not None for c in cases)}
        assert {k: int(suite.get(k)) for k in counts} == counts and suite.get("errors") == "0"
        total = {k: total[k] + v for k, v in counts.items()}
    assert {k: int(root.get(k)) for k in total} == total
    return root


def latency_mean(path: Path, replications: range, sets: tuple[str, ...] = ()) -> Estimate:
    runs = run_variant(load_scenario_file(path, sets), "base", replications=replications).runs
    return combine(runs)["latency.mean"]


def counted(metrics: dict[str, float], served: int = 1000) -> dict[str, float]:
    """One replication's metrics with the served-request counts that make them evidence."""
    return {**metrics, "requests.completed": float(served), "requests.deadline_missed": 0.0}


def line_of(output: str, check_label: str) -> list[str]:
    return next(line for line in output.splitlines() if check_label in line).split()


# --- pure logic ---------------------------------------------------------------


def test_budgets_of_an_slo_cover_every_kind_overall_and_per_class():
    slo = Slo.model_validate({
        "latency": {"p99": "30 ms", "p99.9": "50 ms", "mean": "5 ms"}, "throughput_min": "100/s",
        "drop_rate_max": 0.01, "miss_rate_max": 0.02, "filter_rate_max": 0.5, "utilisation_max": {"gpu": 0.9},
        "classes": {"video": {"latency": {"p50": "10 ms"}, "utilisation_max": {"gpu": 0.8}}},
    })
    hardware = Hardware.model_validate({"pools": {"gpu": {"profile": "a100"}}})
    found = [(b.metric, b.bound, b.direction, b.label) for b in budgets_of(slo, hardware)]
    assert found == [
        ("latency.mean", 0.005, MAX, "latency mean"), ("latency.p99", 0.03, MAX, "latency p99"),
        ("latency.p999", 0.05, MAX, "latency p99.9"), ("throughput", 100.0, MIN, "throughput"),
        ("rate.drop", 0.01, MAX, "drop rate"), ("rate.miss", 0.02, MAX, "miss rate"),
        ("rate.filter", 0.5, MAX, "filter rate"), ("utilisation.pool.gpu", 0.9, MAX, "utilisation gpu"),
        ("class.video.latency.p50", 0.01, MAX, "class video latency p50"),
        ("utilisation.pool.gpu", 0.8, MAX, "class video utilisation gpu"),
    ]


def test_a_utilisation_budget_on_a_name_both_a_pool_and_a_link_checks_each():
    slo = Slo.model_validate({"utilisation_max": {"x": 0.5}})
    hardware = Hardware.model_validate({"pools": {"x": {"profile": "a100"}, "y": {"profile": "bluefield-3"}},
                                        "links": [{"name": "x", "between": ["x", "y"], "kind": "pcie",
                                                   "bandwidth": "1 Gbit/s"}]})
    found = [(b.metric, b.label) for b in budgets_of(slo, hardware)]
    assert found == [("utilisation.pool.x", "utilisation pool x"), ("utilisation.link.x", "utilisation link x")]


@pytest.mark.parametrize("low, high, direction, verdict", [
    (1.0, 2.0, MAX, Verdict.PASS), (3.5, 4.0, MAX, Verdict.FAIL), (2.0, 4.0, MAX, Verdict.INCONCLUSIVE),
    (3.0, 4.0, MIN, Verdict.PASS), (1.0, 2.0, MIN, Verdict.FAIL), (2.0, 4.0, MIN, Verdict.INCONCLUSIVE),
    (math.nan, math.nan, MAX, Verdict.INCONCLUSIVE), (3.0, 3.0, MAX, Verdict.PASS),
])
def test_decide_reads_the_interval_against_the_bound(low, high, direction, verdict):
    assert decide(Estimate((low + high) / 2, low, high, ()), 3.0, direction) is verdict


RANK = {Verdict.FAIL: 0, Verdict.INCONCLUSIVE: 1, Verdict.PASS: 2}
finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(finite, st.floats(0, 1e3), finite, st.floats(0, 1e3), st.sampled_from([MAX, MIN]))
def test_a_worse_estimate_never_gets_a_better_verdict(low, width, bound, shift, direction):
    e = Estimate(low + width / 2, low, low + width, ())
    worse = shift if direction == MAX else -shift
    moved = Estimate(e.mean + worse, e.low + worse, e.high + worse, ())
    assert RANK[decide(moved, bound, direction)] <= RANK[decide(e, bound, direction)]
    if decide(e, bound, direction) is Verdict.PASS:
        assert (e.mean <= bound) if direction == MAX else (e.mean >= bound)


@given(st.lists(st.floats(0.001, 1.0), min_size=2, max_size=12), st.floats(0.001, 1.0), st.floats(0.5, 1.5))
def test_against_an_exact_reference_is_the_plain_t_interval(values, reference, factor):
    plain = estimate(values)
    widened = against(plain, Estimate(reference, math.nan, math.nan, (reference,)), factor)
    assert widened.low == pytest.approx(plain.low, abs=1e-12) and widened.high == pytest.approx(plain.high, abs=1e-12)


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=10), st.lists(st.floats(0.0, 1.0), min_size=2, max_size=10),
       st.floats(0.8, 1.3))
def test_a_regression_fails_exactly_when_welchs_one_sided_test_rejects(current, base, factor):
    assume(np.var(current) > 1e-6 and np.var(base) > 1e-6)
    test = stats.ttest_ind(current, [factor * b for b in base], equal_var=False, alternative="greater")
    assume(abs(test.pvalue - 0.025) > 1e-6)
    reference = estimate(base)
    verdict = decide(against(estimate(current), reference, factor), factor * reference.mean, MAX)
    assert (verdict is Verdict.FAIL) == (test.pvalue < 0.025)


@given(st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)), min_size=2, max_size=10),
       st.integers(0, 5), st.floats(0.8, 1.3))
def test_a_paired_regression_fails_exactly_when_the_paired_t_test_rejects(pairs, extra, factor):
    current, base = [c for c, _ in pairs], [b for _, b in pairs]
    assume(np.var([c - factor * b for c, b in pairs]) > 1e-6)
    test = stats.ttest_rel(current, [factor * b for b in base], alternative="greater")
    assume(abs(test.pvalue - 0.025) > 1e-6)
    reference = estimate(base)
    more = estimate(current + [2.0] * extra)  # replications the baseline lacks are not paired
    verdict = decide(against(more, reference, factor, paired=True), factor * reference.mean, MAX)
    assert (verdict is Verdict.FAIL) == (test.pvalue < 0.025)


def test_replicate_doubles_until_decided_and_stops_at_the_cap():
    asked: list[range] = []

    def run(reps: range):
        asked.append(reps)
        return [counted({"latency.mean": 1.0 + (0.2 if r % 2 else -0.2)}) for r in reps]

    mean = MetricKey(Kind.LATENCY, ALL, "mean")
    runs, [outcome] = replicate(run, [budget(mean, 1.3)], start=2, cap=20)
    assert asked == [range(2), range(2, 4), range(4, 8)]
    assert outcome.verdict is Verdict.PASS and outcome.replications == len(runs) == 8
    asked.clear()
    runs, [outcome] = replicate(run, [budget(mean, 1.0)], start=3, cap=20)
    assert asked == [range(3), range(3, 6), range(6, 12), range(12, 20)] and len(runs) == 20
    assert outcome.verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.05", 0.05), ("0%", 0.0), (" 12.5% ", 0.125)])
def test_parse_tolerance(text, value):
    assert parse_tolerance(text) == pytest.approx(value)


# --- verdict paths through the command -------------------------------------------


def test_pass_exits_0_and_fail_exits_1_with_numbers_and_junit(tmp_path):
    path = scenario(tmp_path)
    ok = check(path, "--set", "slo.latency.p99=50 ms", "--set", "slo.throughput_min=100/s",
               "--junit", tmp_path / "ok.xml")
    assert ok.exit_code == 0, ok.output
    assert "PASS     mm1       base     latency p99" in ok.output and "<= 50.000 ms" in ok.output
    assert "dgsim check PASSED: 2 passed, 0 failed" in ok.output
    assert parse_junit(tmp_path / "ok.xml").get("failures") == "0"

    bad = check(path, "--set", "slo.latency.mean=0.2 ms", "--set", "slo.utilisation_max.cpu=0.5",
                "--junit", tmp_path / "bad.xml")
    assert bad.exit_code == 1, bad.output
    line = next(line for line in bad.output.splitlines() if "latency mean" in line)
    assert line.startswith("FAIL") and "[" in line and "<= 0.200 ms" in line and "-" in line.split("<= 0.200 ms")[1]
    root = parse_junit(tmp_path / "bad.xml")
    failures = root.findall(".//failure")
    assert len(failures) == 1 and "latency mean" in failures[0].get("message")
    assert "95% CI" in failures[0].get("message") and "margin" in failures[0].get("message")


def test_inconclusive_counts_as_configured_and_is_reported_with_its_numbers(tmp_path):
    path = scenario(tmp_path)
    mean = latency_mean(path, range(3)).mean
    within = math.ceil(mean * 1e9) / 1e6  # ms, at or just above the estimate: undecided, not over budget
    args = (path, "--set", f"slo.latency.mean={within:.6f} ms", "--max-replications", 3)
    lenient = check(*args, "--junit", tmp_path / "lenient.xml")
    assert lenient.exit_code == 0, lenient.output
    assert "INCONCLUSIVE" in lenient.output and "warning: 1 check(s) INCONCLUSIVE, counted as PASS" in lenient.output
    skipped = parse_junit(tmp_path / "lenient.xml").findall(".//skipped")
    assert len(skipped) == 1 and "95% CI" in skipped[0].get("message")

    strict = check(*args, "--inconclusive", "fail", "--junit", tmp_path / "strict.xml")
    assert strict.exit_code == 1 and "counted as FAIL" in strict.output
    [failure] = parse_junit(tmp_path / "strict.xml").findall(".//failure")
    assert failure.get("type") == "inconclusive"


def test_inconclusive_over_budget_never_passes(tmp_path):
    """p99 near 200 ms against a 150 ms budget, few replications: undecided, and counted as a failure."""
    path = scenario(tmp_path)
    runs = [counted({"latency.p99": v}) for v in (0.12, 0.28)]  # mean 200 ms, an interval far wider
    [outcome] = replicate(lambda reps: runs[reps.start:reps.stop], [budget(MetricKey(Kind.LATENCY, ALL, "p99"), 0.15)],
                          start=2, cap=2)[1]
    assert outcome.verdict is Verdict.INCONCLUSIVE and outcome.over_budget
    assert outcome.fails(inconclusive_fails=False) and outcome.fails(inconclusive_fails=True)

    mean = latency_mean(path, range(3)).mean
    below = math.floor(mean * 0.999 * 1e9) / 1e6  # ms, a hair under the estimate: inside the noise, over budget
    result = check(path, "--set", f"slo.latency.mean={below:.6f} ms", "--max-replications", 3,
                   "--junit", tmp_path / "over.xml")
    assert result.exit_code == 1, result.output
    assert line_of(result.output, "latency mean")[0] == "INCONCLUSIVE"
    assert "INCONCLUSIVE with the estimate over budget, counted as FAIL" in result.output
    assert "dgsim check FAILED" in result.output
    [failure] = parse_junit(tmp_path / "over.xml").findall(".//failure")
    assert failure.get("type") == "inconclusive"


ZERO_SERVED = """\
name: stuck
hardware:
  pools:
    cpu: {profile: host-cpu, count: 1, servers: 1}
workload:
  sources:
    - {name: jobs, kind: poisson, rate: 50/s, payload: 1 KB}
pipeline:
  stages:
    - name: work
      costs: {cpu: {kind: deterministic, value: 100 s}}
policies:
  placement: {strategy: cpu-path}
slo: {latency: {p99: 50 ms}, drop_rate_max: 0.01, utilisation_max: {cpu: 1.0}}
run: {duration: 1 s, warmup: 0.1 s, drain: 0.1 s, replications: 2, seed: 3}
"""


def test_a_design_that_serves_nothing_is_invalid_and_fails(tmp_path):
    """Before: latency NaN was INCONCLUSIVE (a pass) and 0 % dropped passed, so the gate said PASSED."""
    path = scenario(tmp_path, ZERO_SERVED, name="stuck")
    result = check(path, "--max-replications", 2, "--junit", tmp_path / "stuck.xml", "--markdown", tmp_path / "s.md")
    assert result.exit_code == 1, result.output
    for label in ("latency p99", "drop rate", "utilisation cpu"):
        row = line_of(result.output, label)
        assert row[0] == "INVALID" and row[-2:] == ["2", "0"]  # n: 2 replications, 0 served in the worst
    assert "invalid stuck / base / latency p99: no data: no request served in replication(s) 1, 2" in result.output
    assert "invalid stuck / base / drop rate: no data: no request served in replication(s) 1, 2" in result.output
    assert "dgsim check FAILED: 0 passed, 0 failed, 3 invalid" in result.output
    failures = parse_junit(tmp_path / "stuck.xml").findall(".//failure")
    assert len(failures) == 3 and {f.get("type") for f in failures} == {"invalid"}
    assert "| ⛔ INVALID | stuck | base | latency p99 |" in (tmp_path / "s.md").read_text()


def test_too_few_requests_for_a_percentile_is_invalid(tmp_path):
    path = scenario(tmp_path, extra="slo: {latency: {p99.9: 50 ms, p50: 50 ms}}\n")
    result = check(path, "--max-replications", 3)
    assert result.exit_code == 1, result.output
    p999, p50 = line_of(result.output, "latency p99.9"), line_of(result.output, "latency p50")
    served = int(p999[-1])
    assert p999[0] == "INVALID" and 6 <= served < samples_needed(MetricKey(Kind.LATENCY, ALL, "p999"))
    assert p50[0] == "PASS"
    assert "a p99.9 needs at least 3688 served requests per replication" in result.output


@pytest.mark.parametrize("statistic, needed", [("p50", 6), ("p90", 36), ("p95", 72), ("p99", 368), ("p999", 3688)])
def test_a_percentile_needs_enough_requests_that_the_largest_bounds_it(statistic, needed):
    key = MetricKey(Kind.LATENCY, ALL, statistic)
    q = key.percent / 100
    assert samples_needed(key) == needed and q**needed <= TAIL_ALPHA < q ** (needed - 1)
    enough = {"latency." + statistic: estimate([0.01, 0.02]), "requests.completed": estimate([needed, needed + 5]),
              "requests.deadline_missed": estimate([0.0, 0.0])}
    assert evidence(key, enough).problem is None and evidence(key, enough).samples == needed
    short = {**enough, "requests.completed": estimate([needed, needed - 1])}
    assert "too few samples" in evidence(key, short).problem
    assert judge(budget(key, 1.0), short, 2).verdict is Verdict.INVALID


def test_a_metric_missing_or_without_counts_is_invalid():
    key = MetricKey(Kind.LATENCY, ALL, "mean")
    assert judge(budget(key, 1.0), {}, 3).verdict is Verdict.INVALID
    no_counts = {"latency.mean": estimate([0.1, 0.2, 0.3])}
    assert "cannot count the samples" in judge(budget(key, 1.0), no_counts, 3).reason


def test_the_table_warns_about_a_percentile_from_too_few_requests():
    from rich.console import Console

    few = {"latency.p999": estimate([0.05, 0.06]), "latency.p50": estimate([0.01, 0.01]),
           "requests.completed": estimate([6.0, 9.0]), "requests.deadline_missed": estimate([0.0, 0.0])}
    console = Console(width=200, record=True)
    console.print(estimates_table("t", {"v": few}))
    text = console.export_text()
    assert "latency p99.9 ms" in text and " !" in text
    assert "v: latency p99.9 from 6 served request(s) in a replication; it needs at least 3688" in text
    assert "latency p50 from" not in text


def test_more_replications_decide_a_budget_the_first_ones_could_not(tmp_path):
    path = scenario(tmp_path)
    runs = run_variant(load_scenario_file(path), "base", replications=range(12)).runs
    looks = {n: combine(runs[:n])["latency.mean"] for n in (3, 6, 12)}
    decided = next(n for n in (6, 12) if looks[n].high < min(e.high for k, e in looks.items() if k < n))
    earlier = [e for k, e in looks.items() if k < decided]
    bound = (looks[decided].high + min(e.high for e in earlier)) / 2
    assert all(e.low < bound < e.high for e in earlier)  # undecided at every earlier look
    result = check(path, "--set", f"slo.latency.mean={bound * 1e3:.9f} ms")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if "latency mean" in line)
    assert line.startswith("PASS") and line.split()[-2] == str(decided)  # reps, then served/rep
    assert f"mm1 / base: simulating replications {decided // 2 + 1}-{decided}" in result.stderr


def test_junit_has_one_case_per_scenario_variant_and_budget(tmp_path):
    two = scenario(tmp_path, name="two", extra=(
        "slo: {latency: {p99: 50 ms, mean: 1.3 ms}}\n"
        "variants:\n  quick: {}\n"
        "  slow: {pipeline: {stages: [{name: work, costs: {cpu: {kind: exponential, mean: 3 ms}}}]}}\n"))
    one = scenario(tmp_path, name="one", extra="slo: {throughput_min: 100/s}\n")
    result = check(two, one, "--junit", tmp_path / "report.xml")
    assert result.exit_code == 1, result.output
    root = parse_junit(tmp_path / "report.xml")
    cases = {(s.get("name"), c.get("name")) for s in root for c in s.iter("testcase")}
    assert cases == {("two", "quick: latency mean"), ("two", "quick: latency p99"), ("two", "slow: latency mean"),
                     ("two", "slow: latency p99"), ("one", "base: throughput")}
    failing = {c.get("name") for c in root.iter("testcase") if c.find("failure") is not None}
    assert failing == {"slow: latency mean"}
    assert "why two / slow failed" in result.output


def test_a_scenario_without_budgets_has_no_cases_and_says_so(tmp_path):
    result = check(scenario(tmp_path), "--junit", tmp_path / "none.xml")
    assert result.exit_code == 0 and "mm1 / base: no budgets in slo; nothing to check" in result.output
    assert parse_junit(tmp_path / "none.xml").get("tests") == "0"


@pytest.mark.slow
def test_same_seed_same_verdict_and_same_bytes_in_parallel_too(tmp_path):
    path = scenario(tmp_path, extra="slo: {latency: {p99: 8 ms, mean: 1.2 ms}}\n")
    first = check(path, "--junit", tmp_path / "a.xml")
    second = check(path, "--junit", tmp_path / "b.xml", jobs=2)
    assert first.output == second.output and first.exit_code == second.exit_code
    assert (tmp_path / "a.xml").read_bytes() == (tmp_path / "b.xml").read_bytes()


def test_markdown_file_and_github_step_summary(tmp_path):
    path = scenario(tmp_path, BATCH, name="batch")
    step = tmp_path / "step.md"
    step.write_text("earlier step\n")
    result = check(path, "--markdown", tmp_path / "out" / "summary.md", env={"GITHUB_STEP_SUMMARY": str(step)})
    assert result.exit_code == 1
    text = (tmp_path / "out" / "summary.md").read_text()
    assert text.startswith("## dgsim check ❌ FAILED") and "| ❌ FAIL | batch | base | latency p99 |" in text
    assert "**Why batch / base failed**" in text and "- batch fill low on 'infer'" in text
    assert step.read_text() == "earlier step\n" + text


# --- baseline and regressions -----------------------------------------------------


def test_baseline_catches_a_20_percent_slower_service_and_passes_the_same_design(tmp_path):
    path = scenario(tmp_path)
    base = tmp_path / "baseline.json"
    written = check(path, "--write-baseline", base)
    assert written.exit_code == 0 and json.loads(base.read_text())["format"] == "dgsim-baseline/2"

    same = check(path, "--baseline", base, "--max-regression", "5%", "--junit", tmp_path / "same.xml")
    assert same.exit_code == 0, same.output
    assert "REGRESSED" not in same.output and "latency p99 vs baseline +5%" in same.output
    assert len(parse_junit(tmp_path / "same.xml").findall(".//testcase")) == 3

    slower = ("--set", "pipeline.stages.work.costs.cpu.mean=1.2 ms")
    worse = check(path, *slower, "--baseline", base, "--max-regression", "5%", "--junit", tmp_path / "worse.xml")
    assert worse.exit_code == 1, worse.output
    line = next(line for line in worse.output.splitlines() if "latency mean vs baseline" in line)
    assert line.startswith("REGRESSED")
    types = {f.get("type") for f in parse_junit(tmp_path / "worse.xml").findall(".//failure")}
    assert types == {"regression"}

    tolerant = check(path, *slower, "--baseline", base, "--max-regression", "60%")
    assert tolerant.exit_code == 0 and "REGRESSED" not in tolerant.output

    unpaired = check(path, *slower, "--seed", 5, "--baseline", base)  # another seed: Welch's test
    assert unpaired.exit_code == 1
    assert any(line.startswith("REGRESSED") and "latency mean vs" in line for line in unpaired.output.splitlines())


def test_baseline_file_is_versioned_one_line_per_metric_and_reproducible(tmp_path):
    path = scenario(tmp_path)
    check(path, "--write-baseline", tmp_path / "a.json")
    check(path, "--write-baseline", tmp_path / "b.json")
    text = (tmp_path / "a.json").read_text()
    assert text == (tmp_path / "b.json").read_text()
    document = json.loads(text)
    assert document["format"] == "dgsim-baseline/2"
    recorded = document["scenarios"]["mm1"]["base"]
    assert recorded["source"] == "simulation" and recorded["seed"] == 11
    assert len(recorded["metrics"]["throughput"]["values"]) == 3
    assert '"latency.p99": {"ci95": [' in text


def test_a_scenario_missing_from_the_baseline_is_not_compared(tmp_path):
    base = tmp_path / "baseline.json"
    check(scenario(tmp_path, name="old"), "--write-baseline", base)
    result = check(scenario(tmp_path, name="new"), "--baseline", base)
    assert result.exit_code == 0 and "new / base: not in the baseline" in result.output


# --- measured results -------------------------------------------------------------


def test_results_folders_are_judged_on_the_same_budgets(tmp_path):
    path = scenario(tmp_path, extra="slo: {latency: {p99: 50 ms, mean: 0.2 ms}}\n")
    result = simulate(load_scenario_file(path))
    write_results(dataclasses.replace(result, source="measurement"), tmp_path / "results" / "mm1")

    from_file = check(path, "--results", tmp_path / "results" / "mm1", "--junit", tmp_path / "m.xml")
    assert from_file.exit_code == 1, from_file.output
    assert [line.split()[0] for line in from_file.output.splitlines()[1:3]] == ["FAIL", "PASS"]
    props = {p.get("name"): p.get("value") for p in parse_junit(tmp_path / "m.xml").iter("property")}
    assert props["base.source"] == "measurement" and props["base.replications"] == "3"

    parent = check(path, "--results", tmp_path / "results")  # DIR/<scenario name>/ layout
    alone = check("--results", tmp_path / "results")  # budgets from resolved/<variant>.yaml
    simulated = check(path, "--max-replications", 3)
    assert parent.stdout == alone.stdout == from_file.stdout == simulated.stdout
    relaxed = check("--results", tmp_path / "results", "--set", "slo.latency.mean=50 ms")
    assert relaxed.exit_code == 0, relaxed.output


def test_a_results_folder_with_null_metrics_fails(tmp_path):
    """Before: null metrics were INCONCLUSIVE, counted as passes: exit 0 with no data."""
    path = scenario(tmp_path, extra="slo: {latency: {p99: 50 ms}, miss_rate_max: 0.5}\n")
    write_results(dataclasses.replace(simulate(load_scenario_file(path)), source="measurement"), tmp_path / "res")
    summary = tmp_path / "res" / "summary.json"
    document = json.loads(summary.read_text())
    for m in document["variants"]["base"]["metrics"].values():
        m.update(mean=None, ci95=[None, None], values=[None for _ in m["values"]])
    summary.write_text(json.dumps(document))
    result = check(path, "--results", tmp_path / "res", "--junit", tmp_path / "null.xml")
    assert result.exit_code == 1, result.output
    assert [line_of(result.output, label)[0] for label in ("latency p99", "miss rate")] == ["INVALID", "INVALID"]
    assert line_of(result.output, "latency p99")[-2:] == ["3", "?"]  # 3 replications, served count unknown
    assert "no data: 'latency.p99' is null in replication(s) 1, 2, 3" in result.output
    assert parse_junit(tmp_path / "null.xml").get("failures") == "2"


def test_every_verdict_shows_n_replications_and_served_requests(tmp_path):
    path = scenario(tmp_path, extra="slo: {latency: {p99: 50 ms}}\n")
    result = check(path, "--junit", tmp_path / "n.xml", "--markdown", tmp_path / "n.md")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[-2:] == ["reps", "served/rep"]
    reps, served = int(row.split()[-2]), int(row.split()[-1])
    assert reps == 3 and 368 <= served < 700  # 200/s over 2.7 s, the fewest of three replications
    [case] = parse_junit(tmp_path / "n.xml").iter("testcase")
    assert f"n = 3 replication(s) with at least {served} served request(s) each" in case.findtext("system-out")
    assert f"| 3 | {served} |" in (tmp_path / "n.md").read_text()


# --- diagnostics ------------------------------------------------------------------


def test_diagnostics_explain_a_transfer_bound_pipeline(tmp_path):
    result = check(scenario(tmp_path, XFER, name="xfer"))
    assert result.exit_code == 1
    why = [line for line in result.output.splitlines() if line.startswith("why xfer / base failed")]
    assert any("GPU utilisation low while latency is high: gpu" in line and "busiest elsewhere: 'pcie'" in line
               for line in why)
    assert any("link 'pcie' is 100% busy (10.0 MB/s) -> transfer-bound" in line for line in why)


def test_diagnostics_explain_low_batch_fill(tmp_path):
    result = check(scenario(tmp_path, BATCH, name="batch"))
    assert result.exit_code == 1
    assert "batch fill low on 'infer': mean batch 1.0" in result.output
    assert "of max 8 (13%) -> max_delay 0.1 ms is too short" in result.output
    assert "GPU utilisation low" not in result.output  # nothing else to blame


# --- invalid input exits 2 --------------------------------------------------------


@pytest.mark.parametrize("case, message", [
    ("unknown-key", "unknown key 'bogus'"),
    ("missing-file", "file not found"),
    ("missing-results", "no such results folder"),
    ("empty-results", "no summary.json in it or in its sub-folders"),
    ("bad-json-baseline", "not valid JSON"),
    ("wrong-format-baseline", "expected format 'dgsim-baseline/2'"),
    ("malformed-baseline", "malformed baseline"),
    ("missing-baseline", "baseline not found"),
    ("bad-tolerance", "expected a percentage such as '5%'"),
    ("huge-tolerance", "below 100%"),
    ("unknown-variant", "no variant 'nope'"),
    ("nothing", "give scenario files"),
    ("wrong-results", "results of scenario 'mm1', not 'other'"),
    ("no-summary", "no summary.json for scenario 'mm1' in it or in"),
])
def test_invalid_input_exits_2_with_a_clear_message(tmp_path, case, message):
    good = scenario(tmp_path)
    (tmp_path / "empty").mkdir()
    baselines = {"bad-json": "{", "wrong-format": '{"format": "x"}', "malformed": '{"format": "dgsim-baseline/2"}'}
    for name, text in baselines.items():
        (tmp_path / f"{name}.json").write_text(text)
    if case == "wrong-results":
        write_results(simulate(load_scenario_file(good)), tmp_path / "res")
    args = {
        "unknown-key": [scenario(tmp_path, name="bad", extra="bogus: 1\n")],
        "missing-file": [tmp_path / "nope.yaml"],
        "missing-results": [good, "--results", tmp_path / "nowhere"],
        "empty-results": ["--results", tmp_path / "empty"],
        "bad-json-baseline": [good, "--baseline", tmp_path / "bad-json.json"],
        "wrong-format-baseline": [good, "--baseline", tmp_path / "wrong-format.json"],
        "malformed-baseline": [good, "--baseline", tmp_path / "malformed.json"],
        "missing-baseline": [good, "--baseline", tmp_path / "none.json"],
        "bad-tolerance": [good, "--max-regression", "lots"],
        "huge-tolerance": [good, "--max-regression", "150%"],
        "unknown-variant": [good, "--variant", "nope"],
        "nothing": [],
        "wrong-results": [scenario(tmp_path, name="other"), "--results", tmp_path / "res"],
        "no-summary": [good, "--results", tmp_path / "empty"],
    }[case]
    result = check(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_bad_options_exit_2():
    assert check("--inconclusive", "maybe").exit_code == 2
    assert check("--max-replications", 0).exit_code == 2
    with pytest.raises(BaselineError):
        parse_tolerance("-1%")


def test_the_table_gives_many_instances_of_a_node_pool_one_row_and_few_a_row_each_in_numeric_order():
    from rich.console import Console

    many = {f"utilisation.pool.srv[{i}].gpu": estimate([0.40 + i * 0.002] * 2) for i in range(20)}
    few = {f"utilisation.pool.edge[{i}].dpu": estimate([0.5, 0.5]) for i in (10, 9, 2)}
    console = Console(width=200, record=True)
    console.print(estimates_table("t", {"v": {**many, **few}}))
    text = console.export_text()
    assert "srv[3].gpu" not in text
    row = next(line for line in text.splitlines() if "srv[*].gpu (20)" in line)
    assert "41.9 (40.0-43.8)" in row  # the mean of 40.0, 40.2 .. 43.8 %, and their range
    assert text.index("edge[2].dpu") < text.index("edge[9].dpu") < text.index("edge[10].dpu")
    assert "edge[*]" not in text and "summary.json has each" in text
