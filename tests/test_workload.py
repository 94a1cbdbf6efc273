"""Arrivals: each source's process has the statistics it promises, streams
are reproducible and independent (common random numbers), traces replay.

Tolerances come from the processes' own variances (a Poisson count over T
has standard deviation sqrt(rate T), and so on); each test uses a fixed
seed, so it is deterministic, and the bounds leave several sigmas of room.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim.scenario.schema import Workload
from sim.workload import TraceError, generate_arrivals


def workload(*sources: dict) -> Workload:
    return Workload.model_validate({"sources": list(sources)})


def poisson(name="p", rate="200/s", **extra) -> dict:
    return {"name": name, "kind": "poisson", "rate": rate, "payload": "1 KB", **extra}


def cv(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1) / np.mean(values))


# --- Poisson ----------------------------------------------------------------


def test_poisson_count_is_within_a_few_sigma_of_rate_times_duration():
    rate, duration = 200.0, 50.0
    expected = rate * duration
    for seed in (1, 2, 3):
        n = len(generate_arrivals(workload(poisson(rate="200/s")), duration, seed))
        assert abs(n - expected) < 4 * math.sqrt(expected), (seed, n)


def test_poisson_gaps_look_exponential():
    rate = 500.0
    arrivals = generate_arrivals(workload(poisson(rate="500/s")), 40.0, seed=9)
    gaps = np.diff(arrivals.time)
    assert len(gaps) > 15_000
    assert np.all(gaps >= 0)
    # exponential: mean 1/rate and coefficient of variation 1
    assert np.mean(gaps) == pytest.approx(1 / rate, rel=0.03)
    assert cv(gaps) == pytest.approx(1.0, abs=0.04)
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 1e-3


def test_arrivals_lie_in_zero_to_duration_and_are_sorted():
    arrivals = generate_arrivals(workload(poisson(rate="1 kHz")), 2.0, seed=4)
    assert arrivals.time.min() >= 0 and arrivals.time.max() < 2.0
    assert np.all(np.diff(arrivals.time) >= 0)
    assert len(arrivals) == len(arrivals.time) == len(arrivals.size) == len(arrivals.source)


# --- periodic ---------------------------------------------------------------


def periodic(name="cams", streams=4, rate="25 fps", jitter="0 s", **extra) -> dict:
    return {"name": name, "kind": "periodic", "streams": streams, "rate": rate, "jitter": jitter,
            "payload": "33 KB", **extra}


def test_periodic_count_is_streams_times_rate_times_duration():
    streams, rate, duration = 8, 25.0, 4.0
    n = len(generate_arrivals(workload(periodic(streams=streams, rate="25 fps")), duration, seed=2))
    # each stream sends floor or ceil of rate * duration frames inside [0, duration)
    assert abs(n - streams * rate * duration) <= streams


def test_periodic_streams_without_jitter_tick_exactly_every_period():
    streams, rate, duration = 5, 30.0, 3.0
    period = 1 / rate
    times = generate_arrivals(workload(periodic(streams=streams, rate="30 fps")), duration, seed=8).time
    # every stream has its own phase in [0, period): group frames by phase
    phase = np.round(np.mod(times, period) / period * 1e6).astype(np.int64)
    groups = [times[phase == p] for p in np.unique(phase)]
    assert len(groups) == streams
    for ticks in groups:
        assert np.allclose(np.diff(ticks), period, rtol=0, atol=1e-9)
        assert abs(len(ticks) - rate * duration) <= 1
        assert ticks[0] < period  # the first frame comes within one period


def test_periodic_jitter_spreads_the_gaps():
    rate = 30.0
    jitter = 0.002
    times = generate_arrivals(workload(periodic(streams=1, rate="30 fps", jitter="2 ms")), 20.0, seed=3).time
    gaps = np.diff(times)
    # consecutive offsets are independent N(0, jitter): a gap's sd is jitter * sqrt(2)
    assert np.mean(gaps) == pytest.approx(1 / rate, rel=0.01)
    assert np.std(gaps, ddof=1) == pytest.approx(jitter * math.sqrt(2), rel=0.15)


def test_periodic_rate_range_draws_each_stream_rate_uniformly_in_the_range():
    # one stream per replication, so its rate is 1 / its (constant) gap
    rates = []
    for replication in range(300):
        times = generate_arrivals(workload(periodic(streams=1, rate=["25 fps", "30 fps"])), 1.0, 5, replication).time
        gaps = np.diff(times)
        assert np.allclose(gaps, gaps[0], rtol=1e-9)
        rates.append(1 / gaps[0])
    rates = np.array(rates)
    assert rates.min() >= 25.0 - 1e-9 and rates.max() <= 30.0 + 1e-9
    # uniform on [25, 30]: mean 27.5, sd 5 / sqrt(12) ~ 1.44; both tails reached
    assert np.mean(rates) == pytest.approx(27.5, abs=4 * 1.44 / math.sqrt(300))
    assert rates.min() < 25.5 and rates.max() > 29.5
    assert stats.kstest(rates, "uniform", args=(25.0, 5.0)).pvalue > 1e-3


# --- gamma ------------------------------------------------------------------


@pytest.mark.parametrize("target_cv", [0.5, 2.0])
def test_gamma_gaps_have_the_requested_mean_and_cv(target_cv):
    rate = 1000.0
    source = {"name": "g", "kind": "gamma", "rate": "1 kHz", "cv": target_cv, "payload": "1 KB"}
    gaps = np.diff(generate_arrivals(workload(source), 20.0, seed=13).time)
    assert len(gaps) > 18_000
    assert np.mean(gaps) == pytest.approx(1 / rate, rel=0.05)
    # the sample cv's relative error is under 2% here (gamma kurtosis 6 / shape)
    assert cv(gaps) == pytest.approx(target_cv, rel=0.1)


# --- MMPP -------------------------------------------------------------------


def test_mmpp_long_run_rate_is_the_dwell_weighted_mean():
    rates, dwell = [1000.0, 100.0], [0.1, 0.4]
    expected = sum(r * d for r, d in zip(rates, dwell)) / sum(dwell)  # (100 + 40) / 0.5 = 280 /s
    source = {"name": "m", "kind": "mmpp", "rates": ["1000/s", "100/s"], "dwell": ["100 ms", "400 ms"],
              "payload": "1 KB"}
    duration = 50.0
    counts = [len(generate_arrivals(workload(source), duration, seed=21, replication=r)) for r in range(8)]
    mean_rate = np.mean(counts) / duration
    # The count's index of dispersion is about 1 + 2 (l1 - l2)^2 p1 p2 / (mean (q1 + q2)) = 38,
    # so one 50 s run has sd ~ sqrt(38 * 14000) ~ 730 (5.2%); the mean of eight: ~1.8%.
    assert mean_rate == pytest.approx(expected, rel=0.08)
    # and it is burstier than Poisson: runs vary far more than sqrt(count) (~118)
    assert np.std(counts, ddof=1) > 2 * math.sqrt(np.mean(counts))


def test_mmpp_with_a_silent_state_sends_nothing_in_it():
    # rate 0 in one state: the long-run rate is that of the other state times its share of time
    source = {"name": "m", "kind": "mmpp", "rates": ["0/s", "500/s"], "dwell": ["300 ms", "100 ms"],
              "payload": "1 KB"}
    counts = [len(generate_arrivals(workload(source), 100.0, seed=3, replication=r)) for r in range(4)]
    assert np.mean(counts) / 100.0 == pytest.approx(500 * 0.25, rel=0.1)


# --- trace replay -----------------------------------------------------------


def test_trace_replays_shifted_to_zero_with_units_speedup_and_sizes(tmp_path):
    (tmp_path / "trace.csv").write_text(
        "ts_ms,bytes,other\n"
        "1010,300,x\n"
        "1000,100,y\n"  # out of order in the file: sorted on replay
        "1004,200,z\n"
        "1900,400,w\n"
    )
    source = {"name": "t", "kind": "trace", "file": "trace.csv", "time_column": "ts_ms", "time_unit": "ms",
              "size_column": "bytes", "speedup": 2.0}
    arrivals = generate_arrivals(workload(source), 0.1, seed=1, base_dir=tmp_path)
    # (t - 1000 ms) / 2: 0, 2, 5 ms; 450 ms is past the 100 ms duration and dropped
    assert arrivals.time.tolist() == pytest.approx([0.0, 0.002, 0.005])
    assert arrivals.size.tolist() == [100.0, 200.0, 300.0]


def test_trace_without_size_column_uses_payload_and_default_column_name(tmp_path):
    (tmp_path / "t.csv").write_text("timestamp\n5.0\n5.5\n7.25\n")
    source = {"name": "t", "kind": "trace", "file": "t.csv", "payload": "2 KB"}
    arrivals = generate_arrivals(workload(source), 10.0, seed=1, base_dir=tmp_path)
    assert arrivals.time.tolist() == pytest.approx([0.0, 0.5, 2.25])
    assert arrivals.size.tolist() == [2000.0, 2000.0, 2000.0]


def test_trace_with_microseconds(tmp_path):
    (tmp_path / "t.csv").write_text("timestamp\n100\n350\n")
    source = {"name": "t", "kind": "trace", "file": "t.csv", "time_unit": "us"}
    assert generate_arrivals(workload(source), 1.0, seed=1, base_dir=tmp_path).time.tolist() == pytest.approx(
        [0.0, 250e-6])


def test_trace_errors_name_the_file_and_column(tmp_path):
    (tmp_path / "bad.csv").write_text("timestamp\n1\nsoon\n")
    source = {"name": "t", "kind": "trace", "file": "bad.csv"}
    with pytest.raises(TraceError, match=r"bad\.csv.*'timestamp'"):
        generate_arrivals(workload(source), 1.0, seed=1, base_dir=tmp_path)
    (tmp_path / "nocol.csv").write_text("time\n1\n")
    source = {"name": "t", "kind": "trace", "file": "nocol.csv"}
    with pytest.raises(TraceError, match=r"nocol\.csv.*timestamp"):
        generate_arrivals(workload(source), 1.0, seed=1, base_dir=tmp_path)


# --- reproducibility and common random numbers ------------------------------

MIXED = workload(
    poisson("a", rate="300/s"),
    periodic("b", streams=3, rate=["20 fps", "30 fps"], jitter="1 ms"),
    {"name": "c", "kind": "gamma", "rate": "100/s", "cv": 1.5, "payload": "1 KB"},
)


def _same(x, y) -> bool:
    return all(np.array_equal(getattr(x, f), getattr(y, f)) for f in ("time", "source", "klass", "size", "deadline"))


def test_same_seed_and_replication_give_identical_arrays():
    assert _same(generate_arrivals(MIXED, 3.0, seed=7, replication=2), generate_arrivals(MIXED, 3.0, seed=7, replication=2))


def test_a_different_replication_or_seed_gives_different_arrivals():
    base = generate_arrivals(MIXED, 3.0, seed=7, replication=0)
    other_rep = generate_arrivals(MIXED, 3.0, seed=7, replication=1)
    other_seed = generate_arrivals(MIXED, 3.0, seed=8, replication=0)
    for other in (other_rep, other_seed):
        assert not np.array_equal(base.time[base.source == 0], other.time[other.source == 0])


def test_adding_a_source_does_not_change_the_others():
    alone = generate_arrivals(workload(poisson("a", rate="300/s")), 3.0, seed=5)
    # a second source added after, and one added before (position must not matter: streams are keyed by name)
    after = generate_arrivals(workload(poisson("a", rate="300/s"), poisson("z", rate="50/s")), 3.0, seed=5)
    before = generate_arrivals(workload(poisson("z", rate="50/s"), poisson("a", rate="300/s")), 3.0, seed=5)
    assert np.array_equal(after.time[after.source == 0], alone.time)
    assert np.array_equal(before.time[before.source == 1], alone.time)
    assert after.source_names == ("a", "z") and before.source_names == ("z", "a")
    assert np.sum(after.source == 1) > 0  # the added source did send


def test_merged_sources_are_sorted_and_labelled():
    arrivals = generate_arrivals(MIXED, 3.0, seed=7)
    assert np.all(np.diff(arrivals.time) >= 0)
    assert set(np.unique(arrivals.source)) == {0, 1, 2}
    assert arrivals.source_names == ("a", "b", "c")


# --- deadlines, classes, sizes ----------------------------------------------


def test_deadlines_are_absolute_arrival_plus_deadline_and_inf_without_one():
    w = workload(
        poisson("urgent", rate="200/s", deadline="20 ms", priority=3, **{"class": "gold"}),
        poisson("relaxed", rate="200/s"),
        poisson("medium", rate="200/s", deadline="150 ms", **{"class": "gold"}),
    )
    arrivals = generate_arrivals(w, 2.0, seed=1)
    by = {name: arrivals.source == i for i, name in enumerate(arrivals.source_names)}
    assert np.allclose(arrivals.deadline[by["urgent"]], arrivals.time[by["urgent"]] + 0.020, rtol=0, atol=1e-12)
    assert np.allclose(arrivals.deadline[by["medium"]], arrivals.time[by["medium"]] + 0.150, rtol=0, atol=1e-12)
    assert np.all(np.isinf(arrivals.deadline[by["relaxed"]]))
    assert arrivals.class_names == ("gold", "default")
    assert np.all(arrivals.klass[by["urgent"]] == 0) and np.all(arrivals.klass[by["medium"]] == 0)
    assert np.all(arrivals.klass[by["relaxed"]] == 1)
    assert np.all(arrivals.priority[by["urgent"]] == 3) and np.all(arrivals.priority[by["relaxed"]] == 0)
    assert np.all(arrivals.size == 1000.0)


# --- trace files that cannot be arrivals (issue 9) ------------------------------

from sim.scenario.work import DEFAULT_WORK_LIMIT, WorkEstimate, estimate_work, expected_arrivals  # noqa: E402
from sim.workload import WorkloadTooLarge, read_trace  # noqa: E402


def _trace_source(file: str = "t.csv", **extra):
    return workload({"name": "t", "kind": "trace", "file": file, **extra}).sources[0]


@pytest.mark.parametrize("content, field, fragments", [
    (b"timestamp\n0.1\nsoon\n", "time_column", ("column 'timestamp', row 2", "finite time in s", "'soon'")),
    (b"timestamp,size\n0.1,5\n0.2,6,7\n", "file", ("header's 2 fields", "line 3")),
    (b"timestamp,size\n0.1,5\n0.2\n", "size_column", ("column 'size', row 2", "empty value")),
    (b"timestamp,size\n", "file", ("header but no rows",)),
    (b"", "file", ("is empty",)),
    (b"timestamp\n0.1\nnan\n", "time_column", ("row 2", "'nan'")),
    (b"timestamp\n0.1\ninf\n", "time_column", ("row 2", "'inf'")),
    (b"timestamp\n0.1\n0.\x002\n", "file", ("line 3", "NUL byte")),
    (b"timestamp,note\n0.1,caf\xe9\n", "file", ("line 2", "0xe9 is not UTF-8")),
    (b"timestamp,size\n0.1,5\n0.2,-1\n", "size_column", ("row 2", ">= 0", "'-1'")),
    (b"time\n0.1\n", "time_column", ("no column 'timestamp'", "its columns: time")),
])
def test_a_bad_trace_names_the_file_the_field_and_the_row(tmp_path, content, field, fragments):
    (tmp_path / "t.csv").write_bytes(content)
    size_column = "size" if b"size" in content else None
    with pytest.raises(TraceError) as caught:
        read_trace(_trace_source(size_column=size_column), tmp_path / "t.csv")
    assert caught.value.field == field
    assert str(tmp_path / "t.csv") in str(caught.value)
    for fragment in fragments:
        assert fragment in caught.value.message


def test_a_trace_with_rows_in_any_order_replays_sorted(tmp_path):
    (tmp_path / "t.csv").write_text("timestamp,size\n10.5,300\n10.0,100\n10.25,200\n")
    times, sizes = read_trace(_trace_source(size_column="size"), tmp_path / "t.csv")
    assert times.tolist() == [0.0, 0.25, 0.5] and sizes.tolist() == [100, 200, 300]


# --- the size of a run, judged before it starts (issue 9) -------------------------


def test_a_huge_workload_is_refused_before_anything_is_drawn():
    # 1e8/s for a day is 8.6e12 arrivals: drawing them would need ~70 TB; the refusal is immediate
    with pytest.raises(WorkloadTooLarge, match=r"about 8.64e\+12 arrivals"):
        generate_arrivals(workload(poisson(rate="1e8/s")), 86400.0, seed=1)
    with pytest.raises(WorkloadTooLarge):
        generate_arrivals(workload({"name": "cams", "kind": "periodic", "streams": 1_000_000,
                                    "rate": "1000 fps", "payload": "1 KB"}), 3600.0, seed=1)


def test_a_large_poisson_draw_is_made_in_bounded_blocks_with_the_right_count():
    rate, duration = 3e6, 1.0  # 3e6 arrivals: more than one block of gaps
    n = len(generate_arrivals(workload(poisson(rate="3e6/s")), duration, seed=5))
    assert abs(n - rate * duration) < 5 * math.sqrt(rate * duration)


def test_expected_arrivals_per_source_kind(tmp_path):
    sources = workload(
        poisson("p", rate="200/s"),
        {"name": "c", "kind": "periodic", "streams": 4, "rate": ["10 fps", "30 fps"], "payload": "1 KB"},
        {"name": "m", "kind": "mmpp", "rates": ["100/s", "0/s"], "dwell": ["1 s", "3 s"], "payload": "1 KB"},
    ).sources
    assert expected_arrivals(sources[0], 10.0) == pytest.approx(2000)
    assert expected_arrivals(sources[1], 10.0) == pytest.approx(4 * (20 * 10 + 1))
    assert expected_arrivals(sources[2], 10.0) == pytest.approx(100 * 1 / 4 * 10)
    (tmp_path / "t.csv").write_text("timestamp\n0\n1\n2\n30\n")
    assert expected_arrivals(_trace_source(), 10.0, tmp_path) == 3


def test_expected_arrivals_match_what_is_drawn():
    mixed = MIXED.sources
    drawn = np.mean([len(generate_arrivals(MIXED, 20.0, seed=s)) for s in range(5)])
    expected = sum(expected_arrivals(s, 20.0) for s in mixed)
    assert drawn == pytest.approx(expected, rel=0.05)


def test_estimate_work_multiplies_arrivals_stages_and_replications():
    from sim.scenario.schema import Scenario

    scenario = Scenario.model_validate({
        "name": "w",
        "hardware": {"pools": {"cpu": {"profile": "host-cpu"}}},
        "workload": {"sources": [poisson(rate="1000/s")]},
        "pipeline": {"stages": [{"name": "a", "costs": {"cpu": "1 ms"}}, {"name": "b", "costs": {"cpu": "1 ms"}}]},
        "run": {"duration": "60 s", "replications": 5},
    })
    estimate = estimate_work(scenario)
    assert estimate == WorkEstimate(arrivals=60_000, stages=2, replications=5)
    assert estimate.work == 600_000 and not estimate.exceeds()
    assert "6e+05 request-stages (6e+04 arrivals x 2 stages x 5 replications)" in estimate.describe()
    huge = scenario.model_copy(update={"run": scenario.run.model_copy(update={"duration": 86400.0})})
    assert estimate_work(huge).exceeds(DEFAULT_WORK_LIMIT)
    assert "GB of memory" in estimate_work(huge).describe()
