"""The simulated system: a request's path from source to reply.

``System`` builds one SimPy environment from a plan: a ``DeviceInstance``
for every device of every pool, link channels on demand, and the policy
objects. Requests then flow:

    arrival -> [hop over a link] -> admission -> device queue -> batch ->
    service -> pass/filter -> successors ... -> reply over a link -> outcome

Everything is driven by timers in one SimPy environment
(``sim.model.engine.Engine``: a timer calls a function, in SimPy's event
order), with no process per request, which keeps the model fast. Rules a
user should know:

- a request stays on the device instance it is on when the next stage is
  placed on the same pool (its data is there); otherwise the router picks
  an instance among the stage's pools;
- a stage with several predecessors starts when the last of them ends, on
  the device of that last one's choosing, receiving all their outputs;
- when a prefilter (``pass_probability`` < 1) rejects a request it leaves
  at once with outcome ``filtered``; the draw is fixed per request and
  stage, so every design filters the same requests;
- hops to and from the client use a link only when the scenario declares
  client links.

Failures and reactions (``failures:`` and ``resilience:`` in the
scenario; see docs/model.md) switch in other versions of the entry, queue,
completion and link steps at construction, so a run without them does
exactly the work it did before:

- a device that fails loses its jobs in service, and its waiting jobs
  either fail with it or go back to routing (``in_flight: requeue``); a
  job that reaches a down device fails; a message sent over a down link
  fails, and one in flight when the link fails fails on arrival;
- a failed, timed-out or refused attempt at a stage goes to the stage's
  ``sim.policies.resilience.Reactions``: retry later (on another
  instance, or the same), run the stage's fallback (another pool, or a
  smaller model whose answers end ``degraded``), or end the request
  ``failed`` / ``timed_out``; the breaker is asked before each attempt;
- routers skip down devices (``health_aware``); the client gives up after
  ``resilience.timeout`` (``timed_out``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from itertools import count
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
from simpy.events import NORMAL

from sim.contract import streams
from sim.contract.outcomes import Outcome
from sim.costs import Deterministic, Sampler, make_sampler
from sim.metrics.resilience import ResilienceRecord
from sim.metrics.sink import RequestSink
from sim.model import timeseries
from sim.model.device import Candidate, DeviceInstance, StageService, Window
from sim.model.engine import Engine
from sim.model.failures import Failures
from sim.model.garbage import fewer_collections
from sim.model.link import Channel, make_channel
from sim.model.request import (ENQUEUED, FIELDS, INSTANCE, LINK, OUT_BYTES, WAITING, Job, Request, blank_ints,
                               blank_reals)
from sim.plan import FailurePlan, LinkPlan, Plan
from sim.topology import Hop
from sim.policies.resilience import Fallback, GiveUp, HealthAware, Reason, Retry, build_reactions
from sim.policies.admission import ADMISSION
from sim.policies.branching import build_branching
from sim.policies.channel import CHANNELS
from sim.policies.queueing import DISCIPLINES
from sim.policies.routing import INDEX_FROM, ROUTING, IndexedShortestQueue
from sim.scenario.schema import CLIENT, BatchingSpec
from sim.station import ModelEstimates, Station
from sim.workload import Arrivals

Progress = Callable[[float], None]


@dataclass(slots=True, eq=False)
class CopyJob(Job):
    """The CPU work of moving one message on one device: ``cost`` seconds, then ``then``."""

    cost: float = 0.0
    then: Callable[[], None] = None
    owner: Optional[Request] = None  # the request whose message this copies (None: background work)


_ARRIVAL_BLOCK = 4096  # arrivals read from the arrays at a time

_SIZES_KEPT = 256  # a leg with a choice of links remembers the links chosen for this many message sizes

_MERGING = -2  # a request's link column while its message waits to leave merged (sim.model.system._flush)


def _copied(job: CopyJob) -> None:
    job.then()


def _copy_seconds(jobs: list) -> float:
    return jobs[0].cost if len(jobs) == 1 else sum(job.cost for job in jobs)


def _no_time(_batch: int) -> float:
    return 0.0


def _nothing() -> None:
    pass


_PENDING = Outcome.PENDING


def _received(request: Request, preds: tuple[int, ...]) -> float:
    """The bytes a stage receives: its predecessors' outputs, or the request's payload at a root."""
    if not preds:
        return request.size
    reals = request.reals
    if len(preds) == 1:
        return reals[preds[0] * FIELDS + OUT_BYTES]
    return sum(reals[p * FIELDS + OUT_BYTES] for p in preds)


def _refresh_all(entries: tuple, _device) -> None:
    for router, i in entries:
        router.refresh(i)


class _Hop:
    """The links between two pools (or a pool and the client), looked up once per pair of pools."""

    __slots__ = ("links", "kinds", "link", "index", "ideal")

    def __init__(self, links: list[LinkPlan], index: dict[str, int]):
        self.links = tuple(links)
        self.kinds = [link.kind for link in links]
        self.link = link = links[0] if len(links) == 1 else None  # the only one: no channel policy to ask
        self.index = index[link.name] if link is not None else -1
        # one FIFO link with no overhead and no latency: a message its bandwidth moves in no time passes
        # through an idle channel at once (sim.model.link.Channel.passes_through)
        self.ideal = link is not None and _ideal(link)


def _link_of_kind(links: tuple[LinkPlan, ...], kind: str) -> LinkPlan:
    return next(link for link in links if link.kind == kind)


def _ideal(link: LinkPlan) -> bool:
    latency = link.latency
    return link.contention == "fifo" and link.overhead == 0 and isinstance(latency, Deterministic) \
        and latency.value == 0


@dataclass(frozen=True)
class RunOutput:
    """Everything a finished run leaves for the metrics."""

    plan: Plan
    arrivals: Arrivals
    requests: list[Request]
    devices: list[DeviceInstance]
    channels: dict[str, list[Channel]]
    window: Window
    resilience: Optional[ResilienceRecord] = None  # when the scenario declares failures or reactions
    timeseries: Optional[pd.DataFrame] = None  # utilisation and queues over time, when sampled


class _Table(dict):
    """A dict whose value for a key is made on first use, by ``make(key)``."""

    def __init__(self, make: Callable):
        super().__init__()
        self._make = make

    def __missing__(self, key):
        value = self[key] = self._make(key)
        return value


class System:
    """One replication of one design."""

    def __init__(self, plan: Plan, arrivals: Arrivals, seed: int, replication: int,
                 sample_every: Optional[float] = None, sink: Optional[RequestSink] = None):
        """``sample_every``: record utilisation and queue lengths every so many simulated seconds;
        ``sink``: hand each request to it when it ends instead of keeping it (bounded memory)."""
        self.plan = plan
        self.arrivals = arrivals
        self.seed = seed
        self.replication = replication
        self.sample_every = sample_every
        self.sink = sink

    def run(self, progress: Optional[Progress] = None) -> RunOutput:
        run = self.plan.scenario.run
        env = Engine()
        window = Window(run.warmup, run.duration)
        state = _State(self.plan, self.arrivals, env, window, self.seed, self.replication, self.sink)
        state.schedule_next_arrival()
        horizon = run.duration + run.drain
        sampler = (timeseries.attach(env, state.devices, state.channels_by_link, window, self.sample_every,
                                     until=horizon) if self.sample_every else None)
        steps = 50 if progress else 1
        with fewer_collections():  # no cycles per request: the collector would walk the held state for nothing
            for step in range(1, steps + 1):
                env.run(until=horizon * step / steps)
                if progress:
                    progress(step / steps)
                if state.finished == len(self.arrivals) and state.next_arrival >= len(self.arrivals):
                    break
        for request in list(state.live.values()) if self.sink is not None else state.requests:
            if request.outcome == Outcome.PENDING:
                request.outcome = Outcome.UNFINISHED
                if self.sink is not None:
                    state.ended(request)
        return RunOutput(self.plan, self.arrivals, state.requests, state.devices, state.channels_by_link(), window,
                         state.resilience_record(), sampler.table(self.replication) if sampler else None)


class _State:
    """The live model of one run; all callbacks live here."""

    def __init__(self, plan: Plan, arrivals: Arrivals, env: Engine, window: Window,
                 seed: int, replication: int, sink: Optional[RequestSink] = None):
        self.plan = plan
        self.arrivals = arrivals
        self.env = env
        self._push_timer, self._timer_ids = env.push_timer, env.timer_ids
        self.window = window
        self.sink = sink
        self.requests: list[Request] = []  # every request (no sink) ...
        self.live: dict[int, Request] = {}  # ... or only those not yet ended (with a sink)
        self.latest: Optional[Request] = None
        if sink is not None and plan.resilience is not None:
            self._retries = np.zeros(len(arrivals), dtype=np.int32)  # kept per request for the metrics
            self._fallbacks = np.zeros(len(arrivals), dtype=np.int32)
        self.finished = 0
        self.next_arrival = 0
        self._arrival_count = len(arrivals)
        # the next arrivals' times and sources as Python numbers, a block at a time (not a numpy scalar
        # per read), and each source's class, priority, relative deadline and payload
        self._block_start, self._block_times, self._block_sources = 0, [], []
        self._of_source = [(int(arrivals.class_of[s]), int(arrivals.priority_of[s]), float(arrivals.deadline_of[s]),
                            float(arrivals.payload_of[s])) for s in range(len(arrivals.source_names))]
        policies = plan.scenario.policies
        rng = lambda name: streams.stream_rng(seed, replication, name)  # noqa: E731
        stages = plan.stages
        self.remaining = self._remaining_service()
        after = [max((self.remaining[s] for s in stage.succs), default=0.0) for stage in stages]
        discipline = DISCIPLINES[policies.queue.kind]()
        admission = ADMISSION[policies.admission.kind](policies.admission)

        # A stage's fallback is served as a stage of its own ("shadow", index n + k) on the fallback pools;
        # it records into its stage's columns.
        resilience = plan.resilience
        n = len(stages)
        self._shadow: dict[int, int] = {}  # stage -> its fallback's station stage
        self._origin: list[int] = list(range(n))  # station stage -> request column
        fallbacks = []
        if resilience is not None:
            for stage, reaction in zip(stages, resilience.stages):
                if reaction.fallback is not None:
                    self._shadow[stage.index] = n + len(fallbacks)
                    self._origin.append(stage.index)
                    fallbacks.append((stage, reaction.fallback))
        remaining, after = list(self.remaining), list(after)
        for stage, fallback in fallbacks:
            pool = plan.pools[fallback.pools[0]]
            own = fallback.costs[pool.kind].mean(1) / pool.speed
            remaining.append(own + after[stage.index])
            after.append(after[stage.index])

        # Each pool: the stages it serves and their service-time draws (one stream per stage and pool).
        pool_stages: dict[str, dict[int, Sampler]] = {name: {} for name in plan.pools}
        batching_of = {stage.index: stage.batching for stage in stages}
        for stage in stages:
            for pool_name in stage.pools:
                pool = plan.pools[pool_name]
                pool_stages[pool_name][stage.index] = make_sampler(
                    stage.costs[pool.kind], rng(streams.service(stage.name, pool_name)), 1 / pool.speed)
        for stage, fallback in fallbacks:
            shadow = self._shadow[stage.index]
            batching_of[shadow] = BatchingSpec()
            for pool_name in fallback.pools:
                pool = plan.pools[pool_name]
                pool_stages[pool_name][shadow] = make_sampler(
                    fallback.costs[pool.kind], rng(streams.service(f"{stage.name}~fallback", pool_name)),
                    1 / pool.speed)

        # Host costs of moving data: one more station stage on every device, whose jobs are copies.
        self._copy_stage = -1
        if plan.other_work:
            self._copy_stage = len(self._origin)
            self._origin.append(-1)  # a copy records into no stage column (a scratch request's last)
            self._scratch = Request.blank(-1, 0, 0, 0, 0.0, math.inf, 0.0, [0], 1)
            batching_of[self._copy_stage] = BatchingSpec()
            remaining.append(0.0)
            after.append(0.0)
        tracked = {name for f in resilience.failures for name in f.devices} if resilience is not None else set()
        other_work = plan.other_work  # a property that scans every link and pool: once, not per device
        columns = self._origin if fallbacks or other_work else None
        self.devices: list[DeviceInstance] = []
        pool_devices: dict[str, list[DeviceInstance]] = {}
        batch_ids = count(1)  # batch ids, unique in the run: one counter for every device
        for pool in plan.pools.values():
            samplers = pool_stages[pool.name]
            means = {i: smp.mean for i, smp in samplers.items()}
            batching = {i: batching_of[i] for i in samplers}
            if other_work:
                means[self._copy_stage] = _no_time
                batching[self._copy_stage] = batching_of[self._copy_stage]
            estimates = ModelEstimates(means, remaining, after)
            pool_devices[pool.name] = []
            for name in pool.instance_names():
                station = Station(batching, discipline, admission, estimates, pool.servers)
                services = {i: StageService(smp) for i, smp in samplers.items()}
                if other_work:
                    services[self._copy_stage] = StageService(None, cost_of=_copy_seconds)
                device = DeviceInstance(env, len(self.devices), name, pool.name, pool.servers, window,
                                        station, services, batch_ids, columns, name in tracked)
                self.devices.append(device)
                pool_devices[pool.name].append(device)

        self.candidates: list[list[Candidate]] = []
        self.routers = []
        # per stage with a prefilter: one byte per arrival, 1 if its draw passes (draw < pass probability)
        self.passes: list[Optional[bytes]] = []
        for stage in stages:
            tiers = stage.tiers or range(len(stage.pools))
            self.candidates.append(
                [Candidate(d, tier) for tier, p in zip(tiers, stage.pools) for d in pool_devices[p]]
            )
            self.routers.append(ROUTING[policies.routing.kind](policies.routing, rng(streams.routing(stage.name))))
            self.passes.append((rng(streams.passes(stage.name)).random(len(arrivals)) < stage.pass_probability).tobytes()
                               if stage.pass_probability < 1 else None)
        for stage, fallback in fallbacks:
            self.candidates.append(
                [Candidate(d, tier) for tier, p in enumerate(fallback.pools) for d in pool_devices[p]])
            self.routers.append(ROUTING[policies.routing.kind](
                policies.routing, rng(streams.routing(f"{stage.name}~fallback"))))
        self._fallback_output = {self._shadow[stage.index]: fallback.output for stage, fallback in fallbacks}
        self._fallback_pools = {self._shadow[stage.index]: fallback.pools for stage, fallback in fallbacks}
        self._fallback_degraded = {self._shadow[stage.index]: fallback.degraded for stage, fallback in fallbacks}
        self.channel_policy = CHANNELS[policies.channel.kind](policies.channel)
        self._hops = _Table(lambda pair: plan.links_between(*pair))  # (pool, pool) -> links, as pairs are used
        self._link_index = {link.name: i for i, link in enumerate(plan.links)}
        self._hop = _Table(lambda pair: _Hop(self._hops[pair], self._link_index))
        self._roots = plan.roots
        self._stages = stages
        self._stage_pools = [frozenset(stage.pools) for stage in stages]
        self._index_routers(policies.routing.kind)
        self._channels: dict[tuple, Channel] = {}
        self._latency: dict[str, Sampler] = {
            link.name: make_sampler(link.latency, rng(streams.latency(link.name))) for link in plan.links
        }
        self._preds = [len(s.preds) for s in stages]
        # what a new request's per-stage numbers start as (copied)
        self._blank_reals, self._blank_ints = blank_reals(len(stages)), blank_ints(self._preds)
        self._sole_pred = [s.preds[0] if len(s.preds) == 1 else -1 for s in stages]  # -1: none or several
        self._sinks = len(plan.sinks)
        self.failures: Optional[Failures] = None
        self._local: Optional[dict[tuple[int, str], list[Candidate]]] = None  # topology: (stage, pool) -> candidates
        self._paths = plan.branched  # per-class entries or branches
        self._class_roots: Optional[list[tuple[int, ...]]] = None
        if self._paths:
            self._install_paths(rng)
        if resilience is not None:
            self._install_resilience(resilience, rng)
        if plan.topology is not None:
            self._install_topology(resilience)
        if plan.host_costs:
            self._install_host_costs()
        self._merge = policies.channel.merge
        if policies.channel.merge:
            self._send = partial(self._send_merged, self._send)
            self._pending: dict[tuple[int, int], list] = {}
        # messages take the plain ``_send`` (no failures, routes, host costs or merging): ``_enter`` and
        # ``_reply`` look the hop up themselves and deliver at once where no link or an ideal one is crossed
        self._plain_send = getattr(self._send, "__func__", None) is _State._send
        # the callbacks that every request's timers, jobs and messages hold: bound once here, rather than
        # a method object made (and later freed) at each use
        self._on_arrival, self._stage_done, self._queue, self._answer, self._cross = (
            self._on_arrival, self._stage_done, self._queue, self._answer, self._cross)
        for device in self.devices:
            background = plan.pools[device.pool].background
            if background is not None:
                self._background(device, *background, rng(streams.background(device.name)))

    # --- arrivals -------------------------------------------------------

    def schedule_next_arrival(self) -> None:
        i = self.next_arrival
        if i < self._arrival_count:
            k = i - self._block_start
            if k >= len(self._block_times):
                self._block_start, k = i, 0
                # Python floats: a numpy scalar would make the clock, and every time computed from it, one
                self._block_times = self.arrivals.time[i:i + _ARRIVAL_BLOCK].tolist()
                self._block_sources = self.arrivals.source[i:i + _ARRIVAL_BLOCK].tolist()
            now = self.env.now
            delay = self._block_times[k] - now
            # (env.call_after(delay, self._on_arrival), without its call)
            self._push_timer((now + (delay if delay > 0.0 else 0.0), NORMAL, next(self._timer_ids), self._on_arrival, ()))

    def _fields(self, i: int) -> tuple[int, int, int, float, float, float]:
        """Arrival ``i`` (the next one, in its block): ``Arrivals.request(i)``, from Python numbers."""
        k = i - self._block_start
        source, time = self._block_sources[k], self._block_times[k]
        klass, priority, due, payload = self._of_source[source]
        sizes = self.arrivals.sizes
        return source, klass, priority, time, time + due, float(sizes[i]) if sizes is not None else payload

    def _on_arrival(self) -> None:
        i = self.next_arrival
        self.next_arrival += 1
        request = Request(i, *self._fields(i), self._blank_reals[:], self._blank_ints[:], self._sinks)
        self.latest = request
        if self.sink is None:
            self.requests.append(request)
        else:
            self.live[i] = request
        for root in self._roots:
            self._enter(request, root, None, request.size)
        self.schedule_next_arrival()

    # --- stage entry ----------------------------------------------------

    def _enter(self, request: Request, stage: int, source: Optional[DeviceInstance], size: float) -> None:
        job = Job(request, stage, 0, self.env.now, request.deadline, request.priority, self._stage_done)
        if source is not None and source.pool in self._stage_pools[stage]:
            self._queue(job, source)
            return
        candidates = self.candidates[stage]
        device = candidates[self.routers[stage].choose(candidates, job)].device if len(candidates) > 1 \
            else candidates[0].device
        if device is source:
            self._queue(job, device)
            return
        if self._plain_send:  # (inline: no client link, or an ideal link, takes no event and no closure)
            a = source.pool if source is not None else CLIENT
            hop = self._hop[a, device.pool]
            if not hop.links:
                self._queue(job, device)
                return
            if hop.ideal and self._channel(hop.link, source, device, a).passes_through(size):
                request.ints[stage * FIELDS + LINK] = hop.index
                self._queue(job, device)
                return
            request.ints[stage * FIELDS + LINK] = self._send_over(hop, a, source, device, size,
                                                                    partial(self._queue, job, device))
            return
        request.ints[stage * FIELDS + LINK] = self._send(source, device, size, partial(self._queue, job, device),
                                                           None, request)

    def _queue(self, job: Job, device: DeviceInstance) -> None:
        request = job.request
        if request.outcome is not _PENDING:
            return
        admitted = device.offer(job)
        request.reals[job.stage * FIELDS + ENQUEUED] = job.enqueued
        if not admitted:
            self._finish(request, Outcome.DROPPED)

    # --- stage exit -----------------------------------------------------

    def _stage_done(self, job: Job, output: Optional[float] = None) -> None:
        request, index = job.request, job.stage
        if request.outcome is not _PENDING:
            return
        stage = self._stages[index]
        passes = self.passes[index]
        if passes is not None and not passes[request.id]:
            self._finish(request, Outcome.FILTERED)
            return
        out = output if output is not None else stage.output
        sole = self._sole_pred
        reals = request.reals
        at = index * FIELDS
        if out is None:  # passes on what it received
            out = reals[sole[index] * FIELDS + OUT_BYTES] if sole[index] >= 0 else _received(request, stage.preds)
        reals[at + OUT_BYTES] = out
        ints = request.ints
        device = self.devices[ints[at + INSTANCE]]
        succs = stage.succs
        if succs:
            for succ in succs:
                waiting = succ * FIELDS + WAITING
                ints[waiting] -= 1
                if ints[waiting] == 0:  # what it receives: this stage's output, when it has no other input
                    self._enter(request, succ, device,
                                out if sole[succ] == index else _received(request, self._stages[succ].preds))
            return
        request.sinks_left -= 1
        if request.sinks_left == 0:
            reply = self.plan.reply_bytes if self.plan.reply_bytes is not None else out
            self._reply(request, device, reply)

    def _reply(self, request: Request, device: DeviceInstance, size: float) -> None:
        if self._plain_send:
            hop = self._hop[device.pool, CLIENT]
            if not hop.links:  # no client links: answered where it is
                self._answer(request)
                return
            request.reply_link = self._send_over(hop, device.pool, device, None, size, partial(self._answer, request))
            return
        request.reply_link = self._send(device, None, size, partial(self._answer, request), None, request)

    def _answer(self, request: Request) -> None:
        if request.degraded:
            self._finish(request, Outcome.DEGRADED)
            return
        late = self.env.now > request.deadline
        self._finish(request, Outcome.DEADLINE_MISSED if late else Outcome.COMPLETED)

    def _finish(self, request: Request, outcome: Outcome) -> None:
        if request.outcome is _PENDING:
            request.outcome = outcome
            request.done = self.env.now
            self.finished += 1
            if self.sink is not None:
                self.ended(request)

    def ended(self, request: Request) -> None:
        """With a sink: hand over a request that has its outcome, and forget it."""
        del self.live[request.id]
        if self._merge:  # ended (a client timeout) while its message waits to leave: no link in its row
            ints = request.ints
            for k in range(LINK, len(ints), FIELDS):
                if ints[k] == _MERGING:
                    ints[k] = -1
        if self.plan.resilience is not None:
            self._retries[request.id] = request.retries
            self._fallbacks[request.id] = request.fallback
        self.sink.add(request)

    # --- per-class entries and branches (installed only when the scenario declares them) ---

    def _install_paths(self, rng) -> None:
        """Each class enters at its own stages and waits only for the stages on its path; a branching
        stage sends a request on to one successor, chosen by its policy from a drawn signal; the
        successors not taken are passed a "nothing comes" token, so a stage after several branches (a
        merge) starts once every predecessor has either sent or been passed by, and the reply leaves
        once every sink on the request's path has run or been passed by."""
        plan, stages = self.plan, self.plan.stages
        self._class_roots, self._class_preds, self._class_sinks = [], [], []
        for name in self.arrivals.class_names:
            entries = plan.entries_of(name)
            reach = plan.reach(entries)
            self._class_roots.append(entries)
            self._class_preds.append([sum(p in reach for p in s.preds) for s in stages])
            self._class_sinks.append(tuple(s.index for s in stages if s.index in reach and not s.succs))
        self._class_ints = [blank_ints(preds) for preds in self._class_preds]
        self._branching = [None if s.branch is None else (
            build_branching(s.branch.kind, s.branch.branches), s.branch.targets,
            rng(streams.branches(s.name)).random(len(self.arrivals))) for s in stages]  # 8 bytes a request
        self._on_arrival = self._arrival_on_path
        self._stage_done = self._stage_done_on_path

    def _arrival_on_path(self) -> None:
        i = self.next_arrival
        self.next_arrival += 1
        fields = self._fields(i)
        klass = fields[1]
        request = Request(i, *fields, self._blank_reals[:], self._class_ints[klass][:], len(self._class_sinks[klass]))
        request.reached = [False] * len(self.plan.stages)
        self.latest = request
        if self.sink is None:
            self.requests.append(request)
        else:
            self.live[i] = request
        for root in self._class_roots[klass]:
            request.reached[root] = True
            self._enter(request, root, None, request.size)
        self.schedule_next_arrival()

    def _stage_done_on_path(self, job: Job, output: Optional[float] = None) -> None:
        request, index = job.request, job.stage
        if request.outcome != Outcome.PENDING:
            return
        stage = self.plan.stages[index]
        passes = self.passes[index]
        if passes is not None and not passes[request.id]:
            self._finish(request, Outcome.FILTERED)
            return
        if output is not None or stage.output is not None:
            out = output if output is not None else stage.output
        elif self._class_preds[request.klass][index] == 0:  # fed by the client
            out = request.size
        elif self._sole_pred[index] >= 0:
            out = request.reals[self._sole_pred[index] * FIELDS + OUT_BYTES]
        else:
            out = sum(request.reals[p * FIELDS + OUT_BYTES] for p in self._fed(request, stage.preds))
        request.reals[index * FIELDS + OUT_BYTES] = out
        device = self.devices[request.ints[index * FIELDS + INSTANCE]]
        branching = self._branching[index]
        if branching is None:
            for succ in stage.succs:
                self._pass_on(request, succ, True, device)
        else:
            policy, targets, signals = branching
            taken = targets[policy.choose(policy.simulated_signal(float(signals[request.id])))]
            for succ in stage.succs:
                self._pass_on(request, succ, succ == taken, device)
        if not stage.succs:
            self._sink_passed(request)

    def _pass_on(self, request: Request, index: int, sent: bool, device: Optional[DeviceInstance]) -> None:
        """A predecessor of stage ``index`` is done: it sent the request on (``sent``) or was passed by."""
        if sent:
            request.reached[index] = True
        ints, reals = request.ints, request.reals
        ints[index * FIELDS + WAITING] -= 1
        if ints[index * FIELDS + WAITING]:
            return
        if request.reached[index]:
            only = self._sole_pred[index]
            if only >= 0:
                self._enter(request, index, device, reals[only * FIELDS + OUT_BYTES])
                return
            fed = self._fed(request, self.plan.stages[index].preds)
            if not sent:  # the last to resolve sent nothing: the data are where the last sender ran
                device = self._last_device(request, fed)
            self._enter(request, index, device, sum(reals[p * FIELDS + OUT_BYTES] for p in fed))
            return
        stage = self.plan.stages[index]
        for succ in stage.succs:  # nothing comes here: nothing goes on from here either
            self._pass_on(request, succ, False, None)
        if not stage.succs:
            self._sink_passed(request)

    def _sink_passed(self, request: Request) -> None:
        """A sink on the request's path ran or was passed by; after the last, reply from the sink that ran last."""
        request.sinks_left -= 1
        if request.sinks_left:
            return
        sinks = self._class_sinks[request.klass]
        if len(sinks) == 1:
            last = sinks[0]
        else:
            end = request.end
            last = max((s for s in sinks if end[s] == end[s]), key=end.__getitem__)
        reply = self.plan.reply_bytes if self.plan.reply_bytes is not None else request.reals[last * FIELDS + OUT_BYTES]
        self._reply(request, self.devices[request.ints[last * FIELDS + INSTANCE]], reply)

    @staticmethod
    def _fed(request: Request, preds: Sequence[int]) -> list[int]:
        """The stages among ``preds`` that sent ``request`` on and ran (their end is not NaN)."""
        reached, end = request.reached, request.end
        return [p for p in preds if reached[p] and end[p] == end[p]]

    def _last_device(self, request: Request, stages: list[int]) -> DeviceInstance:
        """The device of the stage among ``stages`` that ended last."""
        end = request.end
        return self.devices[request.ints[max(stages, key=end.__getitem__) * FIELDS + INSTANCE]]

    # --- failures and reactions (installed only when the scenario declares them) ---

    def _install_resilience(self, resilience, rng) -> None:
        """Build the failure processes and each stage's reactions; switch in the checking steps."""
        self.health_aware = resilience.health_aware
        self.client_timeout = resilience.timeout
        self.stage_timeouts = [r.timeout for r in resilience.stages]
        self.reactions = build_reactions(resilience.stages)
        self.pickers = [HealthAware(router) for router in self.routers]
        self._void = Request.blank(-1, 0, 0, 0, 0.0, 0.0, 0.0, self._preds, self._sinks)
        self._void.outcome = Outcome.FAILED  # where abandoned attempts write; nothing reads it
        self._by_name = {device.name: device for device in self.devices}
        self._failure_of: dict[str, FailurePlan] = {}
        self._link_down = [0] * len(self.plan.links)
        self._link_epoch = [0] * len(self.plan.links)
        self._enter = self._attempt
        self._queue = self._queue_checked
        self._reply = self._reply_checked
        if self.client_timeout is not None:
            self._arrive = self._on_arrival
            self._on_arrival = self._arrival_with_timeout
        if any(f.link is not None for f in resilience.failures):
            self._send = self._send_checked
        if resilience.failures:
            self.failures = Failures(self.env, resilience.failures, self, rng)

    def _attempt(self, request: Request, stage: int, source: Optional[DeviceInstance], size: float,
                 exclude: int = -1, same: int = -1) -> None:
        """An attempt at ``stage``'s main path (replaces ``_enter``)."""
        now = self.env.now
        if request.outcome != Outcome.PENDING:
            return
        if not self.reactions[stage].admit(now):
            self._react(request, stage, Reason.BREAKER_OPEN, -1, 0.0, False)
            return
        job = Job(request, stage, 0, now, request.deadline, request.priority, self._attempt_done, now)
        device = self._pick(stage, job, source, exclude, same)
        if device is None:
            job.ended = True
            self._react(request, stage, Reason.UNHEALTHY, -1, 0.0, False)
            return
        timeout = self.stage_timeouts[stage]
        if timeout is not None:
            self.env.call_after(timeout, self._stage_timed_out, job, request)
        self._go(job, source, device, size, stage)

    def _arrival_with_timeout(self) -> None:
        self._arrive()
        request = self.latest
        self.env.call_after(self.client_timeout, self._client_gives_up, request)

    def _fallback(self, request: Request, stage: int, source: Optional[DeviceInstance], size: float) -> None:
        """Run ``stage``'s fallback instead of its main path."""
        shadow = self._shadow[stage]
        job = Job(request, shadow, 0, self.env.now, request.deadline, request.priority, self._fallback_done,
                  self.env.now)
        device = self._pick(shadow, job, source, -1, -1)
        if device is None:
            job.ended = True
            self._react(request, stage, Reason.UNHEALTHY, -1, 0.0, True)
            return
        self._go(job, source, device, size, stage)

    def _pick(self, index: int, job: Job, source: Optional[DeviceInstance], exclude: int,
              same: int) -> Optional[DeviceInstance]:
        """The device for an attempt: the one to retry on, the one the data is on, or the router's choice."""
        if same >= 0:
            return self.devices[same]
        pools = self.plan.stages[index].pools if index < len(self.plan.stages) else None
        candidates = self.candidates[index]
        if self._local is not None and source is not None:  # a fallback keeps to the node too
            candidates = self._local_candidates(index, source.pool, job.request)
        elif self._local is not None and job.request.source in self._enters and index < len(self.plan.stages):
            candidates = self._site_candidates(index, job.request)
        if source is not None and (source.pool in pools if pools is not None else
                                   any(c.device is source for c in candidates)):
            if (source.healthy or not self.health_aware) and source.uid != exclude:
                return source
        skip = next((i for i, c in enumerate(candidates) if c.device.uid == exclude), -1)
        if not self.health_aware:
            if skip < 0 or len(candidates) == 1:
                return candidates[self.routers[index].choose(candidates, job)].device if len(candidates) > 1 \
                    else candidates[0].device
            others = [c for i, c in enumerate(candidates) if i != skip]
            return others[self.routers[index].choose(others, job)].device if len(others) > 1 else others[0].device
        choice = self.pickers[index].choose(candidates, job, skip)
        if choice < 0 and skip >= 0:  # nowhere else to go: the failed instance itself, if it is back
            choice = self.pickers[index].choose(candidates, job)
        return candidates[choice].device if choice >= 0 else None

    def _go(self, job: Job, source: Optional[DeviceInstance], device: DeviceInstance, size: float,
            column: int) -> None:
        if device is source:
            self._queue(job, device)
            return
        job.request.ints[column * FIELDS + LINK] = self._send(
            source, device, size, lambda: self._queue(job, device), partial(self._attempt_failed, job, Reason.FAILED, -1),
            job.request)

    def _queue_checked(self, job: Job, device: DeviceInstance) -> None:
        """``_queue`` where devices fail: a job that reaches a down device fails."""
        if job.ended or job.request.outcome != Outcome.PENDING:
            return
        if not device.healthy:
            self._attempt_failed(job, Reason.FAILED, device.uid)
            return
        request = job.request
        admitted = device.offer(job)
        request.reals[self._origin[job.stage] * FIELDS + ENQUEUED] = job.enqueued
        if not admitted:
            self._finish(request, Outcome.DROPPED)

    def _attempt_done(self, job: Job) -> None:
        if job.ended:
            return
        job.ended = True
        now = self.env.now
        self.reactions[job.stage].succeeded(now, now - job.entered)  # even if the client gave up meanwhile
        if job.request.outcome == Outcome.PENDING:
            self._stage_done(job)

    def _fallback_done(self, job: Job) -> None:
        request = job.request
        if job.ended or request.outcome != Outcome.PENDING:
            return
        job.ended = True
        shadow = job.stage
        if self._fallback_degraded[shadow]:
            request.degraded = True
        job.stage = self._origin[shadow]
        self._stage_done(job, self._fallback_output[shadow])

    def _stage_timed_out(self, job: Job, request: Request) -> None:
        if job.ended or request.outcome != Outcome.PENDING:
            return
        job.request = self._void  # the attempt may still run; what it writes goes nowhere
        self._end_attempt(job, request, Reason.TIMED_OUT, -1)

    def _client_gives_up(self, request: Request) -> None:
        self._finish(request, Outcome.TIMED_OUT)

    def _attempt_failed(self, job: Job, reason: Reason, uid: int) -> None:
        request = job.request
        if job.ended:
            return
        if request.outcome != Outcome.PENDING:  # the client gave up already: the breaker still learns of it
            job.ended = True
            if job.stage < len(self.plan.stages):
                self.reactions[job.stage].breaker.record(self.env.now, False, self.env.now - job.entered)
            return
        self._end_attempt(job, request, reason, uid)

    def _end_attempt(self, job: Job, request: Request, reason: Reason, uid: int) -> None:
        job.ended = True
        in_fallback = job.stage >= len(self.plan.stages)
        stage = self._origin[job.stage]
        self._react(request, stage, reason, uid, self.env.now - job.entered, in_fallback)

    def _react(self, request: Request, stage: int, reason: Reason, uid: int, latency: float,
               in_fallback: bool) -> None:
        """A failed or refused attempt at ``stage``: ask the stage's reactions what follows."""
        now = self.env.now
        failures = request.stage_failures
        if failures is None:
            failures = request.stage_failures = [0] * len(self.plan.stages)
        if reason is not Reason.BREAKER_OPEN:
            failures[stage] += 1
        decision = self.reactions[stage].failed(now, failures[stage], reason, latency, in_fallback)
        source, size = self._input_of(request, stage)
        if isinstance(decision, Retry):
            request.retries += 1
            exclude, same = (uid, -1) if decision.other else (-1, uid)
            if decision.delay > 0:
                self.env.call_after(decision.delay, self._attempt, request, stage, source, size, exclude, same)
            else:
                self._attempt(request, stage, source, size, exclude, same)
        elif isinstance(decision, Fallback):
            if request.fallback == 0:
                request.fallback = int(decision.reason)
            self._fallback(request, stage, source, size)
        else:
            assert isinstance(decision, GiveUp)
            self._finish(request, decision.outcome)

    def _input_of(self, request: Request, stage: int) -> tuple[Optional[DeviceInstance], float]:
        """Where ``stage``'s input comes from (None: the client) and how many bytes it is."""
        preds = self.plan.stages[stage].preds
        reals = request.reals
        if self._paths:
            preds = self._fed(request, preds)
            return (self._last_device(request, preds) if preds else None,
                    sum(reals[p * FIELDS + OUT_BYTES] for p in preds) if preds else request.size)
        if not preds:
            return None, request.size
        return self.devices[request.ints[preds[-1] * FIELDS + INSTANCE]], sum(reals[p * FIELDS + OUT_BYTES] for p in preds)

    def _reply_checked(self, request: Request, device: DeviceInstance, size: float) -> None:
        request.reply_link = self._send(device, None, size, lambda: self._answer(request),
                                        partial(self._finish, request, Outcome.FAILED), request)

    # failure hooks (sim.model.failures.Hooks)

    def device_down(self, name: str, failure: FailurePlan) -> None:
        device = self._by_name[name]
        running, waiting = device.fail()
        for job in running + waiting:  # copies and background work are not stage attempts
            if isinstance(job, CopyJob) and job.owner is not None:
                self._finish(job.owner, Outcome.FAILED)  # its message is lost with the device
        running = [job for job in running if not isinstance(job, CopyJob)]
        waiting = [job for job in waiting if not isinstance(job, CopyJob)]
        for job in running:
            self._attempt_failed(job, Reason.FAILED, device.uid)
        for job in waiting:
            if failure.in_flight == "requeue":
                self._requeue(job)
            else:
                self._attempt_failed(job, Reason.FAILED, device.uid)

    def device_up(self, name: str) -> None:
        self._by_name[name].recover()

    def link_down(self, name: str) -> None:
        index = self._link_index[name]
        self._link_down[index] += 1
        self._link_epoch[index] += 1

    def link_up(self, name: str) -> None:
        self._link_down[self._link_index[name]] -= 1

    def _requeue(self, job: Job) -> None:
        """A waiting job of a failed device goes back to routing, as the same attempt."""
        request = job.request
        if job.ended or request.outcome != Outcome.PENDING:
            return
        stage = self._origin[job.stage]
        source, size = self._input_of(request, stage)
        device = self._pick(job.stage, job, source, -1, -1)
        if device is None:
            self._end_attempt(job, request, Reason.UNHEALTHY, -1)
            return
        self._go(job, source, device, size, stage)

    def _send_checked(self, source: Optional[DeviceInstance], target: Optional[DeviceInstance], size: float,
                      deliver: Callable[[], None], fail: Optional[Callable[[], None]] = None,
                      request: Optional[Request] = None) -> int:
        """``_send`` where links fail: a message over a down link fails, and so does one in flight."""
        a = source.pool if source else CLIENT
        b = target.pool if target else CLIENT
        links = self._hops[a, b]
        if not links:
            deliver()
            return -1
        kind = self.channel_policy.choose(size, [link.kind for link in links]) if len(links) > 1 else links[0].kind
        link = next(link for link in links if link.kind == kind)
        index = self._link_index[link.name]
        if self._link_down[index]:
            (fail or deliver)()
            return index
        epoch = self._link_epoch[index]

        def arrive() -> None:
            if self._link_epoch[index] != epoch and fail is not None:
                fail()
            else:
                deliver()

        self._channel(link, source, target, a).send(size, arrive)
        return index

    def resilience_record(self) -> Optional[ResilienceRecord]:
        if self.plan.resilience is None:
            return None
        return ResilienceRecord(
            outages=tuple((o.target, o.start, o.end) for o in (self.failures.outages if self.failures else ())),
            retries=(np.array([r.retries for r in self.requests], dtype=np.int64) if self.sink is None
                     else self._retries[:self.next_arrival].astype(np.int64)),
            fallback=(np.array([r.fallback for r in self.requests], dtype=np.int64) if self.sink is None
                      else self._fallbacks[:self.next_arrival].astype(np.int64)),
        )

    # --- topology (installed only when the scenario declares one) ----------

    def _install_topology(self, resilience) -> None:
        """Locality, routes of several hops, and replies through the ingress device (sim.topology)."""
        topology = self.plan.topology
        for device in self.devices:
            device.node = topology.node_of.get(device.pool, "")
            device.site = topology.site_of.get(device.pool, "")
        self._local = {}
        self._stage_pools = [frozenset(stage.pools) for stage in self.plan.stages]
        self._routes: dict[tuple[str, str], tuple] = {}
        self._legs: dict[tuple[int, int], tuple] = {}  # (source uid, target uid; -1: the client) -> _leg's
        self._links_fail = resilience is not None and any(f.link is not None for f in resilience.failures)
        self._ingress_stage = self.plan.roots[0]
        # sources wired to a site: request i (in arrival order) enters the site's instance i mod count
        self._enters: dict[int, tuple[frozenset[str], ...]] = {
            i: tuple(frozenset(p for p, site in topology.site_of.items() if site == instance)
                     for instance in topology.instances[spec.enters])
            for i, spec in enumerate(self.plan.scenario.workload.sources) if spec.enters is not None}
        if resilience is None:
            self._enter = self._enter_local
        self._send = self._send_routed
        self._reply = partial(self._reply_via_ingress, self._reply)

    def _local_candidates(self, stage: int, pool: str, request: Request) -> list[Candidate]:
        """The candidates of ``stage`` that locality allows for ``request`` on ``pool``."""
        roots = self._class_roots  # (``_ingress_of``, inline: this runs at every hop)
        uid = request.ints[(self._ingress_stage if roots is None else roots[request.klass][0]) * FIELDS + INSTANCE]
        home = self.devices[uid].pool if uid >= 0 else ""
        key = (stage, pool, home)
        found = self._local.get(key)
        if found is None:
            pools = self.plan.stages[stage].pools if stage < len(self.plan.stages) else self._fallback_pools[stage]
            allowed = set(self.plan.topology.local(pools, pool, home))
            found = self._local[key] = [c for c in self.candidates[stage] if c.device.pool in allowed]
        return found

    def _enter_local(self, request: Request, stage: int, source: Optional[DeviceInstance], size: float) -> None:
        """``_enter`` with locality: a request on a device chooses among its node's (or site's) pools."""
        job = Job(request, stage, 0, self.env.now, request.deadline, request.priority, self._stage_done)
        if source is not None and source.pool in self._stage_pools[stage]:
            self._queue(job, source)
            return
        if source is not None:
            candidates = self._local_candidates(stage, source.pool, request)
        elif request.source in self._enters:
            candidates = self._site_candidates(stage, request)
        else:
            candidates = self.candidates[stage]
        device = candidates[self.routers[stage].choose(candidates, job)].device if len(candidates) > 1 \
            else candidates[0].device
        request.ints[stage * FIELDS + LINK] = self._send(source, device, size, partial(self._queue, job, device),
                                                           None, request)

    def _site_candidates(self, stage: int, request: Request) -> list[Candidate]:
        """The candidates of ``stage`` in the site instance ``request`` enters (its source's ``enters``)."""
        sites = self._enters[request.source]
        key = (stage, request.source, request.id % len(sites))
        found = self._local.get(key)
        if found is None:
            found = self._local[key] = [c for c in self.candidates[stage] if c.device.pool in sites[key[2]]]
        return found

    def _ingress_of(self, request: Request) -> int:
        """The stage a request entered at: the first root, or its class's first entry."""
        return self._ingress_stage if self._class_roots is None else self._class_roots[request.klass][0]

    def _reply_via_ingress(self, reply, request: Request, device: DeviceInstance, size: float) -> None:
        """The reply goes back to the device the request entered, and leaves from there."""
        uid = request.ints[self._ingress_of(request) * FIELDS + INSTANCE]
        ingress = self.devices[uid] if uid >= 0 else device
        if ingress is device:
            reply(request, device, size)
            return
        self._send(device, ingress, size, lambda: reply(request, ingress, size),
                   partial(self._finish, request, Outcome.FAILED) if self._links_fail else None, request)

    def _send_routed(self, source: Optional[DeviceInstance], target: Optional[DeviceInstance], size: float,
                     deliver: Callable[[], None], fail: Optional[Callable[[], None]] = None,
                     request: Optional[Request] = None) -> int:
        """``_send`` over a route of several hops: store and forward, each hop on its own channel,
        with the host costs of the first link's sender and the last link's receiver; the index of
        the link of the last hop, or -1."""
        key = (source.uid if source is not None else -1, target.uid if target is not None else -1)
        leg = self._legs.get(key)
        if leg is None:
            leg = self._legs[key] = self._leg(source, target)
        route, chosen, channels, index, by_size, direct = leg
        if direct and channels[0] is not None:  # one hop, no host costs, links that do not fail: its channel
            channels[0].send(size, deliver)
            return index
        if not route:
            deliver()
            return -1
        if chosen is None:  # a hop with several links: the channel policy picks one per message, by size
            found = by_size.get(size)  # (a pure function of size and kinds: asked once per hop and size)
            if found is None:
                choose = self.channel_policy.choose
                chosen = [hop.links[0] if len(hop.links) == 1 else _link_of_kind(
                    hop.links, choose(size, [link.kind for link in hop.links])) for hop in route]
                if len(by_size) >= _SIZES_KEPT:
                    by_size.clear()
                found = by_size[size] = (chosen, self._link_index[chosen[-1].name])
            chosen, index = found
        self._cross(route, chosen, channels, 0, source, target, size, deliver, fail, request)
        return index

    def _leg(self, source: Optional[DeviceInstance], target: Optional[DeviceInstance]) -> tuple:
        """What a message between two endpoints (None: the client) goes over, found on the pair's first
        message: the route; when each hop has one link, those links, the hops' channels (each made when
        a message first reaches it, as ``_channel`` would), the last link's index and None; else None, None,
        -1 and the links chosen for each message size (filled as sizes come); last, whether a message is
        only sent on the channel of its one hop (no host costs, links that do not fail: what ``_cross``
        would do)."""
        a = source.pool if source is not None else CLIENT
        b = target.pool if target is not None else CLIENT
        route = self._routes.get((a, b))
        if route is None:
            if self.plan.topology is not None:
                route = self.plan.topology.route(a, b) or ()  # None: a client hop, no client links
            else:
                route = (Hop(a, b, tuple(self._hops[a, b])),) if self._hops[a, b] else ()
            self._routes[a, b] = route
        if route and all(len(hop.links) == 1 for hop in route):
            chosen = tuple(hop.links[0] for hop in route)
            link = chosen[0]
            direct = len(route) == 1 and not self._links_fail and link.send_cost is None and link.receive_cost is None
            return route, chosen, [None] * len(route), self._link_index[chosen[-1].name], None, direct
        return route, None, None, -1, {}, False

    def _cross(self, route, chosen, channels: Optional[list], i: int, source, target, size: float, deliver, fail,
               request) -> None:
        hop, link = route[i], chosen[i]
        last = i == len(route) - 1
        if not last:
            onward = partial(self._cross, route, chosen, channels, i + 1, source, target, size, deliver, fail, request)
        elif target is not None and link.receive_cost is not None and self._pays[target.uid]:
            onward = partial(self._copy, target, link.receive_cost, size, deliver, request)
        else:
            onward = deliver
        if self._links_fail:
            index = self._link_index[link.name]
            if self._link_down[index]:
                (fail or onward)()
                return
            epoch, forward = self._link_epoch[index], onward

            def onward() -> None:
                if self._link_epoch[index] != epoch and fail is not None:
                    fail()
                else:
                    forward()
        channel = channels[i] if channels is not None else None
        if channel is None:
            channel = self._channel(link, source if i == 0 else None, target if last else None, hop.frm)
            if channels is not None:
                channels[i] = channel
        if i == 0 and source is not None and link.send_cost is not None and self._pays[source.uid]:
            self._copy(source, link.send_cost, size, partial(channel.send, size, onward), request)
        else:
            channel.send(size, onward)

    def _send_merged(self, send, source: Optional[DeviceInstance], target: Optional[DeviceInstance], size: float,
                     deliver: Callable[[], None], fail: Optional[Callable[[], None]] = None,
                     request: Optional[Request] = None) -> int:
        """``send``, but the messages one device sends to another at the same instant (the jobs of one
        batch) leave together, as one message of their total size, once the instant's work is done."""
        if source is None or target is None or source is target:
            return send(source, target, size, deliver, fail, request)
        key = (source.uid, target.uid)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = [0.0, [], [], request, []]
            self.env.call_after(0, self._flush, send, source, target, key)
        pending[0] += size
        pending[1].append(deliver)
        pending[2].append(fail)
        if request is not None:
            pending[4].append(request)
        return _MERGING  # the merged message picks its link when it leaves; _flush records it

    def _flush(self, send, source: DeviceInstance, target: DeviceInstance, key: tuple[int, int]) -> None:
        size, delivers, fails, request, senders = self._pending.pop(key)
        # a request may end inside send (a down link fails the message at once): no marker in its row then
        marked = [(sender.ints, k) for sender in senders for k in range(LINK, len(sender.ints), FIELDS)
                  if sender.ints[k] == _MERGING]
        for ints, k in marked:
            ints[k] = -1
        if len(delivers) == 1:
            index = send(source, target, size, delivers[0], fails[0], request)
        else:
            index = send(source, target, size, lambda: [deliver() for deliver in delivers],
                         (lambda: [f() for f in fails if f is not None]) if any(fails) else None, request)
        for ints, k in marked:  # the hop's link, in each request's record, is the merged message's
            if ints[k] == -1:  # (not a retry's, sent meanwhile)
                ints[k] = index

    # --- other work on a device: host costs of moving data, background load ---

    def _background(self, device: DeviceInstance, load: float, mean: float, draws: np.random.Generator) -> None:
        """Poisson arrivals of exponential jobs on ``device``'s copy stage, ``load`` of its servers busy."""
        rate = load * device.servers / mean
        nothing = _nothing

        def arrive() -> None:
            now = self.env.now
            job = CopyJob(self._scratch, self._copy_stage, 0, now, math.inf, 0, _copied, now, False,
                          float(draws.exponential(mean)), nothing)
            if device.healthy:  # a down device does no other work either
                device.offer(job)  # a refused piece of background work is simply not done
            self.env.call_after(float(draws.exponential(1 / rate)), arrive)

        self.env.call_after(float(draws.exponential(1 / rate)), arrive)


    def _install_host_costs(self) -> None:
        self._routes = getattr(self, "_routes", {})
        self._legs = getattr(self, "_legs", {})
        self._links_fail = getattr(self, "_links_fail", False) or (
            self.plan.resilience is not None and any(f.link is not None for f in self.plan.resilience.failures))
        self._send = self._send_routed
        # CPU time is spent by CPUs and DPUs; a GPU's copies are driven by the host at the other end
        self._pays = [self.plan.pools[device.pool].kind != "gpu" for device in self.devices]

    def _copy(self, device: DeviceInstance, cost: tuple[float, float], size: float, then: Callable[[], None],
              request: Optional[Request]) -> None:
        """Spend the CPU time of one message on ``device``: a job of its copy stage, queued and
        dispatched by its station like any other; ``then`` when it is done."""
        seconds = cost[0] + cost[1] * size
        now = self.env.now
        job = CopyJob(self._scratch, self._copy_stage, 0, now, request.deadline if request else math.inf,
                      request.priority if request else 0, _copied, now, False, seconds, then, request)
        if not device.healthy:  # the device that would copy it is down: the message is lost
            if request is not None:
                self._finish(request, Outcome.FAILED)
            return
        if not device.offer(job):  # admission refused the copy: the message is not sent
            if request is not None:
                self._finish(request, Outcome.DROPPED)

    # --- links ----------------------------------------------------------

    def _send(self, source: Optional[DeviceInstance], target: Optional[DeviceInstance], size: float,
              deliver: Callable[[], None], fail: Optional[Callable[[], None]] = None,
              request: Optional[Request] = None) -> int:
        """Carry ``size`` bytes from one device (None: the client) to another; the link's index or -1.

        ``fail`` is called instead of ``deliver`` when the link is down (only where links fail).
        """
        a = source.pool if source is not None else CLIENT
        return self._send_over(self._hop[a, target.pool if target is not None else CLIENT], a, source, target, size,
                               deliver)

    def _send_over(self, hop: _Hop, a: str, source: Optional[DeviceInstance], target: Optional[DeviceInstance],
                   size: float, deliver: Callable[[], None]) -> int:
        """``_send`` over ``hop`` (from pool ``a``)."""
        link = hop.link
        if link is None:
            if not hop.links:  # a client hop with no client links declared, or a same-pool hop
                deliver()
                return -1
            kind = self.channel_policy.choose(size, hop.kinds)
            link = next(link for link in hop.links if link.kind == kind)
        self._channel(link, source, target, a).send(size, deliver)
        return self._link_index[link.name]

    def _channel(self, link: LinkPlan, source, target, direction: str) -> Channel:
        """The channel a message takes, made when first used: per pair of instances (``per-pair``), per
        sending instance (``per-port``: O(instances) channels however traffic spreads) or one per direction."""
        if link.sharing == "shared":
            key = (link.name, direction)
        elif link.sharing == "per-port":  # the sender's port; from the client, the receiver's
            # (a route's middle hop has neither: one channel, as per-pair's)
            key = (link.name, source.uid, -1) if source is not None else \
                (link.name, -1, target.uid if target is not None else -1)
        else:
            key = (link.name, source.uid if source else -1, target.uid if target else -1)
        channel = self._channels.get(key)
        if channel is None:
            channel = make_channel(link.contention, self.env, link.name, link.bandwidth,
                                   self._latency[link.name], link.overhead, self.window)
            self._channels[key] = channel
        return channel

    # --- routing among many candidates ------------------------------------

    def _index_routers(self, kind: str) -> None:
        """Join-shortest-queue among many candidates: a load index per stage, refreshed by its devices."""
        if kind != "shortest-queue":
            return
        members: dict[int, list[tuple[IndexedShortestQueue, int]]] = {}
        for stage, candidates in enumerate(self.candidates):
            if len(candidates) >= INDEX_FROM:
                router = self.routers[stage] = IndexedShortestQueue(candidates)
                for i, candidate in enumerate(candidates):
                    members.setdefault(candidate.device.uid, []).append((router, i))
        for uid, entries in members.items():
            self.devices[uid].watch(partial(_refresh_all, tuple(entries)))

    def channels_by_link(self) -> dict[str, list[Channel]]:
        out: dict[str, list[Channel]] = {link.name: [] for link in self.plan.links}
        for key, channel in self._channels.items():
            out[key[0]].append(channel)
        return out

    # --- estimates for policies ------------------------------------------

    def _remaining_service(self) -> list[float]:
        """Mean service from a stage's start to the end of the pipeline (longest path)."""
        stages = self.plan.stages
        remaining = [0.0] * len(stages)
        for stage in reversed(stages):
            pool = self.plan.pools[stage.pools[0]]
            own = stage.costs[pool.kind].mean(1) / pool.speed
            remaining[stage.index] = own + max((remaining[s] for s in stage.succs), default=0.0)
        return remaining

