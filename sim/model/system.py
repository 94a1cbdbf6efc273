"""The simulated system: a request's path from source to reply.

``System`` builds one SimPy environment from a plan: a ``DeviceInstance``
for every device of every pool, link channels on demand, and the policy
objects. Requests then flow:

    arrival -> [hop over a link] -> admission -> device queue -> batch ->
    service -> pass/filter -> successors ... -> reply over a link -> outcome

Everything is driven by callbacks on SimPy timeouts (no process per
request), which keeps the model fast. Rules a user should know:

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import simpy

from sim.contract import streams
from sim.contract.outcomes import Outcome
from sim.costs import Sampler, make_sampler
from sim.model.device import Candidate, DeviceInstance, StageService, Window
from sim.model.link import Channel, make_channel
from sim.model.request import Job, Request
from sim.plan import LinkPlan, Plan
from sim.policies.admission import ADMISSION
from sim.policies.channel import CHANNELS
from sim.policies.queueing import DISCIPLINES
from sim.policies.routing import ROUTING
from sim.scenario.schema import CLIENT
from sim.station import ModelEstimates, Station
from sim.workload import Arrivals

Progress = Callable[[float], None]


@dataclass(frozen=True)
class RunOutput:
    """Everything a finished run leaves for the metrics."""

    plan: Plan
    arrivals: Arrivals
    requests: list[Request]
    devices: list[DeviceInstance]
    channels: dict[str, list[Channel]]
    window: Window


class System:
    """One replication of one design."""

    def __init__(self, plan: Plan, arrivals: Arrivals, seed: int, replication: int):
        self.plan = plan
        self.arrivals = arrivals
        self.seed = seed
        self.replication = replication

    def run(self, progress: Optional[Progress] = None) -> RunOutput:
        run = self.plan.scenario.run
        env = simpy.Environment()
        window = Window(run.warmup, run.duration)
        state = _State(self.plan, self.arrivals, env, window, self.seed, self.replication)
        state.schedule_next_arrival()
        horizon = run.duration + run.drain
        steps = 50 if progress else 1
        for step in range(1, steps + 1):
            env.run(until=horizon * step / steps)
            if progress:
                progress(step / steps)
            if state.finished == len(self.arrivals) and state.next_arrival >= len(self.arrivals):
                break
        for request in state.requests:
            if request.outcome == Outcome.PENDING:
                request.outcome = Outcome.UNFINISHED
        return RunOutput(self.plan, self.arrivals, state.requests, state.devices, state.channels_by_link(), window)


class _State:
    """The live model of one run; all callbacks live here."""

    def __init__(self, plan: Plan, arrivals: Arrivals, env: simpy.Environment, window: Window,
                 seed: int, replication: int):
        self.plan = plan
        self.arrivals = arrivals
        self.env = env
        self.window = window
        self.requests: list[Request] = []
        self.finished = 0
        self.next_arrival = 0
        policies = plan.scenario.policies
        rng = lambda name: streams.stream_rng(seed, replication, name)  # noqa: E731
        stages = plan.stages
        self.remaining = self._remaining_service()
        after = [max((self.remaining[s] for s in stage.succs), default=0.0) for stage in stages]
        discipline = DISCIPLINES[policies.queue.kind]()
        admission = ADMISSION[policies.admission.kind](policies.admission)

        # Each pool: the stages it serves and their service-time draws (one stream per stage and pool).
        pool_stages: dict[str, dict[int, Sampler]] = {name: {} for name in plan.pools}
        for stage in stages:
            for pool_name in stage.pools:
                pool = plan.pools[pool_name]
                pool_stages[pool_name][stage.index] = make_sampler(
                    stage.costs[pool.kind], rng(streams.service(stage.name, pool_name)), 1 / pool.speed)

        self.devices: list[DeviceInstance] = []
        pool_devices: dict[str, list[DeviceInstance]] = {}
        batch_ids = [0]
        for pool in plan.pools.values():
            samplers = pool_stages[pool.name]
            estimates = ModelEstimates({i: smp.mean for i, smp in samplers.items()}, self.remaining, after)
            batching = {i: stages[i].batching for i in samplers}
            pool_devices[pool.name] = []
            for name in pool.instance_names():
                station = Station(batching, discipline, admission, estimates, pool.servers)
                services = {i: StageService(smp) for i, smp in samplers.items()}
                device = DeviceInstance(env, len(self.devices), name, pool.name, pool.servers, window,
                                        station, services, batch_ids)
                self.devices.append(device)
                pool_devices[pool.name].append(device)

        self.candidates: list[list[Candidate]] = []
        self.routers = []
        self.pass_draws: list[Optional[np.ndarray]] = []
        for stage in stages:
            self.candidates.append(
                [Candidate(d, tier) for tier, p in enumerate(stage.pools) for d in pool_devices[p]]
            )
            self.routers.append(ROUTING[policies.routing.kind](policies.routing, rng(streams.routing(stage.name))))
            self.pass_draws.append(
                rng(streams.passes(stage.name)).random(len(arrivals)) if stage.pass_probability < 1 else None
            )
        self.channel_policy = CHANNELS[policies.channel.kind](policies.channel)
        self._hops = {
            (a, b): plan.links_between(a, b)
            for a in [CLIENT, *plan.pools] for b in [CLIENT, *plan.pools]
        }
        self._link_index = {link.name: i for i, link in enumerate(plan.links)}
        self._channels: dict[tuple, Channel] = {}
        self._latency: dict[str, Sampler] = {
            link.name: make_sampler(link.latency, rng(streams.latency(link.name))) for link in plan.links
        }
        self._preds = [len(s.preds) for s in stages]
        self._sinks = len(plan.sinks)

    # --- arrivals -------------------------------------------------------

    def schedule_next_arrival(self) -> None:
        if self.next_arrival < len(self.arrivals):
            delay = self.arrivals.time[self.next_arrival] - self.env.now
            self.env.timeout(max(0.0, delay)).callbacks.append(self._on_arrival)

    def _on_arrival(self, _event) -> None:
        a, i = self.arrivals, self.next_arrival
        self.next_arrival += 1
        request = Request.blank(
            i, int(a.source[i]), int(a.klass[i]), int(a.priority[i]), float(a.time[i]),
            float(a.deadline[i]), float(a.size[i]), self._preds, self._sinks,
        )
        self.requests.append(request)
        for root in self.plan.roots:
            self._enter(request, root, None, request.size)
        self.schedule_next_arrival()

    # --- stage entry ----------------------------------------------------

    def _enter(self, request: Request, stage: int, source: Optional[DeviceInstance], size: float) -> None:
        now = self.env.now
        job = Job(request, stage, 0, now, request.deadline, request.priority, self._stage_done)
        pools = self.plan.stages[stage].pools
        if source is not None and source.pool in pools:
            device = source
        else:
            candidates = self.candidates[stage]
            device = candidates[self.routers[stage].choose(candidates, job)].device if len(candidates) > 1 else candidates[0].device
        if device is source:
            self._queue(job, device)
            return
        request.link[stage] = self._send(source, device, size, lambda: self._queue(job, device))

    def _queue(self, job: Job, device: DeviceInstance) -> None:
        request = job.request
        if request.outcome != Outcome.PENDING:
            return
        if not device.offer(job):
            request.enqueued[job.stage] = job.enqueued
            self._finish(request, Outcome.DROPPED)
            return
        request.enqueued[job.stage] = job.enqueued

    # --- stage exit -----------------------------------------------------

    def _stage_done(self, job: Job) -> None:
        request, index = job.request, job.stage
        if request.outcome != Outcome.PENDING:
            return
        stage = self.plan.stages[index]
        draws = self.pass_draws[index]
        if draws is not None and draws[request.id] >= stage.pass_probability:
            self._finish(request, Outcome.FILTERED)
            return
        received = sum(request.out_bytes[p] for p in stage.preds) if stage.preds else request.size
        out = stage.output if stage.output is not None else received
        request.out_bytes[index] = out
        device = self.devices[request.instance[index]]
        for succ in stage.succs:
            request.waiting_preds[succ] -= 1
            if request.waiting_preds[succ] == 0:
                size = sum(request.out_bytes[p] for p in self.plan.stages[succ].preds)
                self._enter(request, succ, device, size)
        if not stage.succs:
            request.sinks_left -= 1
            if request.sinks_left == 0:
                reply = self.plan.reply_bytes if self.plan.reply_bytes is not None else out
                request.reply_link = self._send(device, None, reply, lambda: self._answer(request))

    def _answer(self, request: Request) -> None:
        late = self.env.now > request.deadline
        self._finish(request, Outcome.DEADLINE_MISSED if late else Outcome.COMPLETED)

    def _finish(self, request: Request, outcome: Outcome) -> None:
        if request.outcome == Outcome.PENDING:
            request.outcome = outcome
            request.done = self.env.now
            self.finished += 1

    # --- links ----------------------------------------------------------

    def _send(self, source: Optional[DeviceInstance], target: Optional[DeviceInstance], size: float,
              deliver: Callable[[], None]) -> int:
        """Carry ``size`` bytes from one device (None: the client) to another; the link's index or -1."""
        a = source.pool if source else CLIENT
        b = target.pool if target else CLIENT
        links = self._hops[a, b]
        if not links:  # a client hop with no client links declared, or a same-pool hop
            deliver()
            return -1
        kind = self.channel_policy.choose(size, [link.kind for link in links]) if len(links) > 1 else links[0].kind
        link = next(link for link in links if link.kind == kind)
        self._channel(link, source, target, a).send(size, deliver)
        return self._link_index[link.name]

    def _channel(self, link: LinkPlan, source, target, direction: str) -> Channel:
        if link.sharing == "shared":
            key = (link.name, direction)
        else:
            key = (link.name, source.uid if source else -1, target.uid if target else -1)
        channel = self._channels.get(key)
        if channel is None:
            channel = make_channel(link.contention, self.env, link.name, link.bandwidth,
                                   self._latency[link.name], link.overhead, self.window)
            self._channels[key] = channel
        return channel

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

