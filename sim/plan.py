"""A scenario resolved into a design the simulator or the harness can run.

``compile_plan`` resolves profile names into numbers and ``calibrated``
costs into their calibration files' entries, applies the placement
policy to every stage, drops skipped stages (their predecessors feed their
successors), orders the stage DAG topologically and finds the links each
hop needs. It checks every cross-reference on the way and reports all
problems at once, each with the field it concerns. The plan is plain data:
the SimPy model and the hardware harness are both built from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Mapping, Optional

from sim import profiles
from sim.calibration import CalibratedCost, Resolver
from sim.costs import Calibrated, CostSpec, Deterministic
from sim.policies.branching import Branch
from sim.policies.placement import SKIP, Placement, PlacementError
from sim.scenario.errors import Problem, ScenarioError
from sim.topology import TopologyPlan, add_links, compile_topology
from sim.scenario.schema import (CLIENT, BatchingSpec, BreakerSpec, RetrySpec, Scenario, TraceSource,
                                 reference_profile)


@dataclass(frozen=True)
class PoolPlan:
    name: str
    kind: str
    profile: str
    count: int
    servers: int
    speed: float
    background: Optional[tuple[float, float]] = None  # other work: (fraction of servers busy, mean job seconds)

    def instance_names(self) -> list[str]:
        return [f"{self.name}[{i}]" for i in range(self.count)]


@dataclass(frozen=True)
class LinkPlan:
    name: str
    kind: str
    ends: tuple[str, str]
    bandwidth: float
    latency: CostSpec
    overhead: float
    contention: str
    sharing: str
    send_cost: Optional[tuple[float, float]] = None  # CPU seconds on the sender: (per message, per byte)
    receive_cost: Optional[tuple[float, float]] = None  # ... and on the receiver

    def joins(self, a: str, b: str) -> bool:
        return {a, b} == set(self.ends) if a != b else self.ends == (a, a)


@dataclass(frozen=True)
class BranchPlan:
    """A stage's branches: the policy kind, and per branch its stage (index) and ``Branch``."""

    kind: str
    targets: tuple[int, ...]  # plan stage indices, in the order of ``branches``
    branches: tuple[Branch, ...]


@dataclass(frozen=True)
class StagePlan:
    index: int
    name: str
    pools: tuple[str, ...]
    costs: Mapping[str, CostSpec]
    output: Optional[float]
    pass_probability: float
    preds: tuple[int, ...]
    succs: tuple[int, ...]
    batching: BatchingSpec
    tiers: tuple[int, ...] = ()  # per pool, its preference (topology: the role's); () -> position
    branch: Optional[BranchPlan] = None  # None: the request goes on to every successor


@dataclass(frozen=True)
class Plan:
    scenario: Scenario
    pools: Mapping[str, PoolPlan]
    links: tuple[LinkPlan, ...]
    stages: tuple[StagePlan, ...]  # topological order; index == position
    reply_bytes: Optional[float]
    base_dir: Path
    resilience: Optional["ResiliencePlan"] = None  # None: nothing fails and nothing reacts
    topology: Optional[TopologyPlan] = None  # None: flat pools, one link per hop (sim.topology)
    entries: Optional[Mapping[str, tuple[int, ...]]] = None  # per request class its entry stages; None: the roots

    @property
    def roots(self) -> tuple[int, ...]:
        return tuple(s.index for s in self.stages if not s.preds)

    @property
    def branched(self) -> bool:
        """Whether requests take different paths: per-class entries or a stage that chooses a branch."""
        return self.entries is not None or any(s.branch is not None for s in self.stages)

    def entries_of(self, klass: str) -> tuple[int, ...]:
        """The stages a request of class ``klass`` enters at."""
        return self.roots if self.entries is None else self.entries[klass]

    def reach(self, entries: tuple[int, ...]) -> frozenset[int]:
        """The stages a request entering at ``entries`` may visit (every branch counted)."""
        seen, todo = set(entries), list(entries)
        while todo:
            for succ in self.stages[todo.pop()].succs:
                if succ not in seen:
                    seen.add(succ)
                    todo.append(succ)
        return frozenset(seen)

    @property
    def sinks(self) -> tuple[int, ...]:
        return tuple(s.index for s in self.stages if not s.succs)

    @property
    def host_costs(self) -> bool:
        """Whether any transfer costs CPU time on the devices at its ends."""
        return any(link.send_cost or link.receive_cost for link in self.links)

    @property
    def other_work(self) -> bool:
        """Whether devices serve work besides the stages: host costs of transfers or background load."""
        return self.host_costs or any(pool.background for pool in self.pools.values())

    def links_between(self, a: str, b: str) -> list[LinkPlan]:
        """The links joining ``a`` and ``b`` (``LinkPlan.joins``), in declaration order."""
        return list(self._links_by_ends.get(tuple(sorted((a, b))), ()))

    @cached_property
    def _links_by_ends(self) -> dict[tuple[str, ...], list[LinkPlan]]:
        """Links by their sorted ends: ``links_between`` costs O(1), not O(links) (a city has thousands)."""
        index: dict[tuple[str, ...], list[LinkPlan]] = {}
        for link in self.links:
            index.setdefault(tuple(sorted(link.ends)), []).append(link)
        return index


def compile_plan(scenario: Scenario, label: str = "", base_dir: Path = Path(".")) -> Plan:
    """Resolve and check ``scenario``; raise ScenarioError listing every problem."""
    problems: list[Problem] = []

    def problem(path: str, message: str) -> None:
        problems.append(Problem(label, path, message))

    calibration = Resolver(base_dir, problem)  # loads each calibration file once for this plan
    pools = _pools(scenario, problem)
    links = _links(scenario, pools, problem, calibration)
    if scenario.topology is not None:
        topology, stages = _topology(scenario, pools, links, problem, calibration)
    else:
        topology, stages = None, _stages(scenario, pools, problem, calibration)
    stages, entries = _paths(scenario, stages, problem) if stages and not problems else (stages, None)
    if topology is None and not problems:
        _check_hops(scenario, stages, pools, links, problem, entries)
    _check_references(scenario, stages, pools, links, base_dir, problem)
    if topology is not None and not problems:
        _check_enters(scenario, stages, entries, topology, problem)
    resilience = _resilience(scenario, pools, links, stages, problem, topology) if not problems else None
    if problems:
        raise ScenarioError(problems)
    reply = scenario.pipeline.reply
    return Plan(scenario, pools, tuple(links), tuple(stages), reply, base_dir, resilience, topology, entries)


def _pool_plan(spec, path: str, name: str, problem) -> Optional[PoolPlan]:
    profile = profiles.DEVICES.get(spec.profile)
    if profile is None:
        problem(path, f"unknown device profile '{spec.profile}'; expected one of: {', '.join(profiles.DEVICES)}")
        return None
    return PoolPlan(name=name, kind=profile.kind, profile=spec.profile, count=spec.count,
                    servers=spec.servers or profile.servers, speed=spec.speed or profile.speed,
                    background=(spec.background.load, spec.background.job) if spec.background else None)


def _topology(scenario: Scenario, pools: dict[str, PoolPlan], links: list[LinkPlan], problem,
              calibration: Resolver) -> tuple[Optional[TopologyPlan], list[StagePlan]]:
    """Expand the topology into ``pools`` and ``links`` (in place); place the stages on roles, then
    on every node's pools of those roles; check that every hop locality allows has a route."""
    found = []  # problems of the topology itself: its routes are not worth checking then

    def topology_problem(path: str, message: str) -> None:
        found.append(path)
        problem(path, message)

    compiled = compile_topology(
        scenario, topology_problem,
        lambda spec, path, name: _pool_plan(spec, path, name, problem),
        lambda spec, path, name, ends: _resolve_link(spec, path, name, ends, problem, calibration))
    # Placement judges roles: the pools of hardware.pools plus one pool per role.
    role_pools = {**pools, **{role: replace(compiled.pools[names[0]], name=role)
                              for role, names in compiled.roles.items()}}
    by_roles = scenario.model_copy(update={"hardware": scenario.hardware.model_copy(
        update={"pools": {**scenario.hardware.pools, **compiled.role_specs}})})
    placed = _stages(by_roles, role_pools, problem, calibration)
    pools.update(compiled.pools)
    links.extend(compiled.links)
    topology = add_links(compiled.plan, links[:len(links) - len(compiled.links)])
    expand = {**{name: (name,) for name in scenario.hardware.pools}, **compiled.roles}
    stages = [replace(stage,
                      pools=tuple(p for role in stage.pools for p in expand[role]),
                      tiers=tuple(t for t, role in enumerate(stage.pools) for _ in expand[role]))
              for stage in placed]
    if stages and not found:
        _check_routes(stages, topology, links, problem)
    return topology, stages


def _check_routes(stages: list[StagePlan], topology: TopologyPlan, links: list[LinkPlan], problem) -> None:
    """Every hop locality allows needs a route; client hops use one when client links exist."""
    client_links = any(CLIENT in link.ends for link in links)
    missing: dict[tuple[str, str], str] = {}

    def needs(a: str, b: str, what: str) -> None:
        if topology.route(a, b) is None and not (CLIENT in (a, b) and not client_links):
            missing.setdefault((a, b), what)

    roots = [s for s in stages if not s.preds]
    for stage in stages:
        sources = [pool for p in stage.preds for pool in stages[p].pools] if stage.preds else [CLIENT]
        for src in dict.fromkeys(sources):
            if stage.preds and src in stage.pools:
                continue
            for dst in topology.local(stage.pools, src):
                needs(src, dst, f"'{stages[stage.preds[0]].name}' -> '{stage.name}'" if stage.preds
                      else f"the client -> '{stage.name}'")
        if not stage.succs:  # the reply goes back through the device the request entered
            for src in stage.pools:
                for root in roots:
                    for ingress in topology.local(root.pools, src):
                        needs(src, ingress, f"the reply from '{stage.name}' to the ingress '{root.name}'")
    for root in roots:
        for pool in root.pools:
            needs(pool, CLIENT, f"the reply from the ingress '{root.name}'")
    for (a, b), what in list(missing.items())[:5]:
        problem("topology", f"no route from '{a}' to '{b}' for {what}; add links (or points) that join them")
    if len(missing) > 5:
        problem("topology", f"... and {len(missing) - 5} more pairs of pools without a route")


def _pools(scenario: Scenario, problem) -> dict[str, PoolPlan]:
    pools: dict[str, PoolPlan] = {}
    for name, spec in scenario.hardware.pools.items():
        if name == CLIENT:
            problem(f"hardware.pools.{name}", f"'{CLIENT}' is reserved for the network side")
            continue
        profile = profiles.DEVICES.get(spec.profile)
        if profile is None:
            problem(
                f"hardware.pools.{name}.profile",
                f"unknown device profile '{spec.profile}'; expected one of: {', '.join(profiles.DEVICES)}",
            )
            continue
        pools[name] = PoolPlan(
            name=name,
            kind=profile.kind,
            profile=spec.profile,
            count=spec.count,
            servers=spec.servers or profile.servers,
            speed=spec.speed or profile.speed,
            background=(spec.background.load, spec.background.job) if spec.background else None,
        )
    return pools


def _links(scenario: Scenario, pools: Mapping[str, PoolPlan], problem, calibration: Resolver) -> list[LinkPlan]:
    links: list[LinkPlan] = []
    names: set[str] = set()
    for i, spec in enumerate(scenario.hardware.links):
        path = f"hardware.links[{i}]"
        if spec.name in names:
            problem(f"{path}.name", f"duplicate link name '{spec.name}'")
        names.add(spec.name)
        for end in spec.between:
            if end != CLIENT and end not in scenario.hardware.pools:
                problem(f"{path}.between", f"unknown endpoint '{end}'; expected a pool name or '{CLIENT}'")
        link = _resolve_link(spec, path, spec.name, spec.between, problem, calibration)
        if link is not None:
            links.append(link)
    return links


def _resolve_link(spec, path: str, name: str, ends: tuple[str, str], problem,
                  calibration: Resolver) -> Optional[LinkPlan]:
    """One link's numbers, from its profile and its own fields; None (with problems) if incomplete."""
    base = profiles.LINKS.get(spec.profile) if spec.profile else None
    if spec.profile and base is None:
        problem(f"{path}.profile", f"unknown link profile '{spec.profile}'; expected one of: {', '.join(profiles.LINKS)}")
        return None
    kind = spec.kind or (base.kind if base else None)
    bandwidth = spec.bandwidth or (base.bandwidth if base else None)
    latency = spec.latency or Deterministic.model_construct(value=base.latency if base else 0.0)
    overhead = spec.overhead if spec.overhead is not None else (base.overhead if base else 0.0)
    if isinstance(latency, Calibrated):  # a bytes fit also gives the bandwidth and overhead
        latency, bandwidth, overhead = calibration.link(spec, path, bandwidth, overhead)
    if kind is None:
        problem(f"{path}.kind", "required when no profile is given (pcie, rdma, tcp, shm, nvlink, wan)")
    if bandwidth is None:
        problem(f"{path}.bandwidth", "required when no profile is given, e.g. '25 Gbit/s'")
    if kind is None or bandwidth is None:
        return None
    contention = spec.contention or (base.contention if base else "fifo")
    send, receive = _host_costs(spec, path, kind, problem, calibration)
    return LinkPlan(name, kind, tuple(ends), bandwidth, latency, overhead, contention, spec.sharing, send, receive)


def _host_costs(spec, path: str, kind: str, problem, calibration: Resolver):
    """The link's (send, receive) CPU costs: its ``host_cost`` preset (``sim.profiles.HOST_COSTS``), each
    end replaced by its own ``send_cost`` / ``receive_cost`` (given or calibrated) when it has one."""
    send = receive = None
    if spec.host_cost is not None:
        preset = profiles.HOST_COSTS.get(spec.host_cost)
        if preset is None:
            problem(f"{path}.host_cost", f"unknown host cost '{spec.host_cost}'; expected one of: "
                                         f"{', '.join(profiles.HOST_COSTS)}")
        else:
            send, receive = _host_cost(preset.send, "", "send", kind, calibration), \
                _host_cost(preset.receive, "", "receive", kind, calibration)
    if spec.send_cost is not None:
        send = _host_cost(spec.send_cost, f"{path}.send_cost", "send", kind, calibration)
    if spec.receive_cost is not None:
        receive = _host_cost(spec.receive_cost, f"{path}.receive_cost", "receive", kind, calibration)
    return send, receive


def _host_cost(spec, path: str, side: str, kind: str, calibration: Resolver) -> Optional[tuple[float, float]]:
    """(seconds per message, seconds per byte), or None when the cost is absent or zero.

    A ``calibrated`` cost is a calibration file's host_cost entry measured on this side of a
    transport of the link's kind (``Resolver.host_cost``)."""
    if spec is None:
        return None
    if isinstance(spec, Calibrated):
        per_message, per_byte = calibration.host_cost(spec, path, side, kind) or (0.0, 0.0)
    else:
        per_message, per_byte = spec.per_message, (spec.copies / spec.copy_rate if spec.copy_rate else 0.0)
    return (per_message, per_byte) if per_message > 0 or per_byte > 0 else None


def _stages(scenario: Scenario, pools: Mapping[str, PoolPlan], problem, calibration: Resolver) -> list[StagePlan]:
    specs = scenario.pipeline.stages
    names = [s.name for s in specs]
    for i, name in enumerate(names):
        if names.index(name) != i:
            problem(f"pipeline.stages[{i}].name", f"duplicate stage name '{name}'")
    after = {
        spec.name: (list(spec.after) if spec.after is not None else ([names[i - 1]] if i else []))
        for i, spec in enumerate(specs)
    }
    unknown = False
    for i, spec in enumerate(specs):
        for pred in after[spec.name]:
            if pred not in names:
                problem(f"pipeline.stages[{i}].after", f"unknown stage '{pred}'; expected one of: {', '.join(names)}")
                unknown = True
    if unknown or len(pools) < len(scenario.hardware.pools):
        return []  # placement cannot be judged against a broken DAG or unresolved pools
    if find_cycle(after, names):
        problem("pipeline.stages", f"the stages form a cycle: {' -> '.join(find_cycle(after, names))}")
        return []

    placement_spec = scenario.policies.placement
    overrides = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in placement_spec.map.items()}
    for stage, targets in overrides.items():
        if stage not in names:
            problem(f"policies.placement.map.{stage}", f"unknown stage; expected one of: {', '.join(names)}")
        if SKIP in targets and len(targets) > 1:
            problem(f"policies.placement.map.{stage}", f"'{SKIP}' leaves the stage out and cannot be mixed with pools")
        for target in targets:
            if target != SKIP and target not in scenario.hardware.pools:
                problem(
                    f"policies.placement.map.{stage}",
                    f"unknown pool '{target}'; expected one of: {', '.join(scenario.hardware.pools)} or '{SKIP}'",
                )
    placement = Placement(placement_spec.strategy, overrides)
    pool_kinds = {name: p.kind for name, p in pools.items()}
    placed: dict[str, tuple[str, ...]] = {}
    unplaced = False
    for i, spec in enumerate(specs):
        try:
            targets = placement.place(spec.name, list(spec.costs), pool_kinds)
        except PlacementError as error:
            problem("policies.placement", str(error))
            unplaced = True
            continue
        for target in targets:
            pool = pools.get(target)
            if pool is not None and pool.kind not in spec.costs:
                problem(
                    f"pipeline.stages[{i}].costs",
                    f"stage '{spec.name}' is placed on pool '{target}' ({pool.kind}) but has no "
                    f"{pool.kind} cost; it has costs for: {', '.join(spec.costs)}",
                )
        placed[spec.name] = targets

    # Skipped stages vanish: their predecessors feed their successors.
    if unplaced:
        return []
    active = [n for n in _topological(after, names) if placed.get(n)]
    if not active:
        problem("policies.placement", "every stage is skipped: nothing to run")
        return []

    def active_preds(name: str) -> list[str]:
        out: list[str] = []
        for pred in after[name]:
            for p in ([pred] if placed.get(pred) else active_preds(pred)):
                if p not in out:
                    out.append(p)
        return out

    def measured_on(cost, kind: str, path: str) -> Optional[float]:
        """How fast the profile a cost was measured on is, relative to its kind's reference part."""
        name = getattr(cost, "on", None) or reference_profile(kind)
        profile = profiles.DEVICES.get(name)
        if profile is None or profile.kind != kind:
            same_kind = ", ".join(n for n, p in profiles.DEVICES.items() if p.kind == kind)
            found = f"unknown device profile '{name}'" if profile is None else f"'{name}' is a {profile.kind} profile"
            problem(f"{path}.on", f"{found}; expected the {kind} profile it was measured on, one of: {same_kind}")
            return None
        return profile.speed

    def to_reference(cost, speed: float, kind: str):
        """``cost`` as it would be on the reference part: a time on a part of speed s, times s."""
        if speed == 1.0:
            return cost
        if isinstance(cost, CalibratedCost):
            return replace(cost, scale=cost.scale * speed, on=reference_profile(kind))
        fields = {"deterministic": ("value",), "exponential": ("mean_",), "lognormal": ("mean_",),
                  "affine": ("base", "per_item")}.get(cost.kind, ())
        update = {f: getattr(cost, f) * speed for f in fields}
        if cost.kind == "empirical":
            update["samples"] = [v * speed for v in cost.samples]
        return cost.model_copy(update={**update, "on": reference_profile(kind)})

    index = {name: i for i, name in enumerate(active)}
    preds = {name: tuple(index[p] for p in active_preds(name)) for name in active}
    by_name = {s.name: s for s in specs}
    stages = []
    for name in active:
        spec = by_name[name]
        path = f"pipeline.stages[{names.index(name)}].costs"
        costs = {}
        for kind, cost in spec.costs.items():
            speed = measured_on(cost, kind, f"{path}.{kind}")
            resolved = calibration.stage_cost(cost, f"{path}.{kind}")
            costs[kind] = resolved if speed is None else to_reference(resolved, speed, kind)
        stages.append(
            StagePlan(
                index=index[name],
                name=name,
                pools=placed[name],
                costs=costs,
                output=spec.output,
                pass_probability=spec.pass_probability,
                preds=preds[name],
                succs=tuple(index[n] for n in active if index[name] in preds[n]),
                batching=scenario.policies.batching.get(name, BatchingSpec()),
            )
        )
    return stages


def find_cycle(after: Mapping[str, list[str]], names: list[str]) -> list[str]:
    """A cycle in the ``after`` relation as a list of names, or [] if none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for pred in after.get(node, []):
            if pred not in after:
                continue
            if state.get(pred) == 1:
                return stack[stack.index(pred):] + [pred]
            if pred not in state:
                found = visit(pred)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for name in names:
        if name not in state:
            cycle = visit(name)
            if cycle:
                return cycle
    return []


def _topological(after: Mapping[str, list[str]], names: list[str]) -> list[str]:
    """Names in an order where each comes after its predecessors (stable)."""
    done: list[str] = []
    remaining = list(names)
    while remaining:
        for name in remaining:
            if all(p in done or p not in after for p in after[name]):
                done.append(name)
                remaining.remove(name)
                break
    return done


def _paths(scenario: Scenario, stages: list[StagePlan], problem) -> tuple[list[StagePlan], Optional[dict]]:
    """The stages with their branches resolved, and each class's entry stages (None: every class enters
    at the roots); a branch must name exactly the stage's successors, and with per-class entries every
    class needs an entry and every stage a class that reaches it."""
    specs = scenario.pipeline.stages
    names = [s.name for s in specs]
    after = {spec.name: (list(spec.after) if spec.after is not None else ([names[i - 1]] if i else []))
             for i, spec in enumerate(specs)}
    following = {n: [m for m in names if n in after[m]] for n in names}
    active = {s.name: s for s in stages}
    out = list(stages)
    for i, spec in enumerate(specs):
        if spec.branch is None:
            continue
        path = f"pipeline.stages[{i}].branch"
        if spec.name not in active:
            problem(path, f"stage '{spec.name}' chooses a branch; placement must not skip it")
            continue
        targets, ok = [], True
        for k, branch in enumerate(spec.branch.to):
            where = f"{path}.to[{k}].stage"
            if branch.stage not in names:
                problem(where, f"unknown stage '{branch.stage}'; expected one of the stages after "
                               f"'{spec.name}': {', '.join(following[spec.name]) or 'none'}")
            elif spec.name not in after[branch.stage]:
                problem(where, f"stage '{branch.stage}' does not come after '{spec.name}': "
                               f"add '{spec.name}' to its 'after'")
            elif branch.stage not in active:
                problem(where, f"branch '{branch.stage}' is skipped by placement; requests sent there would "
                               f"have nowhere to go")
            else:
                targets.append(active[branch.stage].index)
                continue
            ok = False
        listed = {b.stage for b in spec.branch.to}
        for succ in following[spec.name]:
            if succ not in listed:
                problem(f"{path}.to", f"stage '{succ}' comes after '{spec.name}' but is none of its branches; "
                                      f"a request takes exactly one branch: list it, or move its 'after'")
                ok = False
        if ok:
            stage = active[spec.name]
            out[stage.index] = replace(stage, branch=BranchPlan(
                spec.branch.kind, tuple(targets),
                tuple(Branch(b.stage, b.probability, tuple(b.classes)) for b in spec.branch.to)))
    declared = scenario.pipeline.entries
    if not declared:
        return out, None
    classes = list(dict.fromkeys(s.class_ for s in scenario.workload.sources))
    for name in declared:
        if name not in classes:
            problem(f"pipeline.entries.{name}", f"no source has this class; classes: {', '.join(classes)}")
    for name in classes:
        if name not in declared:
            problem("pipeline.entries", f"class '{name}' has no entry: add 'pipeline.entries.{name}: [<stage>]'")

    def running(name: str) -> list[str]:
        """``name`` if it runs, else the first running stages after it (placement skipped it)."""
        if name in active:
            return [name]
        return [m for n in following[name] for m in running(n)]

    entries: dict[str, tuple[int, ...]] = {}
    reached: set[int] = set()
    plan = Plan(scenario, {}, (), tuple(out), None, Path("."))
    for name, listed in declared.items():
        path = f"pipeline.entries.{name}"
        indices: list[int] = []
        for entry in listed:
            if entry not in names:
                problem(path, f"unknown stage '{entry}'; expected one of: {', '.join(names)}")
                continue
            found = running(entry)
            if not found:
                problem(path, f"class '{name}' enters at '{entry}', which placement skips with every stage "
                              f"after it: its requests would reach no sink")
            indices.extend(active[n].index for n in found if active[n].index not in indices)
        if not listed:
            problem(path, f"class '{name}' has no entry stage: its requests would reach no sink; name at least one")
        for index in indices:
            later = next((other for other in indices if other != index
                          and index in plan.reach((other,))), None)
            if later is not None:
                problem(path, f"stage '{out[index].name}' is an entry of class '{name}' and also comes after its "
                              f"entry '{out[later].name}': enter at one of them")
        entries[name] = tuple(indices)
        reached |= plan.reach(tuple(indices))
    if any(name not in declared for name in classes):
        return out, None  # reported above; which stages no class reaches is not worth judging yet
    for stage in out:
        if stage.index not in reached:
            problem(f"pipeline.stages[{names.index(stage.name)}]",
                    f"no class reaches stage '{stage.name}' from its entries (pipeline.entries): "
                    f"remove the stage or put it on a class's path")
    return out, entries


def _check_hops(scenario, stages: list[StagePlan], pools, links: list[LinkPlan], problem,
                entries: Optional[Mapping[str, tuple[int, ...]]] = None) -> None:
    """Every hop between pools needs a link; client hops use one if declared."""
    client_links = any(CLIENT in link.ends for link in links)

    def needs(a: str, b: str, what: str) -> None:
        if a == b or any(link.joins(a, b) for link in links):
            return
        if CLIENT in (a, b) and not client_links:
            return
        problem("hardware.links", f"no link between '{a}' and '{b}' for {what}; add one to hardware.links")

    for stage in stages:
        sources = [pool for p in stage.preds for pool in stages[p].pools] if stage.preds else [CLIENT]
        for src in dict.fromkeys(sources):
            if stage.preds and src in stage.pools:
                continue
            for dst in stage.pools:
                frm = f"'{stages[stage.preds[0]].name}'" if stage.preds else "the client"
                needs(src, dst, f"{frm} -> '{stage.name}'")
        if stage.preds and entries and any(stage.index in e for e in entries.values()):
            for dst in stage.pools:  # a class enters here: its requests come from the client
                needs(CLIENT, dst, f"the client -> '{stage.name}' (a class's entry)")
        if not stage.succs:
            for src in stage.pools:
                needs(src, CLIENT, f"the reply from '{stage.name}'")


def _check_enters(scenario: Scenario, stages: list[StagePlan], entries, topology: TopologyPlan, problem) -> None:
    """A source wired to a site enters each of the site's instances: each must serve its class's entry stages."""
    for i, source in enumerate(scenario.workload.sources):
        if source.enters is None or source.enters not in topology.instances:
            continue
        roots = tuple(s.index for s in stages if not s.preds)
        firsts = entries.get(source.class_, roots) if entries is not None else roots
        for index in firsts:
            stage = stages[index]
            lacking = [site for site in topology.instances[source.enters]
                       if not any(topology.site_of.get(pool) == site for pool in stage.pools)]
            if lacking:
                problem(f"workload.sources[{i}].enters", f"site '{source.enters}' has no pool placed for stage "
                        f"'{stage.name}', where class '{source.class_}' enters; expected a site whose nodes serve it")
                break


def _check_trace(source: TraceSource, file: Path, path: str, problem) -> None:
    """The whole trace is read now, so a bad row is reported before any run starts."""
    from sim.workload import TraceError, read_trace

    try:
        read_trace(source, file)
    except TraceError as error:
        problem(f"{path}.{error.field}", f"{error.file}: {error.message}")


def _check_references(scenario: Scenario, stages, pools, links, base_dir: Path, problem) -> None:
    names = {s.name for s in scenario.pipeline.stages}
    for stage in scenario.policies.batching:
        if stage not in names:
            problem(f"policies.batching.{stage}", f"unknown stage; expected one of: {', '.join(sorted(names))}")
    targets = (set(scenario.hardware.pools) | {link.name for link in scenario.hardware.links}
               | set(pools) | {link.name for link in links})
    budgets = [("slo", scenario.slo)] + [(f"slo.classes.{c}", b) for c, b in scenario.slo.classes.items()]
    for path, budget in budgets:
        for target in budget.utilisation_max:
            if target not in targets:
                problem(f"{path}.utilisation_max.{target}", f"unknown pool or link; expected one of: {', '.join(sorted(targets))}")
    sites = scenario.topology.sites if scenario.topology is not None else {}
    for i, source in enumerate(scenario.workload.sources):
        if source.enters is not None and source.enters not in sites:
            problem(f"workload.sources[{i}].enters", f"unknown site '{source.enters}'; expected one of the "
                    f"topology's sites: {', '.join(sites) or '(no topology declared)'}")
    classes = {s.class_ for s in scenario.workload.sources}
    for name in scenario.slo.classes:
        if name not in classes:
            problem(f"slo.classes.{name}", f"no source has this class; classes: {', '.join(sorted(classes))}")
    run = scenario.run
    if run.warmup >= run.duration:
        problem("run.warmup", f"must be shorter than run.duration ({run.duration:g} s)")
    for i, source in enumerate(scenario.workload.sources):
        path = f"workload.sources[{i}]"
        if getattr(source, "kind", "") == "mmpp" and len(source.rates) != len(source.dwell):
            problem(f"{path}.dwell", f"expected one mean dwell time per rate ({len(source.rates)}), got {len(source.dwell)}")
        if isinstance(source, TraceSource):
            _check_trace(source, base_dir / source.file, path, problem)
    seen: set[str] = set()
    for i, source in enumerate(scenario.workload.sources):
        if source.name in seen:
            problem(f"workload.sources[{i}].name", f"duplicate source name '{source.name}'")
        seen.add(source.name)


# --- failures and reactions ---------------------------------------------------


@dataclass(frozen=True)
class FailurePlan:
    """One ``failures`` entry resolved: the device instances (or the link) it takes down, and when."""

    target: str
    devices: tuple[str, ...]  # instance names ("gpu[0]"); empty for a link
    link: Optional[str]
    at: Optional[float]  # scheduled: down at ``at`` for ``duration``
    duration: Optional[float]
    mtbf: Optional[float]  # random: up ~ mtbf, down ~ mttr
    mttr: Optional[float]
    distribution: str
    each: bool  # random, several devices: each on its own clock
    in_flight: str  # "fail" or "requeue"


@dataclass(frozen=True)
class FallbackPlan:
    pools: tuple[str, ...]
    costs: Mapping[str, CostSpec]  # per device kind
    output: Optional[float]
    degraded: bool


@dataclass(frozen=True)
class StageReactionPlan:
    timeout: Optional[float]
    retry: RetrySpec
    breaker: BreakerSpec
    fallback: Optional[FallbackPlan]


@dataclass(frozen=True)
class ResiliencePlan:
    failures: tuple[FailurePlan, ...]
    timeout: Optional[float]  # the client's
    health_aware: bool
    stages: tuple[StageReactionPlan, ...]  # one per plan stage

    @property
    def reacts(self) -> bool:
        """Whether any stage has a timeout, a retry, a breaker or a fallback."""
        return any(s.timeout is not None or s.retry.kind != "none" or s.breaker.kind != "none"
                   or s.fallback is not None for s in self.stages)


def _resilience(scenario: Scenario, pools: Mapping[str, PoolPlan], links: list[LinkPlan],
                stages: list[StagePlan], problem, topology: Optional[TopologyPlan] = None) -> Optional[ResiliencePlan]:
    """The ``failures`` and ``resilience`` sections checked and resolved; None when both are empty."""
    spec = scenario.resilience
    default = type(spec)()
    if not scenario.failures and spec == default:
        return None
    instances = {name: pool for pool in pools.values() for name in pool.instance_names()}
    link_names = {link.name for link in links}
    failures = []
    for i, failure in enumerate(scenario.failures):
        target = failure.target
        if target in pools:
            devices: tuple[str, ...] = tuple(pools[target].instance_names())
        elif target in instances:
            devices = (target,)
        elif target in link_names:
            devices = ()
        else:
            problem(f"failures[{i}].target", f"unknown pool, device or link '{target}'; expected one of: "
                    f"{', '.join([*pools, *instances, *sorted(link_names)])}")
            continue
        failures.append(FailurePlan(target, devices, None if devices else target, failure.at, failure.for_,
                                    failure.mtbf, failure.mttr, failure.distribution, failure.each, failure.in_flight))
    declared = {s.name for s in scenario.pipeline.stages}
    for name in spec.stages:
        if name not in declared:
            problem(f"resilience.stages.{name}", f"unknown stage; expected one of: {', '.join(sorted(declared))}")
    roles: dict[str, list[str]] = {}  # topology: a fallback may name a role, meaning its pools in every node
    for pool, role in (topology.role_of.items() if topology is not None else ()):
        if role != pool:
            roles.setdefault(role, []).append(pool)
    reactions = []
    for stage in stages:
        own = spec.stages.get(stage.name)
        fallback = None
        if own is not None and own.fallback is not None:
            fallback = _fallback(own.fallback, stage, pools, f"resilience.stages.{stage.name}.fallback", problem,
                                 roles)
        reactions.append(StageReactionPlan(
            timeout=own.timeout if own else None,
            retry=(own.retry if own and own.retry else spec.retry),
            breaker=(own.breaker if own and own.breaker else spec.breaker),
            fallback=fallback,
        ))
    _check_fallback_hops(stages, reactions, links, problem, topology)
    return ResiliencePlan(tuple(failures), spec.timeout, spec.health_aware, tuple(reactions))


def _fallback(spec, stage: StagePlan, pools: Mapping[str, PoolPlan], path: str, problem,
              roles: Mapping[str, list[str]]) -> Optional[FallbackPlan]:
    ok = True
    names = tuple(p for name in spec.pools for p in roles.get(name, [name]))
    for pool in names:
        if pool not in pools:
            problem(f"{path}.pools", f"unknown pool '{pool}'; expected one of: {', '.join([*roles, *pools])}")
            ok = False
            continue
        kind = pools[pool].kind
        if kind not in spec.costs and kind not in stage.costs:
            problem(f"{path}.costs", f"the fallback runs on pool '{pool}' ({kind}) but neither it nor stage "
                                     f"'{stage.name}' has a {kind} cost")
            ok = False
    for kind, cost in spec.costs.items():
        if isinstance(cost, Calibrated) or getattr(cost, "on", None) is not None:
            problem(f"{path}.costs.{kind}", "a fallback cost is given for the kind's reference part: "
                                            "no 'calibrated' cost and no 'on'")
            ok = False
    if not ok:
        return None
    costs = {**stage.costs, **spec.costs}
    output = spec.output if spec.output is not None else stage.output
    return FallbackPlan(names, costs, output, spec.degraded)


def _check_fallback_hops(stages: list[StagePlan], reactions: list[StageReactionPlan], links: list[LinkPlan],
                         problem, topology: Optional[TopologyPlan] = None) -> None:
    """A fallback pool needs links from where the stage's input comes and to where its output goes; in a
    topology, a route between every pair that locality allows."""
    client_links = any(CLIENT in link.ends for link in links)
    for stage, reaction in zip(stages, reactions):
        if reaction.fallback is None:
            continue
        pools = reaction.fallback.pools
        before = [pool for p in stage.preds for pool in stages[p].pools] if stage.preds else [CLIENT]
        after = tuple(pool for s in stage.succs for pool in stages[s].pools) if stage.succs else (CLIENT,)
        if topology is None:
            pairs = [(a, p) for a in dict.fromkeys(before) for p in pools] + [(p, b) for p in pools for b in after]
        else:
            pairs = ([(a, p) for a in dict.fromkeys(before) for p in topology.local(pools, a)]
                     + [(p, b) for p in pools for b in (after if CLIENT in after else topology.local(after, p))])
        for a, b in dict.fromkeys(pairs):
            joined = topology.route(a, b) is not None if topology is not None else any(
                link.joins(a, b) for link in links)
            if a == b or joined or (CLIENT in (a, b) and not client_links):
                continue
            hint = "links (or points) that join them" if topology is not None else "one to hardware.links"
            problem(f"resilience.stages.{stage.name}.fallback.pools",
                    f"no {'route' if topology is not None else 'link'} between '{a}' and '{b}' for the fallback "
                    f"on '{b if b in pools else a}'; add {hint}")
