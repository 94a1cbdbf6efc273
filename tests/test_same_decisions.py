"""The simulator and the harness make the same decisions, by construction.

Both sides wrap ``sim.station.Station``: the simulator's ``DeviceInstance``
drives it from SimPy timers, the harness's ``ProcessStation`` from a
worker's real-time loop. Here both are fed the same job sequence (arrival
times, stages, deadlines, priorities) with the same service times, for
every batching x queueing x admission policy, and must produce the same
sequence of decisions: which jobs are admitted or dropped, and which batch
of which stage starts when. The harness side runs on a virtual clock
stepped exactly as a worker steps (take in arrivals, then, when free, ask
for a batch; sleep until the next arrival, completion or wake-up time), so
the test needs no real time.

Also here: no module under ``sim/`` imports ``hil``.
"""

from __future__ import annotations

import ast
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hil.runner.layout import StageRun
from hil.runner.station import Job as HarnessJob
from hil.runner.station import MeasuredEstimates, ProcessStation
from sim.costs import Affine, make_sampler
from sim.model.device import DeviceInstance, StageService, Window
from sim.model.engine import Engine
from sim.model.request import Job as SimJob
from sim.model.request import Request
from sim.policies.admission import ADMISSION
from sim.policies.batching import BATCHING
from sim.policies.queueing import DISCIPLINES
from sim.scenario.schema import Policies
from sim.station import Launch, ModelEstimates, Station

STAGES = 2  # a two-stage pipeline on one device: stage 0 feeds stage 1
COSTS = (Affine(kind="affine", base="2 ms", per_item="1 ms"), Affine(kind="affine", base="1 ms", per_item="1.5 ms"))


@dataclass(frozen=True)
class Arrival:
    id: int
    time: float
    stage: int
    deadline: float
    priority: int


def job_sequence(seed: int, count: int = 80) -> list[Arrival]:
    """Arrivals at both stages, bursty enough to queue and batch, with mixed deadlines and priorities."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(0.0025, count))
    stages = rng.integers(0, STAGES, count)
    slack = rng.choice([0.006, 0.015, 0.04, math.inf], count)
    priority = rng.integers(0, 3, count)
    return [Arrival(i, float(t), int(s), float(t + d), int(p))
            for i, (t, s, d, p) in enumerate(zip(times, stages, slack, priority))]


def policies(batching: str, queue: str, admission: str) -> Policies:
    spec = {"kind": batching, "max_batch": 4, "max_delay": "3 ms"}
    if batching == "fixed":
        spec = {"kind": "fixed", "max_batch": 3, "timeout": "5 ms"}
    return Policies.model_validate({
        "queue": {"kind": queue},
        "admission": {"kind": admission, "cap": 2},
        "batching": {f"s{i}": spec for i in range(STAGES)},
    })


def stage_runs(spec: Policies) -> list[StageRun]:
    return [StageRun(i, f"s{i}", "front", "dpu", "dpu", "emulate", None, False, 0.5, COSTS[i], 1.0, None, 1.0,
                     spec.batching[f"s{i}"]) for i in range(STAGES)]


def simulated(spec: Policies, arrivals: list[Arrival]) -> list[tuple]:
    """Decisions of the simulator's device (SimPy, one server)."""
    env = Engine()
    samplers = {i: make_sampler(COSTS[i], np.random.default_rng(0)) for i in range(STAGES)}
    means = [samplers[i].mean(1) for i in range(STAGES)]
    remaining = [sum(means[i:]) for i in range(STAGES)]
    after = [sum(means[i + 1:]) for i in range(STAGES)]
    station = Station({i: spec.batching[f"s{i}"] for i in range(STAGES)}, DISCIPLINES[spec.queue.kind](),
                      ADMISSION[spec.admission.kind](spec.admission),
                      ModelEstimates({i: s.mean for i, s in samplers.items()}, remaining, after), servers=1)
    device = DeviceInstance(env, 0, "dev[0]", "dev", 1, Window(0.0, math.inf), station,
                            {i: StageService(s) for i, s in samplers.items()}, itertools.count(1))
    decisions: list[tuple] = []
    requests: list[Request] = []

    def arrive(a: Arrival):
        yield env.timeout(a.time)
        request = Request.blank(a.id, 0, 0, a.priority, a.time, a.deadline, 1.0, [0] * STAGES, 1)
        requests.append(request)
        job = SimJob(request, a.stage, 0, a.time, a.deadline, a.priority, lambda j: None)
        decisions.append(("offer", env.now, a.id, device.offer(job)))

    for a in arrivals:
        env.process(arrive(a))
    env.run()
    batches: dict[tuple[int, int], list[int]] = {}
    starts: dict[tuple[int, int], float] = {}
    for r in requests:
        for stage in range(STAGES):
            if r.batch[stage] >= 0:
                batches.setdefault((stage, r.batch[stage]), []).append(r.id)
                starts[stage, r.batch[stage]] = r.start[stage]
    for (stage, batch), ids in sorted(batches.items(), key=lambda kv: kv[0][1]):
        decisions.append(("launch", starts[stage, batch], stage, tuple(sorted(ids))))
    return decisions


def measured(spec: Policies, arrivals: list[Arrival]) -> list[tuple]:
    """Decisions of the harness's worker station, stepped on a virtual clock as a worker steps."""
    runs = stage_runs(spec)
    station = ProcessStation(runs, spec, MeasuredEstimates(runs))
    offers: list[tuple] = []
    launches: list[tuple] = []
    pending = list(arrivals)
    running: Launch | None = None
    busy_until = wake = math.inf
    running_since = 0.0  # when the batch in service began (set with ``running``)
    while pending or station.waiting or running:
        now = min(pending[0].time if pending else math.inf, busy_until, wake)
        if running is not None and now == busy_until:
            station.done(running, busy_until - running_since)
            running, busy_until = None, math.inf
        while pending and pending[0].time == now:
            a = pending.pop(0)
            job = HarnessJob(a.id, a.stage, a.deadline, a.priority, np.empty(0))
            offers.append(("offer", now, a.id, station.offer(job, now)))
        wake = math.inf
        if running is None:
            decision = station.poll(now)
            if isinstance(decision, Launch):
                launches.append(("launch", now, decision.stage, tuple(sorted(j.id for j in decision.jobs))))
                running, running_since = decision, now
                busy_until = now + runs[decision.stage].model_mean(len(decision.jobs))
            else:
                wake = decision
        if not pending and not running and math.isinf(wake) and station.waiting:
            pytest.fail("the harness station is stuck: jobs wait and nothing will wake it")
    return offers + launches


def same(a: list[tuple], b: list[tuple]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x[0] != y[0] or x[2:] != y[2:] or not math.isclose(x[1], y[1], rel_tol=1e-12, abs_tol=1e-12):
            return False
    return True


@pytest.mark.parametrize("batching,queue,admission",
                         list(itertools.product(BATCHING.kinds, DISCIPLINES.kinds, ADMISSION.kinds)))
def test_simulator_and_harness_decide_alike(batching: str, queue: str, admission: str) -> None:
    spec = policies(batching, queue, admission)
    for seed in (1, 2):
        arrivals = job_sequence(seed)
        sim_side, hil_side = simulated(spec, arrivals), measured(spec, arrivals)
        offers = [d for d in sim_side if d[0] == "offer"]
        assert len(offers) == len(arrivals)
        assert any(d[0] == "launch" for d in sim_side)
        if admission != "none":
            assert not all(d[3] for d in offers) or batching == "none", "the case should exercise refusals"
        first = next((i for i, (x, y) in enumerate(zip(sim_side, hil_side)) if not same([x], [y])), None)
        assert same(sim_side, hil_side), (
            f"seed {seed}: first difference at decision {first}: simulator {sim_side[first] if first is not None else None}"
            f" vs harness {hil_side[first] if first is not None else None}")


def test_batches_and_refusals_happen() -> None:
    """The job sequence is hard enough that batching and admission really decide something."""
    arrivals = job_sequence(1)
    decisions = simulated(policies("dynamic", "edf", "queue-cap"), arrivals)
    launches = [d for d in decisions if d[0] == "launch"]
    assert max(len(d[3]) for d in launches) > 1
    assert any(not d[3] for d in decisions if d[0] == "offer")


@pytest.mark.parametrize("batching,admission", list(itertools.product(BATCHING.kinds, ADMISSION.kinds)))
def test_a_job_taken_alone_is_what_offer_and_next_batch_launch(batching: str, admission: str) -> None:
    """The simulator's shortcut (``Station.take_alone``, a job straight into service on an empty device)
    answers yes only where ``offer`` then ``next_batch`` would launch that job at once, alone."""
    spec = policies(batching, "fifo", admission)

    def station() -> Station:
        means = {i: make_sampler(COSTS[i], np.random.default_rng(0)).mean for i in range(STAGES)}
        return Station({i: spec.batching[f"s{i}"] for i in range(STAGES)}, DISCIPLINES["fifo"](),
                       ADMISSION[admission](spec.admission), ModelEstimates(means, [0.0] * STAGES, [0.0] * STAGES))

    for stage in range(STAGES):
        shortcut, full = station(), station()
        taken = shortcut.take_alone(SimJob(None, stage, 0, 0.0, 1.0, 0, None), 0.5)
        job = SimJob(None, stage, 0, 0.0, 1.0, 0, None)
        decision = full.next_batch(0.5) if full.offer(job, 0.5) else None
        alone = isinstance(decision, Launch) and decision.stage == stage and decision.jobs == [job]
        assert taken == (alone and admission == "none"), (stage, taken, decision)
        assert shortcut.waiting == 0
        if taken:  # a job waiting makes the answer no: it must queue behind
            shortcut.offer(SimJob(None, stage, 0, 0.0, 1.0, 0, None), 0.6)
            assert not shortcut.take_alone(SimJob(None, stage, 0, 0.0, 1.0, 0, None), 0.7)


def test_no_module_under_sim_imports_hil() -> None:
    root = Path(__file__).resolve().parent.parent / "sim"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(root.parent)}: {n}" for n in names if n == "hil" or n.startswith("hil.")]
    assert not offenders, offenders


# --- reactions to failures: retry, circuit breaker, fallback -----------------------------------------
#
# The simulator's ``System`` and the harness's front (``hil.runner.reactions.FrontReactions``) both ask
# ``sim.policies.resilience.Reactions`` what to do when a stage attempt fails, each with its own
# bookkeeping (failures per request and stage, which reason, the breaker asked before the health check,
# retries and fallback reasons counted). Here a small simulation with a GPU that fails twice logs the
# events each attempt meets (started while the GPU was up or down, succeeded after some latency,
# failed for a reason); the harness's adapter is fed the same events in the same order; every call
# both make on the shared ``Reactions`` objects (admit, succeeded, failed with its arguments) and every
# decision returned must be the same, as must the retries and fallback reasons per request.

REACTING = """
name: decide
hardware:
  pools:
    dpu: {profile: bluefield-3}
    gpu: {profile: a100}
  links:
    - {name: pcie, between: [dpu, gpu], profile: pcie-gen4-x16}
workload:
  sources:
    - {name: s, kind: poisson, rate: 300/s, class: c, deadline: 50 ms, payload: 10 KB}
pipeline:
  stages:
    - name: pre
      costs: {dpu: {kind: lognormal, mean: 0.5 ms, cv: 0.3}}
    - name: infer
      costs: {gpu: {kind: lognormal, mean: 2 ms, cv: 0.5}}
policies:
  placement: {strategy: dpu-offload}
failures:
  - {target: gpu, at: 0.2 s, for: 0.25 s}
  - {target: gpu, at: 0.7 s, for: 0.05 s}
resilience:
  health_aware: true
  retry: {kind: exponential, attempts: 2, backoff: 15 ms, multiplier: 2, target: other}
  breaker: {kind: consecutive, failures: 3, open_for: 40 ms, probes: 2, latency: 6 ms}
  stages:
    infer:
      fallback: {pools: [dpu], costs: {dpu: 1 ms}, degraded: true}
run: {duration: 1 s, warmup: 0 s, seed: 3, replications: 1}
"""


class CallLog:
    """Every call on ``Reactions`` objects while installed: (method, stage, arguments..., result)."""

    def __init__(self, monkeypatch):
        from sim.policies import resilience

        self.calls: list[tuple] = []
        self.stage_of: dict[int, int] = {}
        for name in ("admit", "succeeded", "failed"):
            original = getattr(resilience.Reactions, name)
            monkeypatch.setattr(resilience.Reactions, name, self._recording(name, original))

    def _recording(self, name, original):
        log = self

        def call(reactions, *args, **kwargs):
            result = original(reactions, *args, **kwargs)
            log.calls.append((name, log.stage_of.get(id(reactions), -1), *args, *kwargs.values(), result))
            return result

        return call


def simulated_reactions(tmp_path: Path, monkeypatch) -> tuple[list[tuple], list[tuple], object]:
    """The simulator's calls on its Reactions, the events its attempts met, and its resilience record."""
    from sim.experiment import run_variant
    from sim.model import system as system_module
    from sim.scenario.load import load_scenario_file

    path = tmp_path / "decide.yaml"
    path.write_text(REACTING)
    log = CallLog(monkeypatch)
    events: list[tuple] = []
    inside: list[bool] = [False]
    System = system_module._State  # the run's state: where the reactions are asked
    original_install, original_attempt = System._install_resilience, System._attempt
    original_done, original_react = System._attempt_done, System._react

    def install(self, resilience, rng):
        original_install(self, resilience, rng)
        log.stage_of.update({id(r): k for k, r in enumerate(self.reactions)})
        self._gpu = [d for d in self.devices if d.pool == "gpu"]

    def attempt(self, request, stage, *args):
        from sim.contract.outcomes import Outcome

        if request.outcome == Outcome.PENDING:
            events.append(("attempt", self.env.now, request.id, stage, any(d.healthy for d in self._gpu)))
        inside[0] = True
        try:
            original_attempt(self, request, stage, *args)
        finally:
            inside[0] = False

    def done(self, job):
        if not job.ended:
            events.append(("ok", self.env.now, job.stage, self.env.now - job.entered))
        original_done(self, job)

    def react(self, request, stage, reason, uid, latency, in_fallback):
        if not inside[0]:  # refusals inside an attempt the harness's admit finds by itself
            events.append(("fail", self.env.now, request.id, stage, reason, latency, in_fallback))
        original_react(self, request, stage, reason, uid, latency, in_fallback)

    monkeypatch.setattr(System, "_install_resilience", install)
    monkeypatch.setattr(System, "_attempt", attempt)
    monkeypatch.setattr(System, "_attempt_done", done)
    monkeypatch.setattr(System, "_react", react)
    records = []
    original_record = system_module.ResilienceRecord

    def capture(*args, **kwargs):
        records.append(original_record(*args, **kwargs))
        return records[-1]

    monkeypatch.setattr(system_module, "ResilienceRecord", capture)
    run_variant(load_scenario_file(path, []), "base", replications=range(1))
    return log.calls, events, records[-1]


def harness_reactions(tmp_path: Path, events: list[tuple], monkeypatch) -> tuple[list[tuple], object]:
    """The harness front's calls on its Reactions when fed the same events."""
    from hil.runner.reactions import FrontReactions
    from sim.plan import compile_plan
    from sim.scenario.load import load_scenario_file

    path = tmp_path / "decide.yaml"
    plan = compile_plan(load_scenario_file(path, []).resolve("base"), "decide", tmp_path)
    log = CallLog(monkeypatch)
    front = FrontReactions(plan.resilience, [s.pools[0] == "gpu" for s in plan.stages])
    log.stage_of.update({id(r): k for k, r in enumerate(front.reactions)})
    for event in events:
        if event[0] == "attempt":
            _, now, rid, stage, gpu_up = event
            front.admit(rid, stage, now, gpu_up)
        elif event[0] == "ok":
            _, now, stage, latency = event
            front.succeeded(stage, now, latency)
        else:
            _, now, rid, stage, reason, latency, in_fallback = event
            front.failed(rid, stage, now, reason, latency, in_fallback)
    return log.calls, front


def test_retry_breaker_and_fallback_decide_alike(tmp_path: Path, monkeypatch) -> None:
    from sim.policies.resilience import Fallback, Reason, Retry

    sim_calls, events, record = simulated_reactions(tmp_path, monkeypatch)
    monkeypatch.undo()
    hil_calls, front = harness_reactions(tmp_path, events, monkeypatch)
    decisions = [c[-1] for c in sim_calls if c[0] == "failed"]
    # the case exercises every kind of decision and every reason the harness can meet
    assert any(isinstance(d, Retry) for d in decisions) and any(isinstance(d, Fallback) for d in decisions)
    assert {c[4] for c in sim_calls if c[0] == "failed"} == {Reason.FAILED, Reason.UNHEALTHY, Reason.BREAKER_OPEN}
    assert any(c[0] == "admit" and c[-1] is False for c in sim_calls), "the breaker never refused"
    assert any(c[0] == "succeeded" and c[3] > 0.006 for c in sim_calls), "no attempt was slow enough to count"
    first = next((i for i, (a, b) in enumerate(zip(sim_calls, hil_calls)) if a != b), None)
    assert len(sim_calls) == len(hil_calls) and first is None, (
        f"first difference at call {first}: simulator {sim_calls[first] if first is not None else None} "
        f"vs harness {hil_calls[first] if first is not None else None}")
    retries = {rid: n for rid, n in enumerate(record.retries) if n}
    fallbacks = {rid: Reason(r) for rid, r in enumerate(record.fallback) if r}
    assert front.retries == retries and front.fallback == fallbacks
