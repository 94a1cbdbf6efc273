"""Calibration: fitting, the file format, the simulator's use of it, and a real quick run.

The fitting must recover known parameters from noisy synthetic samples
(Hypothesis); the residual sampler must reproduce the quantiles it stores;
a calibration file must round-trip and fail loudly, naming the file and
the field, when it is malformed or mismatched; a scenario that references
an entry must simulate with the entry's mean and report a missing entry as
invalid input (exit 2). The stability rule is checked on synthetic streams,
and one short real ``--quick``-style calibration runs on this machine with
small models and frames (about 15 s: it starts the runner's two workers).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hil.calibrate.fit import affine_entry, fit_affine
from hil.calibrate.host_cost import Effort
from hil.calibrate.measure import Measurement, Settings
from hil.calibrate.scenario import CalibrateOptions, calibrate_scenario
from hil.calibrate.command import calibrate_command
from hil.calibrate.fit import distribution_entry
from hil.calibrate.measure import measure, settled
from hil.models import DetectorSpec, PrefilterSpec, build_detector, build_prefilter
from sim.calibration import (
    AffineEntry,
    CalibratedCost,
    CalibrationError,
    CalibrationFile,
    Method,
    Provenance,
    load_calibration,
    write_calibration,
)
from sim.cli import app as dgsim_app
from sim.experiment import run_replication
from sim.plan import compile_plan
from sim.scenario.errors import ScenarioError
from sim.scenario.load import load_scenario_file

ROOT = Path(__file__).parent.parent
SYNTHETIC = "synthetic samples for tests, not a measurement"


def synthetic_measurement(samples, stable: bool = True, windows: int = 3) -> Measurement:
    return Measurement(np.asarray(samples, dtype=float), (float(np.mean(samples)),) * windows, stable)


def noisy_points(a: float, b: float, xs, noise: float, rng: np.random.Generator, n: int = 30):
    """Samples of (a + b x) times a ratio noise uniform in [1 - noise, 1 + noise]: mean ratio 1."""
    return [(float(x), synthetic_measurement((a + b * x) * (1 + noise * rng.uniform(-1, 1, n)))) for x in xs]


def calibration_file(entries: dict) -> CalibrationFile:
    return CalibrationFile(
        format="dgsim-calibration/1",
        provenance=Provenance(host="test", cpu_model="none", cores=1, versions={"python": "3"},
                              date="2026-01-01T00:00:00+00:00", notes=[SYNTHETIC]),
        method=Method(warmup_s=0, window_samples=30, window_s=1, max_windows=3, consecutive=3, tolerance=0.1),
        entries=entries,
    )


def synthetic_file(path: Path) -> Path:
    """infer: 2 ms + 0.5 ms per item; tcp: 20 us + 1 ns per byte; parse: a latency around 100 us."""
    rng = np.random.default_rng(7)
    entries = {
        "infer": affine_entry(noisy_points(2e-3, 5e-4, range(1, 9), 0.1, rng), "batch", SYNTHETIC),
        "tcp": affine_entry(noisy_points(20e-6, 1e-9, [64, 4096, 65536, 1 << 20], 0.1, rng), "bytes", SYNTHETIC),
        "parse": distribution_entry(synthetic_measurement(rng.gamma(4.0, 25e-6, 400)), SYNTHETIC),
    }
    return write_calibration(calibration_file(entries), path)


# --- fitting ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(a=st.floats(1e-6, 1e-1), slope=st.floats(0.0, 4.0), noise=st.floats(0.0, 0.3),
       bytes_fit=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_fit_recovers_known_parameters_within_a_noise_scaled_tolerance(a, slope, noise, bytes_fit, seed):
    xs = [64, 1024, 16384, 262144, 4 << 20] if bytes_fit else list(range(1, 17))
    b = slope * a / max(xs)  # the slope's share of the largest time ranges from 0 to 4x the intercept
    points = noisy_points(a, b, xs, noise, np.random.default_rng(seed))
    x = np.concatenate([np.full(len(m.samples), xi) for xi, m in points])
    y = np.concatenate([m.samples for _, m in points])
    fa, fb = fit_affine(x, y)
    span = a + b * max(xs)
    tolerance = 0.5 * noise + 1e-9  # ~5 standard errors: ratio noise sd noise / sqrt(3), 30 samples per x
    assert abs(fa - a) <= tolerance * span
    assert abs(fb - b) * max(xs) <= tolerance * span
    entry = affine_entry(points, "bytes" if bytes_fit else "batch", SYNTHETIC)
    assert entry.mape <= noise + 1e-9 and entry.n == len(y)
    if noise == 0:
        assert entry.residual.values[0] == pytest.approx(1) and entry.residual.values[-1] == pytest.approx(1)


def test_fit_needs_two_distinct_x_and_positive_latencies():
    with pytest.raises(ValueError, match="two or more distinct x"):
        fit_affine(np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match="positive"):
        fit_affine(np.array([1, 2]), np.array([1.0, -1.0]))


def test_the_sampler_reproduces_the_stored_quantiles_and_mean(tmp_path):
    calibration = load_calibration(synthetic_file(tmp_path / "c.yaml"))
    rng = np.random.default_rng(3)
    for name, x in (("infer", 4), ("parse", 1)):
        cost = CalibratedCost("c.yaml", name, calibration.entries[name])
        sampler = cost.sampler(rng)
        draws = np.array([sampler.sample(x) for _ in range(200_000)])
        entry = cost.entry
        stored = entry.residual if isinstance(entry, AffineEntry) else entry.quantiles
        base = entry.fitted(x) if isinstance(entry, AffineEntry) else 1.0
        found = np.quantile(draws / base, stored.levels[1:-1])
        spread = stored.values[-1] - stored.values[0]
        assert np.allclose(found, stored.values[1:-1], atol=0.01 * spread)
        assert draws.min() >= stored.values[0] * base * (1 - 1e-12)
        assert draws.max() <= stored.values[-1] * base * (1 + 1e-12)
        assert np.mean(draws) == pytest.approx(cost.mean(x), rel=0.005)


# --- the file ---------------------------------------------------------------------------


def test_a_calibration_file_round_trips(tmp_path):
    path = synthetic_file(tmp_path / "c.yaml")
    first = load_calibration(path)
    again = write_calibration(first, tmp_path / "again.yaml")
    assert load_calibration(again) == first
    assert yaml.safe_load(path.read_text())["format"] == "dgsim-calibration/1"


def _broken(tmp_path: Path, edit) -> Path:
    document = yaml.safe_load(synthetic_file(tmp_path / "good.yaml").read_text())
    edit(document)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("edit, field, message", [
    (lambda d: d.update(format="dgsim-calibration/2"), "format", "version 'dgsim-calibration/2' is not supported"),
    (lambda d: d.pop("format"), "format", "missing; expected 'dgsim-calibration/1'"),
    (lambda d: d.update(format="something-else"), "format", "expected 'dgsim-calibration/1'"),
    (lambda d: d["entries"]["infer"].pop("a"), "entries.infer.a", "required field is missing"),
    (lambda d: d["entries"]["infer"].update(x="frames"), "entries.infer.x", "'batch' or 'bytes'"),
    (lambda d: d["entries"]["parse"]["quantiles"].update(levels=[0.5, 0.2] + [1.0] * 17), "entries.parse.quantiles",
     "levels must increase strictly from 0 to 1"),
    (lambda d: d["entries"]["tcp"].update(speed=3), "entries.tcp.speed", "unknown field"),
])
def test_malformed_or_mismatched_files_name_the_file_and_the_field(tmp_path, edit, field, message):
    path = _broken(tmp_path, edit)
    with pytest.raises(CalibrationError) as caught:
        load_calibration(path)
    text = str(caught.value)
    assert f"calibration file {path}: {field}: " in text and message in text


def test_not_yaml_and_missing_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: [unclosed\n")
    with pytest.raises(CalibrationError, match=r"bad.yaml: line \d+: not valid YAML"):
        load_calibration(bad)
    with pytest.raises(CalibrationError, match="nothere.yaml: file not found"):
        load_calibration(tmp_path / "nothere.yaml")


# --- scenarios that reference it ---------------------------------------------------------


def _scenario(tmp_path: Path, cost_entry: str = "parse", latency_entry: str = "tcp", extra_link: str = "") -> Path:
    synthetic_file(tmp_path / "calib" / "host.yaml")
    path = tmp_path / "calibrated.yaml"
    path.write_text(f"""
name: calibrated
hardware:
  pools: {{cpu: {{profile: host-cpu, cores: 1}}}}
  links:
    - {{name: net, between: [client, cpu], kind: tcp,
       latency: {{kind: calibrated, file: calib/host.yaml, entry: {latency_entry}}}{extra_link}}}
workload:
  sources: [{{name: in, kind: poisson, rate: 20/s, payload: 100 KB}}]
pipeline:
  stages:
    - {{name: work, costs: {{cpu: {{kind: calibrated, file: calib/host.yaml, entry: {cost_entry}}}}}}}
  reply: 1 KB
run: {{duration: 40 s, warmup: 1 s, drain: 1 s, seed: 3, replications: 1}}
""")
    return path


def test_a_scenario_samples_its_stage_and_link_from_the_calibration(tmp_path):
    path = _scenario(tmp_path)
    scenario_file = load_scenario_file(path)
    plan = compile_plan(scenario_file.resolve("base"), str(path), path.parent)
    calibration = load_calibration(tmp_path / "calib" / "host.yaml")
    service = plan.stages[0].costs["cpu"]
    assert isinstance(service, CalibratedCost) and service.mean(1) == pytest.approx(calibration.entries["parse"].mean())
    tcp = calibration.entries["tcp"]
    link = plan.links[0]
    q0 = tcp.residual.values[0]  # the link is held for the fastest ratio; the rest arrives as latency
    assert link.overhead == pytest.approx(q0 * tcp.a) and link.bandwidth == pytest.approx(1 / (q0 * tcp.b))
    _, metrics = run_replication(plan, 0)
    assert metrics["stage.work.service"] == pytest.approx(service.mean(1), rel=0.03)
    expected = tcp.mean(100e3) + service.mean(1) + tcp.mean(1e3)  # an idle link takes (a + b n) r as measured
    assert metrics["latency.mean"] == pytest.approx(expected, rel=0.05)  # light load: little queueing


def test_dgsim_run_simulates_a_calibrated_scenario_from_another_folder(tmp_path, monkeypatch):
    path = _scenario(tmp_path)
    monkeypatch.chdir(ROOT)  # calibration files are found relative to the scenario, not the working directory
    result = CliRunner().invoke(dgsim_app, ["run", str(path), "--jobs", "1", "--duration", "3 s",
                                            "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    link = yaml.safe_load((tmp_path / "out" / "resolved" / "base.yaml").read_text())["hardware"]["links"][0]
    assert link["latency"] == {"kind": "calibrated", "file": str(tmp_path / "calib" / "host.yaml"), "entry": "tcp"}


def test_a_link_bandwidth_given_beside_a_bytes_fit_overrides_the_fit(tmp_path):
    plan = compile_plan(load_scenario_file(_scenario(tmp_path, extra_link=", bandwidth: 1 GB/s")).resolve("base"),
                        "", tmp_path)
    tcp = load_calibration(tmp_path / "calib" / "host.yaml").entries["tcp"]
    assert plan.links[0].bandwidth == 1e9 and plan.links[0].overhead == pytest.approx(tcp.residual.values[0] * tcp.a)


def test_a_batch_fit_is_the_stage_cost_with_x_the_batch_size(tmp_path):
    plan = compile_plan(load_scenario_file(_scenario(tmp_path, cost_entry="infer")).resolve("base"), "", tmp_path)
    cost = plan.stages[0].costs["cpu"]
    entry = cost.entry
    assert cost.mean(4) == pytest.approx((entry.a + 4 * entry.b) * entry.residual.mean())


@pytest.mark.parametrize("cost_entry, latency_entry, extra, field, message", [
    ("missing", "tcp", "", "pipeline.stages[0].costs.cpu.entry", "has no entry 'missing'; it has: infer, tcp, parse"),
    ("tcp", "tcp", "", "pipeline.stages[0].costs.cpu.entry", "is a fit in bytes; a stage cost needs"),
    ("parse", "infer", "", "hardware.links[0].latency.entry", "is a fit in batch size; a link latency needs"),
    ("parse", "parse", "", "hardware.links[0].bandwidth", "required when no profile is given"),
])
def test_mismatched_references_are_scenario_problems(tmp_path, cost_entry, latency_entry, extra, field, message):
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(_scenario(tmp_path, cost_entry, latency_entry, extra))
    assert any(p.path == field and message in p.message for p in caught.value.problems), caught.value


def test_dgsim_run_with_a_missing_entry_exits_2_with_one_clear_line(tmp_path):
    path = _scenario(tmp_path, cost_entry="nope")
    result = CliRunner().invoke(dgsim_app, ["run", str(path), "--jobs", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert (f"{path}: pipeline.stages[0].costs.cpu.entry: calibration file {tmp_path / 'calib' / 'host.yaml'} "
            "has no entry 'nope'; it has: infer, tcp, parse") in " ".join(result.output.split())
    missing = _scenario(tmp_path)
    missing.write_text(missing.read_text().replace("calib/host.yaml", "calib/gone.yaml"))
    result = CliRunner().invoke(dgsim_app, ["run", str(missing), "--jobs", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "calib/gone.yaml: file not found" in result.output


# --- the stability rule -------------------------------------------------------------------


COUNTED = Settings(warmup_s=0, warmup_runs=0, window_samples=5, window_s=math.inf, min_window_samples=5,
                   max_windows=8)


def _stream(means):
    """A sampler whose successive windows of 5 samples have the given means."""
    values = iter([m for m in means for _ in range(5)])
    return lambda: next(values)


def test_stable_once_three_consecutive_windows_agree_within_ten_percent():
    assert settled([5.0, 1.0, 1.1, 1.05]) and not settled([1.0, 1.11, 1.0]) and not settled([1.0, 1.0])
    m = measure(_stream([3.0, 2.0, 1.0, 1.05, 1.1, 9.0]), COUNTED)
    assert m.stable and m.windows == 5 and len(m.samples) == 15 and m.mean == pytest.approx(1.05)


def test_a_stream_that_never_settles_is_reported_as_such():
    m = measure(_stream([1.0, 2.0] * 4), COUNTED)
    assert not m.stable and m.windows == COUNTED.max_windows and len(m.samples) == 15


def test_slow_samples_close_a_window_by_time():
    clock = iter(range(1000))
    m = measure(lambda: 1.0, Settings(warmup_s=0, warmup_runs=1, window_samples=100, window_s=2.5,
                                      min_window_samples=2, max_windows=5), clock=lambda: next(clock))
    assert m.stable and len(m.samples) < 300  # windows of a few samples, not 100


# --- the real thing, small --------------------------------------------------------------


@pytest.mark.slow
def test_a_quick_real_calibration_writes_a_valid_file_the_simulator_can_use(tmp_path):
    # the scenario's own pipeline and cores, with small models of the user's own (hil.model) and small frames
    (tmp_path / "prefilter.onnx").write_bytes(build_prefilter(PrefilterSpec(train_frames=64, epochs=1)).SerializeToString())
    (tmp_path / "detector.onnx").write_bytes(build_detector(DetectorSpec(input_size=64, num_classes=8)).SerializeToString())
    overrides = [f"pipeline.stages.prefilter.hil.model={tmp_path / 'prefilter.onnx'}",
                 f"pipeline.stages.infer.hil.model={tmp_path / 'detector.onnx'}",
                 "hil.frames.height=120", "hil.frames.width=160", "hil.frames.count=4", f"hil.cache={tmp_path}"]
    small = CalibrateOptions(quick=True, max_batch=2, sizes=(64, 65536), settings=Settings(
        warmup_s=0.05, warmup_runs=1, window_samples=10, window_s=0.1, min_window_samples=2, max_windows=4),
        host_effort=Effort(messages=20, budget_s=0.1, least=10, warmup=2))
    out = tmp_path / "calib" / "this-host.yaml"
    written = calibrate_scenario(ROOT / "scenarios" / "video-analytics-64.yaml", None, out, small, overrides)
    calibration = load_calibration(out)
    assert calibration == written and calibration.method.quick and calibration.provenance.variant == "dpu-offload"
    names = set(calibration.entries)
    assert {"parse", "preprocess", "prefilter", "infer", "postprocess", "transport.shm", "transport.tcp",
            "harness.overhead"} <= names
    infer = calibration.entries["infer"]
    assert infer.kind == "affine" and infer.x == "batch" and [p.x for p in infer.points] == [1.0, 2.0]
    assert "detector 64x64" in infer.measured and "gpu side" in infer.measured
    assert calibration.entries["transport.tcp"].x == "bytes"
    for kind in ("shm", "tcp"):  # each side's CPU time per message and byte, for a link's send/receive_cost
        for side in ("send", "receive"):
            entry = calibration.entries[f"host.{kind}.{side}"]
            assert entry.kind == "host_cost" and entry.side == side and entry.per_message > 0
    assert "dgsim hil run" in calibration.entries["harness.overhead"].measured
    assert calibration.provenance.versions["onnxruntime"] and calibration.provenance.cores >= 1
    # and a scenario can use what was measured
    document = yaml.safe_load((ROOT / "scenarios" / "video-analytics-64.yaml").read_text())
    for stage in document["pipeline"]["stages"]:
        stage["costs"] = {kind: {"kind": "calibrated", "file": "calib/this-host.yaml", "entry": stage["name"]}
                          for kind in stage["costs"]}
    scenario = tmp_path / "calibrated.yaml"
    scenario.write_text(yaml.safe_dump(document))
    plan = compile_plan(load_scenario_file(scenario).resolve("dpu-offload"), "", tmp_path)
    assert all(isinstance(cost, CalibratedCost) for stage in plan.stages for cost in stage.costs.values())


def test_the_command_rejects_bad_input_with_exit_2(tmp_path):
    app = typer.Typer()
    app.command("calibrate")(calibrate_command)
    app.callback()(lambda: None)
    runner = CliRunner()
    result = runner.invoke(app, ["calibrate", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "file not found" in result.output
    result = runner.invoke(app, ["calibrate", "video-analytics-64", "--variant", "nope"])
    assert result.exit_code == 2 and "no variant 'nope' (known: cpu-path, dpu-offload)" in result.output


# --- files that are not calibration cards (issue 9) ----------------------------------------


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 4, r"line 1: contains a NUL byte"),
    (b"format: dgsim-calibration/1\nformat: dgsim-calibration/1\n", r"line 2: duplicate key 'format'"),
    (b"format: dgsim-calibration/1\nnotes: caf\xe9\n", r"line 2: byte 0xe9 is not UTF-8"),
    (b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
        b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n" % ((c, c) + (c - 1,) * 10)
        for c in range(ord("b"), ord("j"))), r"line \d+: expands to more than"),
])
def test_a_binary_or_unsafe_calibration_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "calib.yaml"
    path.write_bytes(content)
    with pytest.raises(CalibrationError, match=rf"calibration file {path}: {message}"):
        load_calibration(path)


def test_an_infinite_figure_in_a_calibration_file_is_refused(tmp_path):
    path = synthetic_file(tmp_path / "calib.yaml")
    path.write_text(path.read_text().replace("tolerance: 0.1", "tolerance: .inf"))
    with pytest.raises(CalibrationError, match=r"method.tolerance: Input should be a finite number"):
        load_calibration(path)


def test_a_calibrated_cost_measured_on_another_profile_is_scaled_like_any_cost(tmp_path):
    from sim.profiles import DEVICES

    synthetic_file(tmp_path / "calib" / "host.yaml")
    path = tmp_path / "s.yaml"
    path.write_text("""
name: on-l4
hardware:
  pools: {gpu: {profile: l4}}
workload:
  sources: [{name: in, kind: poisson, rate: 20/s, payload: 1 KB}]
pipeline:
  stages:
    - {name: infer, costs: {gpu: {kind: calibrated, file: calib/host.yaml, entry: parse, on: l4}}}
policies: {placement: {strategy: explicit, map: {infer: gpu}}}
run: {duration: 10 s, warmup: 1 s, drain: 1 s, seed: 3, replications: 1}
""")
    plan = load_scenario_file(path).plan("base")
    measured = load_calibration(tmp_path / "calib" / "host.yaml").entries["parse"].mean()
    cost = plan.stages[0].costs["gpu"]
    assert cost.mean(1) == pytest.approx(measured * DEVICES["l4"].speed)  # as it would be on the reference A100
    _, metrics = run_replication(plan, 0)
    assert metrics["stage.infer.service"] == pytest.approx(measured, rel=0.05)  # on the L4: as measured
