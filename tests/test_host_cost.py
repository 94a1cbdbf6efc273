"""Host CPU costs of transports: the fit, a real measurement, and scenario links that use the entries.

The fit must recover a known per-message and per-byte cost from noisy
synthetic samples (and its confidence intervals must cover them); a short
real measurement over the shared-memory ring and TCP must find CPU time
that grows with the message on the receiving side, never exceeds the wall
time of the same calls, and fits with finite quality figures; a scenario
whose link names a ``host_cost`` entry must compile with the measured
numbers and charge them to the devices; a missing entry, one of the wrong
transport or the wrong side, or a host cost used as a stage cost or a link
latency, is one line naming the file and field, and ``dgsim run`` exits 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hil.calibrate.command import summary_table
from hil.calibrate.fit import affine_entry
from hil.calibrate.host_cost import (Effort, SideSamples, cuda_host_cost, fit_host_cost, host_cost_entries,
                                     host_cost_entry)
from hil.calibrate.measure import Measurement
from hil.transports import available_channel_kinds
from hil.transports.cuda_copy import probe_cuda
from hil.transports.rdma import RdmaUnsupported, probe_rdma
from sim.calibration import CalibrationFile, HostCostEntry, Method, Provenance, load_calibration, write_calibration
from sim.cli import app as dgsim_app
from sim.experiment import run_replication
from sim.plan import compile_plan
from sim.scenario.errors import ScenarioError
from sim.scenario.load import load_scenario_file

SYNTHETIC = "synthetic samples for tests, not a measurement"
SIZES = (64, 4096, 65536, 1 << 20, 4 << 20)


def synthetic_samples(a: float, b: float, noise: float, rng: np.random.Generator, n: int = 200) -> list[SideSamples]:
    """CPU seconds (a + b * size) times a ratio uniform in [1 - noise, 1 + noise]; wall = CPU + a wait."""
    out = []
    for size in SIZES:
        cpu = (a + b * size) * (1 + noise * rng.uniform(-1, 1, n))
        out.append(SideSamples(size, cpu, cpu + rng.exponential(20e-6, n)))
    return out


# --- the fit ------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b, noise, seed", [
    (5e-6, 0.2e-9, 0.1, 1),  # a shared-memory copy: 5 us + 0.2 ns per byte
    (40e-6, 1.5e-9, 0.3, 2),  # a kernel TCP stack, noisier
    (2e-6, 0.0, 0.05, 3),  # zero-copy: nothing per byte
])
def test_the_fit_recovers_known_per_message_and_per_byte_costs(a, b, noise, seed):
    samples = synthetic_samples(a, b, noise, np.random.default_rng(seed))
    fit = fit_host_cost(np.concatenate([np.full(len(s.cpu), s.size) for s in samples]),
                        np.concatenate([s.cpu for s in samples]))
    assert fit.per_message == pytest.approx(a, rel=0.05)
    assert fit.per_byte == pytest.approx(b, rel=0.05, abs=1e-13)
    assert fit.per_message_ci[0] <= a <= fit.per_message_ci[1]
    assert fit.per_byte_ci[0] <= b <= fit.per_byte_ci[1]
    assert fit.per_message_ci[1] - fit.per_message_ci[0] < a  # a useful interval, not an infinite one
    assert fit.n == len(SIZES) * 200 and fit.r2 > 0.99 - (b == 0) and fit.mape < 0.05


def test_the_fit_needs_two_sizes_and_positive_times():
    with pytest.raises(ValueError, match="two or more distinct sizes"):
        fit_host_cost(np.full(10, 64.0), np.full(10, 1e-6))
    with pytest.raises(ValueError, match="must be positive"):
        fit_host_cost(np.array([64.0, 64, 128, 128]), np.array([0.0, 0, 1e-6, 1e-6]))


# --- a real measurement ----------------------------------------------------------------------

SHORT = Effort(messages=20, budget_s=0.2, least=10, warmup=3)


def check_real_entry(entry: HostCostEntry, kind: str) -> None:
    assert entry.transport == kind
    assert entry.n >= 20 and all(np.isfinite([entry.per_message, entry.per_byte, entry.r2, entry.mape]))
    assert entry.per_message > 0, entry
    assert entry.per_message_ci[0] <= entry.per_message <= entry.per_message_ci[1]
    for point in entry.points:  # CPU time is measured inside the wall-clock window of the same call
        assert 0 < point.cpu_mean <= point.wall_mean + 1e-6
    assert "thread_time" in entry.measured


def check_real_channel(kind: str) -> None:
    entries = host_cost_entries(kind, (1024, 4 << 20), SHORT)
    assert set(entries) == {f"host.{kind}.send", f"host.{kind}.receive"}
    for name, entry in entries.items():
        check_real_entry(entry, kind)
        assert name.endswith(entry.side)
    receive = entries[f"host.{kind}.receive"]  # the receiver copies every byte out (as the harness does)
    small, large = receive.points
    assert large.bytes == 4 << 20 and large.cpu_mean > small.cpu_mean and receive.per_byte > 0


@pytest.mark.parametrize("kind", ["shm", "tcp"])
def test_a_real_measurement_finds_cpu_time_per_message_and_per_byte(kind):
    if kind not in available_channel_kinds():
        pytest.skip(f"{kind} is not available here")
    check_real_channel(kind)


@pytest.mark.rdma
def test_a_real_rdma_measurement_on_an_active_port():
    ports = probe_rdma()
    if not any(port.available for port in ports):
        pytest.skip("; ".join(port.detail for port in ports))
    try:
        check_real_channel("rdma")
    except RdmaUnsupported as error:
        pytest.skip(str(error))


@pytest.mark.gpu
def test_a_real_cuda_copy_costs_the_host_cpu_time():
    cuda = probe_cuda()
    if not cuda.available:
        pytest.skip(cuda.detail)
    entry = cuda_host_cost((1024, 1 << 20), SHORT)
    check_real_entry(entry, "cuda")
    assert entry.side == "send" and entry.points[1].cpu_mean > entry.points[0].cpu_mean  # the staging copy


# --- scenarios that use the entries ------------------------------------------------------------


def calibration_with_host_costs(path: Path) -> Path:
    rng = np.random.default_rng(11)
    entries = {
        "host.shm.send": host_cost_entry("shm", "send", synthetic_samples(5e-6, 0.2e-9, 0.1, rng), SYNTHETIC),
        "host.shm.receive": host_cost_entry("shm", "receive", synthetic_samples(3e-6, 0.3e-9, 0.1, rng), SYNTHETIC),
        "host.tcp.send": host_cost_entry("tcp", "send", synthetic_samples(40e-6, 1e-9, 0.1, rng), SYNTHETIC),
        "transport.shm": affine_entry([(float(n), Measurement(np.full(10, 20e-6 + 0.1e-9 * n), (1.0,), True))
                                       for n in SIZES], "bytes", SYNTHETIC),
    }
    calibration = CalibrationFile(
        format="dgsim-calibration/1",
        provenance=Provenance(host="test", cpu_model="none", cores=1, versions={"python": "3"},
                              date="2026-01-01T00:00:00+00:00", notes=[SYNTHETIC]),
        method=Method(warmup_s=0, window_samples=30, window_s=1, max_windows=3, consecutive=3, tolerance=0.1),
        entries=entries,
    )
    return write_calibration(calibration, path)


def scenario(tmp_path: Path, send: str = "host.shm.send", receive: str = "host.shm.receive", kind: str = "shm",
             stage_cost: str = "0.5 ms", costs: bool = True) -> Path:
    calibration_with_host_costs(tmp_path / "calib" / "host.yaml")
    path = tmp_path / ("host-costs.yaml" if costs else "no-host-costs.yaml")
    host_costs = (f""",
       send_cost: {{kind: calibrated, file: calib/host.yaml, entry: {send}}},
       receive_cost: {{kind: calibrated, file: calib/host.yaml, entry: {receive}}}""" if costs else "")
    path.write_text(f"""
name: host-costs
hardware:
  pools: {{dpu: {{profile: bluefield-3, cores: 2}}, host: {{profile: host-cpu, cores: 1}}}}
  links:
    - {{name: to-gpu, between: [dpu, host], kind: {kind}, bandwidth: 10 GB/s{host_costs}}}
workload:
  sources: [{{name: in, kind: poisson, rate: 50/s, payload: 1 MB}}]
pipeline:
  stages:
    - {{name: prep, costs: {{dpu: {stage_cost}}}, output: 1 MB}}
    - {{name: infer, costs: {{cpu: 1 ms}}}}
  reply: 0 B
run: {{duration: 4 s, warmup: 0.5 s, drain: 1 s, seed: 5, replications: 1}}
""")
    return path


def test_a_link_takes_its_host_costs_from_the_calibration(tmp_path):
    path = scenario(tmp_path)
    plan = compile_plan(load_scenario_file(path).resolve("base"), str(path), path.parent)
    entries = load_calibration(tmp_path / "calib" / "host.yaml").entries
    link = next(link for link in plan.links if link.name == "to-gpu")
    assert link.send_cost == (entries["host.shm.send"].per_message, entries["host.shm.send"].per_byte)
    assert link.receive_cost == (entries["host.shm.receive"].per_message, entries["host.shm.receive"].per_byte)
    # the measured costs are charged: each end's cores are busier by its CPU time for each 1 MB message
    _, with_costs = run_replication(plan, 0)
    plain = scenario(tmp_path, costs=False)
    _, without = run_replication(compile_plan(load_scenario_file(plain).resolve("base"), str(plain), plain.parent), 0)
    for pool, side, servers in (("dpu", "send", 2), ("host", "receive", 1)):
        busier = with_costs[f"utilisation.pool.{pool}"] - without[f"utilisation.pool.{pool}"]
        cpu = entries[f"host.shm.{side}"].cpu(1e6)  # the same arrivals: 50 messages/s of 1 MB
        assert busier == pytest.approx(50 * cpu / servers, rel=0.25), (pool, busier)


def test_dgsim_run_writes_the_calibration_reference_so_it_loads_back(tmp_path):
    path = scenario(tmp_path)
    result = CliRunner().invoke(dgsim_app, ["run", str(path), "--jobs", "1", "--duration", "1 s",
                                            "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    link = yaml.safe_load((tmp_path / "out" / "resolved" / "base.yaml").read_text())["hardware"]["links"][0]
    assert link["send_cost"] == {"kind": "calibrated", "file": str(tmp_path / "calib" / "host.yaml"),
                                 "entry": "host.shm.send"}


@pytest.mark.parametrize("changes, field, message", [
    ({"send": "host.rdma.send"}, "send_cost.entry", "has no entry 'host.rdma.send'; it has: host.shm.send, "
                                                    "host.shm.receive, host.tcp.send, transport.shm"),
    ({"send": "transport.shm"}, "send_cost.entry", "is a latency entry (affine); send_cost needs a host_cost entry"),
    ({"send": "host.tcp.send"}, "send_cost.entry", "was measured on transport tcp, but the link is of kind shm: "
                                                   "expected host.shm.send"),
    ({"send": "host.shm.receive"}, "send_cost.entry", "is the receive side's CPU cost; send_cost needs the send "
                                                      "side's (e.g. host.shm.send)"),
    ({"receive": "host.tcp.send"}, "receive_cost.entry", "is the send side's CPU cost"),
    ({"kind": "tcp"}, "send_cost.entry", "measured on transport shm, but the link is of kind tcp: "
                                         "expected host.tcp.send"),
])
def test_a_wrong_host_cost_reference_is_one_problem_naming_the_field(tmp_path, changes, field, message):
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(scenario(tmp_path, **changes))
    problems = caught.value.problems
    assert len(problems) == (2 if "kind" in changes else 1)  # a tcp link: both shm entries are the wrong transport
    assert problems[0].path == f"hardware.links[0].{field}" and message in problems[0].message


def test_a_host_cost_is_neither_a_stage_cost_nor_a_link_latency(tmp_path):
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(scenario(tmp_path, stage_cost="{kind: calibrated, file: calib/host.yaml, "
                                                          "entry: host.shm.send}"))
    assert "is a transport's host CPU cost; a stage cost needs" in str(caught.value)
    path = scenario(tmp_path)
    path.write_text(path.read_text().replace("bandwidth: 10 GB/s,", "bandwidth: 10 GB/s, latency: {kind: calibrated, "
                                             "file: calib/host.yaml, entry: host.shm.send},"))
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(path)
    assert [p.path for p in caught.value.problems] == ["hardware.links[0].latency.entry"]
    assert "is a transport's host CPU cost; a link latency needs" in str(caught.value)


def test_dgsim_run_with_a_missing_host_cost_entry_exits_2_with_one_line(tmp_path):
    path = scenario(tmp_path, send="host.shm.sned")
    result = CliRunner().invoke(dgsim_app, ["run", str(path), "--jobs", "1", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert (f"{path}: hardware.links[0].send_cost.entry: calibration file {tmp_path / 'calib' / 'host.yaml'} has no "
            "entry 'host.shm.sned'") in " ".join(result.output.split())


def test_host_cost_entries_round_trip_and_summarise(tmp_path):
    path = calibration_with_host_costs(tmp_path / "c.yaml")
    calibration = load_calibration(path)
    entry = calibration.entries["host.tcp.send"]
    assert isinstance(entry, HostCostEntry) and entry.cpu(0) == entry.per_message
    assert calibration.unstable() == []
    text = " ".join(str(cell) for column in summary_table(calibration, path).columns for cell in column._cells)
    assert "ns per byte" in text


def test_a_mistyped_host_cost_names_the_users_field_not_the_unions_tag(tmp_path):
    path = scenario(tmp_path)
    text = path.read_text().replace("send_cost: {kind: calibrated, file: calib/host.yaml, entry: host.shm.send}",
                                    "send_cost: {per_mesage: 1 us}")
    path.write_text(text.replace("kind: calibrated, file: calib/host.yaml, entry: host.shm.receive", "kind: calibrate"))
    with pytest.raises(ScenarioError) as caught:
        load_scenario_file(path)
    assert [(p.path, p.message) for p in caught.value.problems][:2] == [
        ("hardware.links[0].send_cost.per_mesage", "unknown key 'per_mesage'; expected one of: per_message, "
                                                   "copy_rate, copies"),
        ("hardware.links[0].receive_cost.kind", "Input should be 'calibrated', got 'calibrate'"),
    ]


def test_a_topology_link_takes_its_host_costs_from_the_calibration_too(tmp_path):
    path = scenario(tmp_path)
    document = yaml.safe_load(path.read_text())
    hardware = document.pop("hardware")
    document["hardware"] = {}
    document["topology"] = {"sites": {"here": {"nodes": {"box": hardware}}}}
    path.write_text(yaml.safe_dump(document))
    plan = compile_plan(load_scenario_file(path).resolve("base"), str(path), path.parent)
    send = load_calibration(tmp_path / "calib" / "host.yaml").entries["host.shm.send"]
    assert [link.send_cost for link in plan.links] == [(send.per_message, send.per_byte)]
    result = CliRunner().invoke(dgsim_app, ["run", str(path), "--jobs", "1", "--duration", "1 s",
                                            "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((tmp_path / "out" / "resolved" / "base.yaml").read_text())
    link = resolved["topology"]["sites"]["here"]["nodes"]["box"]["links"][0]
    assert link["send_cost"]["file"] == str(tmp_path / "calib" / "host.yaml")
