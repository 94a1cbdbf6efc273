"""``dgsim capacity`` against closed forms, and its answers to bad input.

Known answers (parameters of our own, small runs so that tests stay fast):

- M/M/1, service rate mu, p99 budget T: the sojourn time is exponential
  with rate mu - lambda, so p99 = ln(100) / (mu - lambda) and the capacity
  is mu - ln(100) / T;
- M/M/c, mean-latency budget T: the capacity is the arrival rate at which
  the Erlang C mean sojourn time equals T (solved with scipy's brentq).

The search reports a bracket: ``low`` passed every budget, ``high`` did not
(FAIL, or INCONCLUSIVE at the replication cap). The truth must lie in that
bracket widened by the confidence interval: at or above ``low``, and at or
below ``high`` unless the binding budget's interval at ``high`` contains
the closed form there (an INCONCLUSIVE probe may sit below the capacity);
and the search must not stop far below it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy.optimize import brentq
from typer.testing import CliRunner

from sim.capacity import offered_loads
from sim.cli import app
from sim.explore.capacity import Probe, complete, find_capacities, find_capacity, probe_verdict, replicate_probe
from sim.explore.capacity import search as search_
from sim.explore.executors import Serial
from sim.explore.load import load_axis, LoadAxis
from sim.check.budgets import MAX, Budget
from sim.check.verdict import Verdict
from sim.contract.metric_keys import ALL, Kind, MetricKey, Subject
from sim.scenario.errors import ScenarioError
from sim.scenario.load import load_scenario_file

QUEUE = """
name: {name}
hardware:
  pools:
    server: {{profile: host-cpu, cores: {servers}}}
workload:
  sources:
    - {{name: arrivals, kind: poisson, rate: {rate}/s, payload: 0 B}}
pipeline:
  stages:
    - name: serve
      costs: {{cpu: {{kind: exponential, mean: {service_ms} ms}}}}
slo:
  latency: {{{budget}}}
run: {{duration: {duration} s, warmup: 0.5 s, drain: 0.5 s, seed: 3, replications: 3}}
"""


def write(tmp_path: Path, **fields) -> Path:
    path = tmp_path / f"{fields['name']}.yaml"
    path.write_text(QUEUE.format(**fields))
    return path


def erlang_c_sojourn(arrival_rate: float, service_rate: float, servers: int) -> float:
    a = arrival_rate / service_rate
    rho = a / servers
    head = sum(a**k / math.factorial(k) for k in range(servers))
    tail = a**servers / math.factorial(servers) / (1 - rho)
    return tail / (head + tail) / (servers * service_rate - arrival_rate) + 1 / service_rate


def assert_brackets(result, truth: float, theory, floor: float) -> None:
    """``low`` is below the true capacity; ``high`` is above it, or its confidence interval holds the theory there.

    ``theory(load)`` is the closed-form value of the binding metric. A probe
    INCONCLUSIVE at ``high`` may sit below the true capacity (the metric can
    be flat in load, as a mean far from saturation is); its interval must
    then contain the closed form: the bracket widened by the CI.
    """
    search = result.search
    assert search.status == "bracketed"
    low, high = search.low.value, search.high.value
    assert search.low.verdict is Verdict.PASS and search.high.verdict is not Verdict.PASS
    assert low <= truth, (low, truth)
    binding = result.binding.estimate
    assert truth <= high or binding.low <= theory(high) <= binding.high, (high, truth, binding, theory(high))
    assert low >= floor * truth, f"stopped far below the truth: {low} vs {truth}"


@pytest.mark.slow
def test_mm1_p99_capacity_matches_closed_form(tmp_path):
    mu, budget = 800.0, 0.025  # 1.25 ms service, p99 <= 25 ms
    path = write(tmp_path, name="mm1", servers=1, rate=400, service_ms=1.25, budget="p99: 25 ms", duration=3)
    truth = mu - math.log(100) / budget  # 615.8/s
    result = find_capacity(load_scenario_file(path), "base", Serial(), tolerance=0.05, cap=6)
    assert result.axis.unit == "requests/s"
    assert result.bound == pytest.approx(mu)  # the analytic bound is the service rate
    assert result.bottleneck == Subject.pool("server") == result.bound_resource
    assert_brackets(result, truth, lambda lam: math.log(100) / (mu - lam), floor=0.75)


@pytest.mark.slow
def test_mmc_mean_latency_capacity_inverts_erlang_c(tmp_path):
    mu, servers, budget = 500.0, 3, 0.003  # 2 ms service, 3 servers, mean <= 3 ms
    path = write(tmp_path, name="mmc", servers=servers, rate=600, service_ms=2, budget="mean: 3 ms", duration=3)
    truth = brentq(lambda lam: erlang_c_sojourn(lam, mu, servers) - budget, 1.0, servers * mu - 1e-6)
    result = find_capacity(load_scenario_file(path), "base", Serial(), tolerance=0.04, cap=6)
    assert result.bound == pytest.approx(servers * mu)
    assert_brackets(result, truth, lambda lam: erlang_c_sojourn(lam, mu, servers), floor=0.85)
    utilisation = result.utilisation[Subject.pool("server")].mean
    assert utilisation == pytest.approx(result.value / (servers * mu), rel=0.05)


def test_inconclusive_probe_is_never_a_pass():
    axis = LoadAxis("requests/s", 100.0, False, ())
    verdicts = {lambda v: v <= 40: Verdict.PASS, lambda v: v <= 60: Verdict.INCONCLUSIVE}

    def measure(value: float) -> Probe:
        verdict = next((w for test, w in verdicts.items() if test(value)), Verdict.FAIL)
        return Probe(value, verdict, 3, (), {})

    search = search_(measure, axis, 100.0, 0.01)
    assert search.low.value <= 40 < search.high.value <= 60 * 1.01
    assert search.high.verdict is Verdict.INCONCLUSIVE
    assert all(p.verdict is Verdict.PASS for p in search.probes if p.value <= search.low.value)


def test_whole_streams_and_doubling_past_a_loose_bound():
    axis = LoadAxis("streams", 64.0, True, ())
    search = search_(lambda v: Probe(v, Verdict.PASS if v <= 90 else Verdict.FAIL, 3, (), {}), axis, 37.4, 0.02)
    assert (search.low.value, search.high.value) == (90.0, 91.0)
    assert all(p.value == int(p.value) for p in search.probes)


def test_nothing_passes_is_reported_below(tmp_path):
    axis = LoadAxis("streams", 8.0, True, ())
    search = search_(lambda v: Probe(v, Verdict.FAIL, 3, (), {}), axis, 16, 0.02)
    assert search.status == "below" and search.low is None and search.high.value == 1.0


def test_capacity_json_and_exit_codes(tmp_path):
    """capacity.json's fields; a pool and a link both named 'server' keep their own utilisation."""
    path = write(tmp_path, name="tiny", servers=1, rate=300, service_ms=1, budget="p99: 50 ms", duration=1.5)
    path.write_text(path.read_text().replace(
        "    server: {profile: host-cpu, cores: 1}\n",
        "    server: {profile: host-cpu, cores: 1}\n  links:\n    - {name: server, between: [client, server], "
        "kind: tcp, bandwidth: 100 MB/s, latency: {kind: deterministic, value: 10 us}}\n").replace(
        "payload: 0 B", "payload: 50 KB"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["capacity", str(path), "-o", str(out), "-j", "1", "--tolerance", "20%",
                                      "--max-replications", "3"])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "capacity.json").read_text())
    entry = document["variants"]["base"]
    assert set(entry) >= {"capacity", "binding_budget", "bottleneck", "utilisation", "cost_per_hour"}
    capacity = entry["capacity"]
    assert capacity["unit"] == "requests/s" and capacity["low"] <= capacity["high"]
    assert capacity["factor"] == pytest.approx(capacity["value"] / 300)
    assert entry["binding_budget"]["metric"] == "latency.p99"
    assert entry["bottleneck"] == {**entry["bottleneck"], "resource": "pool.server", "kind": "pool", "name": "server"}
    assert set(entry["utilisation"]) == {"pool.server", "link.server"}
    busy = entry["utilisation"]
    # 50 KB at 100 MB/s is 0.5 ms a request on the link, against 1 ms on the core: half as busy
    assert busy["link.server"]["mean"] == pytest.approx(busy["pool.server"]["mean"] / 2, rel=0.15)
    assert entry["analytic_bound"]["resource"] == "pool.server"
    metrics = entry["probes"][0]["metrics"]
    assert {"utilisation.pool.server", "utilisation.link.server", "latency.p99"} <= set(metrics)
    page = (out / "capacity.html").read_text()
    assert "pool server" in page or "pool.server" in page
    assert entry["cost_per_hour"] == pytest.approx(0.1008)  # one host core at the cited cloud price


@pytest.mark.parametrize("case, expected", [
    ("no-slo", "no latency, rate or utilisation budget"),
    ("trace", "cannot be scaled"),
    ("tolerance", "--tolerance"),
    ("unknown-path", "workload.sources[0].nope"),
    ("wrong-type", "workload.sources[0].rate"),
    ("unknown-variant", "no variant 'nope'"),
    ("dask-address", "expected 'local' or a scheduler address"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, case, expected):
    path = write(tmp_path, name="bad", servers=1, rate=300, service_ms=1, budget="p99: 50 ms", duration=1)
    args = ["capacity", str(path), "--no-plots", "-o", str(tmp_path / "o")]
    if case == "no-slo":
        path.write_text(path.read_text().replace("latency: {p99: 50 ms}", "latency: {}"))
    elif case == "trace":
        (tmp_path / "t.csv").write_text("timestamp\n0.0\n0.1\n")
        path.write_text(path.read_text().replace("{name: arrivals, kind: poisson, rate: 300/s, payload: 0 B}",
                                                 "{name: replay, kind: trace, file: t.csv}"))
    elif case == "unknown-path":
        args += ["--set", "workload.sources.arrivals.nope=1"]
    elif case == "wrong-type":
        args += ["--set", "workload.sources.arrivals.rate=fast"]
    elif case == "unknown-variant":
        args += ["--variant", "nope"]
    elif case == "dask-address":
        args += ["--dask", "localhost:8786"]
    else:
        args += ["--tolerance", "two percent"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.output
    assert "Traceback" not in result.output


def test_trace_axis_refuses_with_how_to_scale(tmp_path):
    (tmp_path / "t.csv").write_text("timestamp\n0.0\n0.1\n")
    path = write(tmp_path, name="t", servers=1, rate=300, service_ms=1, budget="p99: 50 ms", duration=1)
    path.write_text(path.read_text().replace("{name: arrivals, kind: poisson, rate: 300/s, payload: 0 B}",
                                             "{name: replay, kind: trace, file: t.csv}"))
    scenario = load_scenario_file(path).resolve("base")
    with pytest.raises(ScenarioError, match="speedup"):
        load_axis(scenario, str(path))


def test_search_starts_just_below_the_bound_and_stops_within_tolerance():
    """A design whose capacity is just under its bound is bracketed in two probes."""
    axis = LoadAxis("streams", 64.0, True, ())
    search = search_(lambda v: Probe(v, Verdict.PASS if v <= 75 else Verdict.INCONCLUSIVE, 3, (), {}),
                     axis, 75.4, 0.02)
    assert [p.value for p in search.probes] == [75.0, 76.0]
    assert (search.low.value, search.high.value, search.status) == (75.0, 76.0, "bracketed")
    # a pass just past the bound (a finite run's luck, or load shed): the next step is one tolerance again
    past = search_(lambda v: Probe(v, Verdict.PASS if v <= 70 else Verdict.FAIL, 3, (), {}), axis, 69.99, 0.02)
    assert [p.value for p in past.probes] == [69.0, 70.0, 71.0]
    continuous = LoadAxis("requests/s", 100.0, False, ())
    found = search_(lambda v: Probe(v, Verdict.PASS if v <= 500 else Verdict.FAIL, 3, (), {}), continuous, 800, 0.05)
    assert found.low.value <= 500 < found.high.value <= found.low.value * 1.05


def _runs(values: list[tuple[float, float]]) -> list[dict[str, float]]:
    return [{"latency.p99": p99, "utilisation.pool.server": busy, "requests.completed": 1000.0,
             "requests.deadline_missed": 0.0, "requests.arrived": 1000.0} for p99, busy in values]


def test_a_probe_stops_replicating_once_a_budget_fails():
    """One budget FAILs at the first look: the other, still undecided, is not worth more replications."""
    p99 = Budget(MetricKey(Kind.LATENCY, ALL, "p99"), 0.010, MAX, "latency p99")
    busy = Budget(MetricKey(Kind.UTILISATION, Subject.pool("server")), 0.80, MAX, "utilisation server")
    asked = []

    def run(reps: range):
        asked.append(reps)
        # p99 far over 10 ms; utilisation straddling 80%
        return _runs([(0.050 + 0.001 * r, 0.70 + 0.1 * (r % 3)) for r in reps])

    runs, outcomes = complete(replicate_probe([p99, busy], 3, 12), run)
    assert asked == [range(0, 3)] and len(runs) == 3
    assert [o.verdict for o in outcomes] == [Verdict.FAIL, Verdict.INCONCLUSIVE]
    assert probe_verdict(outcomes) is Verdict.FAIL
    asked.clear()
    runs, outcomes = complete(replicate_probe([busy], 3, 12), run)  # alone, the undecided budget doubles up to the cap
    assert [len(r) for r in asked] == [3, 3, 6] and probe_verdict(outcomes) is Verdict.INCONCLUSIVE


def test_probes_at_the_analytic_bound_get_no_more_than_run_replications(tmp_path):
    """A budget loose enough to pass near saturation: the search reaches the bound (within the 20% tolerance
    of it, or past it), where probes stop at run.replications (3) although the cap is 6."""
    path = write(tmp_path, name="loose", servers=1, rate=300, service_ms=1, budget="p99: 300 ms", duration=1.5)
    result = find_capacity(load_scenario_file(path), "base", Serial(), tolerance=0.2, cap=6)
    assert result.bound == pytest.approx(1000.0)
    near = [p for p in result.search.probes if p.at_bound]
    assert near and all(p.value >= 800 * (1 - 1e-9) for p in near)
    assert all(p.replications <= 3 for p in near)
    assert all(p.value < 800 for p in result.search.probes if not p.at_bound)


UPLINK = """
name: uplink-bound
hardware: {}
topology:
  sites:
    rack:
      nodes:
        srv:
          count: 2
          pools:
            dpu: {profile: bluefield-3}
            gpu: {profile: a100, count: 4}
          points: [switch]
          links:
            - {name: nic, between: [client, dpu], kind: tcp, bandwidth: 100 GB/s, latency: {kind: deterministic, value: 5 us}}
            - {name: uplink, between: [dpu, switch], kind: pcie, bandwidth: 1 GB/s,
               latency: {kind: deterministic, value: 1 us}, contention: fifo, sharing: shared}
            - {name: slot, between: [switch, gpu], kind: pcie, bandwidth: 25 GB/s,
               latency: {kind: deterministic, value: 1 us}, contention: fifo}
workload:
  sources:
    - {name: frames, kind: poisson, rate: 500/s, payload: 10 KB}
pipeline:
  stages:
    - {name: pre, costs: {dpu: {kind: deterministic, value: 100 us}}, output: 1 MB}
    - {name: infer, costs: {gpu: {kind: deterministic, value: 1 ms}}, output: 1 KB}
policies:
  placement: {strategy: dpu-offload}
slo:
  latency: {p99: 50 ms}
run: {duration: 2 s, warmup: 0.5 s, drain: 0.5 s, seed: 1, replications: 3}
"""


def test_the_bound_follows_topology_routes_to_a_shared_uplink(tmp_path):
    """Each server's DPU reaches its four GPUs through a switch: a 1 MB tensor per request crosses the
    server's 1 GB/s uplink (one channel for the four GPUs) and then a 25 GB/s slot. The uplink, which no
    direct DPU-GPU link names, saturates first: at 2 servers x 1 GB/s / 1 MB = 2000 requests/s, before
    the GPUs (2 x 4 x 1 ms: 8000/s) and the slots."""
    from sim.explore.bound import saturation
    from sim.experiment import run_variant

    path = tmp_path / "uplink.yaml"
    path.write_text(UPLINK)
    scenario_file = load_scenario_file(path)
    plan = scenario_file.plan("base")
    found = saturation(plan)
    assert found.resource == Subject.link("srv[0].uplink")
    assert found.rate == pytest.approx(2000.0, rel=1e-3)
    loads = {(load.kind, load.name): load for load in offered_loads(plan)}
    assert loads["link", "srv[1].uplink"].utilisation == pytest.approx(0.25, rel=1e-3)
    assert loads["link", "srv[0].slot"].capacity == 4  # per-pair: one channel per GPU on the route's last hop
    # the simulator agrees at the scenario's load
    measured = run_variant(scenario_file, "base", replications=range(1)).runs[0]
    assert measured["utilisation.link.srv[0].uplink"] == pytest.approx(0.25, rel=0.1)
    assert measured["utilisation.link.srv[1].uplink"] == pytest.approx(0.25, rel=0.1)


@pytest.mark.slow  # waits out the 5 s connect timeout
def test_capacity_with_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    path = write(tmp_path, name="far", servers=1, rate=300, service_ms=1, budget="p99: 50 ms", duration=1)
    result = CliRunner().invoke(app, ["capacity", str(path), "--dask", "tcp://127.0.0.1:9", "--no-plots",
                                      "-o", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no Dask scheduler answered within" in lines[0], result.output
    assert not (tmp_path / "o").exists()


class Recording(Serial):
    """Serial, remembering the variants of every batch it was handed."""

    def __init__(self):
        self.batches = []

    def run(self, fn, items, finished=None):
        self.batches.append({variant for _, variant, _ in items})
        return super().run(fn, items, finished)


def test_variants_are_searched_together_with_the_answers_of_separate_searches(tmp_path):
    path = write(tmp_path, name="two", servers=1, rate=300, service_ms=1, budget="p99: 50 ms", duration=1)
    path.write_text(path.read_text() + "variants:\n  one: {}\n  two:\n    hardware: {pools: {server: "
                    "{profile: host-cpu, cores: 2}}}\n")
    scenario_file = load_scenario_file(path)
    executor = Recording()
    together = find_capacities(scenario_file, ["one", "two"], executor, tolerance=0.2, cap=3)
    assert {"one", "two"} in executor.batches  # one batch held replications of both searches
    for result in together:
        alone = find_capacity(scenario_file, result.variant, Serial(), tolerance=0.2, cap=3)
        assert [(p.value, p.verdict, p.replications, p.estimates) for p in result.search.probes] == \
            [(p.value, p.verdict, p.replications, p.estimates) for p in alone.search.probes]
    assert together[1].value > together[0].value  # two cores take more


def test_rack_8_routes_load_the_network_only_when_requests_leave_their_server():
    """scenarios/rack-8.yaml: node-local requests never cross the rack network; rack-wide ones do (7 in 8
    tensors go to another server's GPU, results to any DPU), and every server's uplink carries its tensors."""
    from sim.scenario.builtin import scenario_path

    scenario_file = load_scenario_file(scenario_path("rack-8"))
    loads = {v: {(load.kind, load.name): load.utilisation for load in offered_loads(scenario_file.plan(v))}
             for v in ("node-local", "rack-wide")}
    assert loads["node-local"]["link", "srv[3].port"] == 0.0
    assert loads["rack-wide"]["link", "srv[3].port"] > 0.05
    for v in loads:
        assert loads[v]["link", "srv[3].uplink"] > 0.0 and loads[v]["link", "srv[3].slot"] > 0.0


def test_the_bound_counts_the_cpu_time_of_moving_data_and_per_port_channels(tmp_path):
    """A core serves 1 ms per request and receives each 100 KB request at 20 us + 2 copies at 5 GB/s
    (60 us of CPU): the core saturates at 1 / 1.06 ms, not 1 / 1 ms. The reply's send cost (10 us)
    adds too. A per-port link from the client has one channel per receiving instance."""
    from sim.explore.bound import saturation

    path = write(tmp_path, name="host", servers=1, rate=300, service_ms=1, budget="p99: 50 ms", duration=1)
    path.write_text(path.read_text().replace(
        "    server: {profile: host-cpu, cores: 1}\n",
        "    server: {profile: host-cpu, cores: 1, count: 2}\n  links:\n    - {name: net, between: [client, server], "
        "kind: tcp, bandwidth: 1 GB/s, latency: {kind: deterministic, value: 10 us}, sharing: per-port, "
        "receive_cost: {per_message: 20 us, copy_rate: 5 GB/s, copies: 2}, send_cost: {per_message: 10 us}}\n"
    ).replace("payload: 0 B", "payload: 100 KB"))
    plan = load_scenario_file(path).plan("base")
    loads = {(load.kind, load.name): load for load in offered_loads(plan)}
    per_request = 1e-3 + 20e-6 + 2 * 100e3 / 5e9 + 10e-6  # serve, receive the request, send the reply
    assert loads["pool", "server"].offered == pytest.approx(300 * per_request)
    assert loads["link", "net"].capacity == 2  # per-port: from the client, one channel per receiving instance
    assert saturation(plan).rate == pytest.approx(2 / per_request)
