"""Offered load against capacity, from the plan alone: is the design overloaded?

A design whose offered load exceeds the capacity of one of its pools or
links cannot keep up at any queue length: its queues grow for the whole
run and the latencies then measure the run's length, not the design. This
module says so before anyone reads the numbers, from the compiled plan:

- the arrival rate of every source (periodic: streams x mean rate;
  Poisson/gamma: the rate; MMPP: the dwell-weighted mean rate; trace: its
  arrivals over the run's duration) and its mean payload;
- the rate reaching each stage: requests pass every prefilter upstream of
  it (``pass_probability`` of each ancestor, drawn independently); with
  per-class entries or branches, each class from its own entries, and
  each branch with its probability (``_path_flows``);
- per pool: offered work = rate x mean service time per request (the
  stage's cost at its largest batch, divided by the batch and by the
  pool's speed), against servers x count. A stage on several pools is
  split in proportion to each pool's capacity (the best any router does);
- per link and direction: messages/s x channel occupancy per message
  (``overhead + bytes / bandwidth`` for fifo, ``bytes / bandwidth`` for
  shared contention), against its channels (one per pair of device
  instances for ``per-pair`` sharing, else one); bytes are the stage's
  input (the payload at the first stage, the predecessors' outputs later)
  and the reply. Of several links between the same ends, each message
  takes the one the channel policy picks for its size, as in the
  simulator;
- host costs of moving data: each message's ``send_cost`` on its sending
  pool and ``receive_cost`` on its receiving pool (CPUs and DPUs), as
  work of those pools; a pool's ``background`` load takes its share of
  the pool's servers.

With a ``topology`` (``sim.topology``), requests follow its rules: a
request entering from the client may go to any pool of the first stage
(in proportion to capacity) and that pool is its *ingress*; at later
stages it goes only to the pools ``locality`` allows from where it is; a
transfer crosses every link of its route (a link shared by every device
behind it, ``sharing: shared``, is one channel for all of them; a
``per-pair`` link has one channel per sending device on a route's first
hop, per receiving device on its last, one in between), and the reply
returns through the ingress device to the client.

The estimate is of the mean load: utilisation below 1 can still queue
(and batching needs the load to fill batches), but above 1 it is certain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from sim.plan import LinkPlan, Plan
from sim.policies.channel import CHANNELS
from sim.scenario.schema import CLIENT, GammaSource, MmppSource, PeriodicSource, PoissonSource, TraceSource


@dataclass(frozen=True)
class Load:
    """The mean offered load of one pool or link against what it can do."""

    kind: str  # "pool" or "link"
    name: str
    offered: float  # server-seconds per second (pool) or channel-seconds per second (link)
    capacity: float  # servers x instances, or channels (per direction)

    @property
    def utilisation(self) -> float:
        return self.offered / self.capacity if self.capacity > 0 else float("inf")

    def warning(self) -> str:
        unit = "busy servers" if self.kind == "pool" else "busy channels"
        return (f"{self.kind} {self.name}: offered load is {self.utilisation:.2f}x its capacity "
                f"({self.offered:.3g} {unit} needed, {self.capacity:g} available); queues grow for the whole "
                f"run and latencies measure the run's length, not the design")


def offered_loads(plan: Plan) -> list[Load]:
    """Every pool's and link's mean utilisation implied by the plan's workload."""
    stages = plan.stages
    if plan.branched:  # each class on its own path, each branch with its share
        parts = [(rate, payload, *_path_flows(plan, plan.entries_of(name)))
                 for name, (rate, payload) in class_rates(plan).items()]
    else:
        rate, payload = arrival_rate(plan)
        parts = [(rate, payload, _ancestor_flows(plan), None)]

    def per_request(stage, pool_name: str) -> float:
        pool = plan.pools[pool_name]
        batch = max(stage.batching.max_batch, 1)
        return stage.costs[pool.kind].mean(batch) / batch / pool.speed

    shares: list[dict[str, float]] = []
    for stage in stages:
        power = {p: plan.pools[p].servers * plan.pools[p].count / max(per_request(stage, p), 1e-300)
                 for p in stage.pools}
        total = sum(power.values())
        shares.append({p: power[p] / total for p in stage.pools})

    if plan.topology is not None:
        return _routed_loads(plan, parts, shares, per_request)

    busy = {name: 0.0 for name in plan.pools}
    for rate, _, flows, _ in parts:
        reach = [rate * flow for flow in flows]
        for stage in stages:
            for pool, share in shares[stage.index].items():
                busy[pool] += reach[stage.index] * share * per_request(stage, pool)
    occupancy: dict[tuple[str, str, str], float] = {}
    client_links = any(CLIENT in link.ends for link in plan.links)

    def send(a: str, b: str, messages: float, size: float) -> None:
        if a == b or messages <= 0:
            return
        links = plan.links_between(a, b)
        if not links or (CLIENT in (a, b) and not client_links):
            return
        link = _chosen(plan, links, size)
        hold = size / link.bandwidth + (link.overhead if link.contention == "fifo" else 0.0)
        key = (link.name, a, b)
        occupancy[key] = occupancy.get(key, 0.0) + messages * hold
        _host_work(plan, busy, link, link, a, b, messages, size)

    for rate, payload, flows, edges in parts:
        reach = [rate * flow for flow in flows]
        out_bytes: list[float] = [0.0] * len(stages)
        for stage in stages:
            preds = stage.preds if edges is None else [p for p in stage.preds if edges.get((p, stage.index))]
            if edges is not None and not reach[stage.index]:
                continue
            received = sum(out_bytes[p] for p in preds) if preds else payload
            out_bytes[stage.index] = stage.output if stage.output is not None else received
            for dst, into in shares[stage.index].items():
                if not preds:
                    send(CLIENT, dst, reach[stage.index] * into, received)
                for p in preds:
                    messages = reach[stage.index] if edges is None else rate * edges[p, stage.index]
                    for src, share in shares[p].items():
                        send(src, dst, messages * share * into, out_bytes[p])
            if not stage.succs:
                reply = plan.reply_bytes if plan.reply_bytes is not None else out_bytes[stage.index]
                passing = reach[stage.index] * stage.pass_probability
                for src, share in shares[stage.index].items():
                    send(src, CLIENT, passing * share, reply)

    loads = _pool_loads(plan, busy)
    for link in plan.links:
        directions = [(a, b) for (name, a, b) in occupancy if name == link.name]
        if not directions:
            loads.append(Load("link", link.name, 0.0, _channels(plan, link, *link.ends)))
            continue
        busiest = max(directions, key=lambda d: occupancy[(link.name, *d)] / _channels(plan, link, *d))
        loads.append(Load("link", link.name, occupancy[(link.name, *busiest)], _channels(plan, link, *busiest)))
    return loads


def _routed_loads(plan: Plan, parts, shares: list[dict[str, float]], per_request) -> list[Load]:
    """``offered_loads`` on a topology: flows by ingress pool, affinity and locality, routes of several hops.

    ``parts``: (rate, payload, share of requests reaching each stage, branch edge flows or None), one
    per request class on branched pipelines. A request stays on its pool when the next stage may run
    there (affinity); otherwise it goes to the pools locality allows from where it is, in proportion to
    their capacity. A join's input is one message of its predecessors' outputs, sent (here) from its
    first predecessor's pool."""
    topology = plan.topology
    busy = {name: 0.0 for name in plan.pools}
    count = {CLIENT: 1, **{name: pool.count for name, pool in plan.pools.items()}}
    client_links = any(CLIENT in link.ends for link in plan.links)
    occupancy: dict[tuple[str, str, str], float] = {}
    channels: dict[tuple[str, str, str], float] = {}

    def send(a: str, b: str, messages: float, size: float) -> None:
        if a == b or messages <= 0 or (CLIENT in (a, b) and not client_links):
            return
        hops = topology.route(a, b) or ()
        chosen = [_chosen(plan, hop.links, size) for hop in hops]
        for i, (hop, link) in enumerate(zip(hops, chosen)):
            hold = size / link.bandwidth + (link.overhead if link.contention == "fifo" else 0.0)
            key = (link.name, hop.frm, hop.to)
            occupancy[key] = occupancy.get(key, 0.0) + messages * hold
            if link.sharing == "shared":  # one channel per direction for every device behind it
                channels[key] = 1.0
            elif link.sharing == "per-port":  # the sender's port on the first hop, else the receiver's
                ends = count.get(a, 1) if i == 0 and a != CLIENT else (count.get(b, 1) if i == len(hops) - 1 else 1)
                channels[key] = max(channels.get(key, 1.0), float(ends))
            else:  # per-pair: keyed by the sending device on the first hop, the receiving one on the last
                ends = (count.get(a, 1) if i == 0 else 1) * (count.get(b, 1) if i == len(hops) - 1 else 1)
                channels[key] = max(channels.get(key, 1.0), float(ends))
        if hops:
            _host_work(plan, busy, chosen[0], chosen[-1], a, b, messages, size)

    for rate, payload, flows, edges in parts:
        reach = [rate * flow for flow in flows]
        _route_part(plan, reach, payload, edges, shares, per_request, busy, send)

    loads = _pool_loads(plan, busy)
    for link in plan.links:
        directions = [(a, b) for (name, a, b) in occupancy if name == link.name]
        if not directions:
            loads.append(Load("link", link.name, 0.0, 1.0 if link.sharing == "shared" else
                              _channels(plan, link, *link.ends)))
            continue
        busiest = max(directions, key=lambda d: occupancy[(link.name, *d)] / channels[(link.name, *d)])
        loads.append(Load("link", link.name, occupancy[(link.name, *busiest)], channels[(link.name, *busiest)]))
    return loads


def _chosen(plan: Plan, links, size: float) -> LinkPlan:
    """The link of ``links`` (between the same two ends) a message of ``size`` bytes takes: the channel
    policy's choice, as in the simulator."""
    if len(links) == 1:
        return links[0]
    kind = CHANNELS[plan.scenario.policies.channel.kind](plan.scenario.policies.channel).choose(
        size, [link.kind for link in links])
    return next(link for link in links if link.kind == kind)


def _host_work(plan: Plan, busy: dict[str, float], first: LinkPlan, last: LinkPlan, a: str, b: str,
               messages: float, size: float) -> None:
    """The CPU time a transfer costs its ends: the first link's ``send_cost`` on ``a``, the last link's
    ``receive_cost`` on ``b`` (CPUs and DPUs only; a GPU's copies are its host's)."""
    for pool, cost in ((a, first.send_cost), (b, last.receive_cost)):
        if cost is not None and pool in busy and plan.pools[pool].kind != "gpu":
            busy[pool] += messages * (cost[0] + cost[1] * size)


def _pool_loads(plan: Plan, busy: dict[str, float]) -> list[Load]:
    """Each pool's load against its servers; background load (``background``) takes its share of them."""
    return [Load("pool", name, busy[name],
                 pool.servers * pool.count * (1.0 - (pool.background[0] if pool.background else 0.0)))
            for name, pool in plan.pools.items()]


def _route_part(plan: Plan, reach: list[float], payload: float, edges, shares: list[dict[str, float]],
                per_request, busy: dict[str, float], send) -> None:
    """One class's (or the whole workload's) flows on a topology, added to ``busy`` and sent with ``send``."""
    topology = plan.topology
    stages = plan.stages
    at: list[dict[tuple[str, str], float]] = []  # per stage: (ingress, pool) -> requests per second
    moves: list[dict[tuple[str, str, str], float]] = []  # per stage: (ingress, from, to) -> requests per second
    preds_of: list[list[int]] = []
    for stage in stages:
        here: dict[tuple[str, str], float] = {}
        moved: dict[tuple[str, str, str], float] = {}
        preds = list(stage.preds) if edges is None else [p for p in stage.preds if edges.get((p, stage.index))]
        preds_of.append(preds)
        if reach[stage.index] <= 0:
            pass
        elif not preds:
            for pool, share in shares[stage.index].items():
                here[(pool, pool)] = reach[stage.index] * share
                moved[(pool, CLIENT, pool)] = reach[stage.index] * share
        else:
            first = at[preds[0]]
            total = sum(first.values())
            for (ingress, src), rate in first.items():
                allowed = (src,) if src in stage.pools else topology.local(stage.pools, src)
                weight = sum(shares[stage.index][p] for p in allowed)
                for dst in allowed:
                    flow = reach[stage.index] * rate / total * shares[stage.index][dst] / weight if total else 0.0
                    here[(ingress, dst)] = here.get((ingress, dst), 0.0) + flow
                    moved[(ingress, src, dst)] = moved.get((ingress, src, dst), 0.0) + flow
        at.append(here)
        moves.append(moved)

    for stage in stages:
        for (_, pool), rate in at[stage.index].items():
            busy[pool] += rate * per_request(stage, pool)

    out_bytes: list[float] = [0.0] * len(stages)
    for stage in stages:
        preds = preds_of[stage.index]
        received = sum(out_bytes[p] for p in preds) if preds else payload
        out_bytes[stage.index] = stage.output if stage.output is not None else received
        for (_, src, dst), rate in moves[stage.index].items():
            send(src, dst, rate, received)
        if not stage.succs:
            reply = plan.reply_bytes if plan.reply_bytes is not None else out_bytes[stage.index]
            for (ingress, src), rate in at[stage.index].items():
                passing = rate * stage.pass_probability
                send(src, ingress, passing, reply)  # the reply returns through the ingress device
                send(ingress, CLIENT, passing, reply)


def overloads(plan: Plan) -> list[Load]:
    """The pools and links the workload offers more than they can do, busiest first."""
    return sorted((load for load in offered_loads(plan) if load.utilisation > 1.0), key=lambda l: -l.utilisation)


def overload_warnings(plan: Plan) -> list[dict]:
    """``overloads`` as plain data for summary.json."""
    return [{"kind": load.kind, "name": load.name, "utilisation": round(load.utilisation, 4),
             "message": load.warning()} for load in overloads(plan)]


def _channels(plan: Plan, link: LinkPlan, a: str, b: str) -> float:
    """Channels of ``link`` from ``a`` to ``b``: one (shared), one per sending instance (per-port; from the
    client, per receiving instance) or one per pair of instances (per-pair)."""
    if link.sharing == "shared":
        return 1.0
    count = {CLIENT: 1}
    count.update({name: pool.count for name, pool in plan.pools.items()})
    if link.sharing == "per-port":
        return float(count.get(b, 1) if a == CLIENT else count.get(a, 1))
    return float(count.get(a, 1) * count.get(b, 1))


def arrival_rate(plan: Plan) -> tuple[float, float]:
    """Mean arrival rate of the whole workload and the mean payload of an arrival."""
    rates: list[tuple[float, float]] = []
    for source in plan.scenario.workload.sources:
        rates.append(_source_rate(plan, source))
    total = sum(r for r, _ in rates)
    payload = sum(r * s for r, s in rates) / total if total > 0 else 0.0
    return total, payload


def _ancestor_flows(plan: Plan) -> list[float]:
    """The share of requests reaching each stage: they pass every prefilter upstream (independently)."""
    stages = plan.stages
    flows: list[float] = [0.0] * len(stages)
    ancestors: list[set[int]] = [set() for _ in stages]
    for stage in stages:  # topological order
        for p in stage.preds:
            ancestors[stage.index] |= ancestors[p] | {p}
        passed = 1.0
        for a in ancestors[stage.index]:
            passed *= stages[a].pass_probability
        flows[stage.index] = passed
    return flows


def _path_flows(plan: Plan, entries: tuple[int, ...]) -> tuple[list[float], dict[tuple[int, int], float]]:
    """Shares of one class's requests reaching each stage and crossing each edge, with branches.

    An edge carries what its stage passes times the branch's probability; a stage receives the sum of
    its edges, at most 1: exact on paths, branches and merges after branches; a join after a fork with a
    prefilter on one arm counts the unfiltered arm (an overestimate)."""
    flows = [0.0] * len(plan.stages)
    edges: dict[tuple[int, int], float] = {}
    for stage in plan.stages:  # topological order
        if stage.index in entries:
            flows[stage.index] = 1.0
        else:
            flows[stage.index] = min(1.0, sum(edges.get((p, stage.index), 0.0) for p in stage.preds))
        passing = flows[stage.index] * stage.pass_probability
        branch = stage.branch
        for succ in stage.succs:
            share = 1.0 if branch is None else sum(
                b.probability for t, b in zip(branch.targets, branch.branches) if t == succ)
            if passing * share > 0:
                edges[stage.index, succ] = passing * share
    return flows, edges


def class_rates(plan: Plan) -> dict[str, tuple[float, float]]:
    """Per request class, its mean arrival rate and mean payload."""
    rates: dict[str, list[tuple[float, float]]] = {}
    for source in plan.scenario.workload.sources:
        rates.setdefault(source.class_, []).append(_source_rate(plan, source))
    out = {}
    for name, pairs in rates.items():
        total = sum(r for r, _ in pairs)
        out[name] = (total, sum(r * s for r, s in pairs) / total if total > 0 else 0.0)
    return out


def _source_rate(plan: Plan, source) -> tuple[float, float]:
    if isinstance(source, PeriodicSource):
        low, high = source.rate if isinstance(source.rate, tuple) else (source.rate, source.rate)
        return source.streams * (low + high) / 2, source.payload
    if isinstance(source, (PoissonSource, GammaSource)):
        return source.rate, source.payload
    if isinstance(source, MmppSource):
        weights = source.dwell
        return sum(r * d for r, d in zip(source.rates, weights)) / sum(weights), source.payload
    if isinstance(source, TraceSource):
        return _trace_rate(plan, source)
    return 0.0, 0.0


def _trace_rate(plan: Plan, source: TraceSource) -> tuple[float, float]:
    from sim.workload import generate_arrivals

    run = plan.scenario.run
    one = plan.scenario.workload.model_copy(update={"sources": [source]})
    arrivals = generate_arrivals(one, run.duration, run.seed, 0, plan.base_dir)
    n = len(arrivals)
    return n / run.duration, (float(arrivals.size.mean()) if n else 0.0)


def bottleneck(plan: Plan) -> Optional[Load]:
    """The busiest pool or link."""
    loads = offered_loads(plan)
    return max(loads, key=lambda l: l.utilisation) if loads else None
