"""Servers and sites: a scenario's ``topology`` compiled into per-node pools, points and links.

A *node* is a server declared once and replicated ``count`` times: its
device pools by *role* (``dpu``, ``gpu``, ``cpu``), the *points* inside it
that are not devices but that transfers cross (a PCIe switch), and its
links. A *site* groups nodes and owns a ``network`` point (its fabric);
``wan`` links join two sites' networks. Compiling gives every node its own
pools, named after the node (``rack[3].gpu``; devices ``rack[3].gpu[0]``),
and its own links (``rack[3].uplink``). When the whole topology is one
node of one site, the names are the roles' own (``gpu``), so a one-server
topology is the flat model, stream for stream.

Two questions are answered here, for the simulator and for the checks in
``sim.plan``:

- ``TopologyPlan.route(a, b)``: the hops a message crosses from endpoint
  ``a`` to endpoint ``b`` (fewest hops; ties to the links declared first).
  Each hop lists every link between its two ends, so the channel policy
  still picks one by size. A route never passes through the client or a
  GPU pool (a GPU does not forward); it may pass through points, networks,
  DPUs and host CPUs.
- ``TopologyPlan.local(pools, source, home)``: which of a stage's pools a
  request on ``source`` may be routed to. For each role of the stage: that
  role's pools in the source's node; if the node has none (or ``locality``
  is ``site``), those of the source's site; if the site has none either,
  those of the node, then the site, of ``home`` (the pool the request
  entered on: a frame sent to the cloud comes back to its own edge box);
  otherwise (or with ``locality: any``) all of them. A request entering
  from the client may go anywhere: the device it enters is its *ingress*,
  and its reply leaves from there.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Optional

from sim.scenario.schema import CLIENT, NETWORK, LinkSpec, PoolSpec, Scenario

if TYPE_CHECKING:  # sim.plan imports this module
    from sim.plan import LinkPlan, PoolPlan


@dataclass(frozen=True)
class Hop:
    """One leg of a route: from endpoint ``frm`` to ``to`` over one of ``links``."""

    frm: str
    to: str
    links: tuple["LinkPlan", ...]


@dataclass(frozen=True)
class TopologyPlan:
    locality: str  # node, site or any
    role_of: Mapping[str, str]  # pool -> its role (a pool outside the topology is its own role)
    node_of: Mapping[str, str]  # pool -> node instance name ('' outside the topology)
    site_of: Mapping[str, str]  # pool -> site instance name ('' outside the topology)
    forwarders: frozenset[str]  # endpoints a route may pass through
    adjacency: Mapping[str, tuple[tuple[str, "LinkPlan"], ...]]
    instances: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # site as declared -> its instances
    _routes: dict = field(default_factory=dict, compare=False, repr=False, hash=False)
    _local: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def route(self, a: str, b: str) -> Optional[tuple[Hop, ...]]:
        """The hops from ``a`` to ``b``; () when a == b; None when no route exists."""
        key = (a, b)
        if key not in self._routes:
            self._routes[key] = self._search(a, b)
        return self._routes[key]

    def _search(self, a: str, b: str) -> Optional[tuple[Hop, ...]]:
        if a == b:
            return ()
        parent: dict[str, str] = {a: a}
        frontier = deque([a])
        while frontier:
            here = frontier.popleft()
            if here != a and here not in self.forwarders:
                continue
            for there, _link in self.adjacency.get(here, ()):
                if there in parent:
                    continue
                parent[there] = here
                if there == b:
                    return self._hops(parent, a, b)
                frontier.append(there)
        return None

    def _hops(self, parent: Mapping[str, str], a: str, b: str) -> tuple[Hop, ...]:
        ends = [b]
        while ends[-1] != a:
            ends.append(parent[ends[-1]])
        ends.reverse()
        hops = []
        for frm, to in zip(ends, ends[1:]):
            links = tuple(dict.fromkeys(link for there, link in self.adjacency[frm] if there == to))
            hops.append(Hop(frm, to, links))
        return tuple(hops)

    def local(self, pools: tuple[str, ...], source: str, home: str = "") -> tuple[str, ...]:
        """The pools among ``pools`` a request on pool ``source`` may be routed to (see the module);
        ``home`` is the pool it entered on, where it goes back for a role ``source``'s node and site lack."""
        key = (pools, source, home)
        found = self._local.get(key)
        if found is None:
            found = self._local[key] = self._within(pools, source, home)
        return found

    def _within(self, pools: tuple[str, ...], source: str, home: str) -> tuple[str, ...]:
        if source == CLIENT or self.locality == "any":
            return pools
        out: list[str] = []
        for role in dict.fromkeys(self.role_of[p] for p in pools):
            mine = [p for p in pools if self.role_of[p] == role]
            out += next((near for near in (*self._near(mine, source), *self._near(mine, home)) if near), mine)
        return tuple(out)

    def _near(self, mine: list[str], pool: str) -> tuple[list[str], list[str]]:
        """Of ``mine``: those in ``pool``'s node (locality ``node`` only), those in its site."""
        node, site = self.node_of.get(pool, ""), self.site_of.get(pool, "")
        same_node = [p for p in mine if node and self.node_of[p] == node] if self.locality == "node" else []
        return same_node, [p for p in mine if site and self.site_of[p] == site]


@dataclass
class Compiled:
    """What a topology adds to the plan: pools, links, the role pools placement sees, and the plan."""

    pools: dict[str, "PoolPlan"]
    links: list["LinkPlan"]
    roles: dict[str, tuple[str, ...]]  # role -> its pools, node by node
    role_specs: dict[str, PoolSpec]  # role -> the spec placement judges it by (its first node's)
    plan: TopologyPlan


PoolOf = Callable[[PoolSpec, str, str], Optional["PoolPlan"]]  # spec, field path, pool name
LinkOf = Callable[[LinkSpec, str, str, tuple[str, str]], Optional["LinkPlan"]]  # spec, path, name, ends


def _part(name: str, count: int, i: int) -> str:
    return name if count == 1 else f"{name}[{i}]"


def _joined(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def compile_topology(scenario: Scenario, problem, pool_of: PoolOf, link_of: LinkOf) -> Compiled:
    """Expand ``scenario.topology`` (which must be set); report problems through ``problem``."""
    spec = scenario.topology
    assert spec is not None
    flat_pools = scenario.hardware.pools
    single = len(spec.sites) == 1 and all(
        s.count == 1 and len(s.nodes) == 1 and all(n.count == 1 for n in s.nodes.values())
        for s in spec.sites.values())
    one_site = len(spec.sites) == 1 and next(iter(spec.sites.values())).count == 1
    pools: dict[str, PoolPlan] = {}
    links: list[LinkPlan] = []
    roles: dict[str, list[str]] = {}
    role_specs: dict[str, PoolSpec] = {}
    role_kind: dict[str, str] = {}
    role_of: dict[str, str] = {}
    node_of: dict[str, str] = {}
    site_of: dict[str, str] = {}
    forwarders: set[str] = set()
    site_networks: dict[str, list[str]] = {}  # site template -> its instances' network points
    instances: dict[str, list[str]] = {}  # site template -> its instances' names

    for site_name, site in spec.sites.items():
        site_path = f"topology.sites.{site_name}"
        site_networks[site_name] = []
        for si in range(site.count):
            site_part = "" if (single or one_site) else _part(site_name, site.count, si)
            site_id = site_part or site_name
            network = _joined(site_part, NETWORK)
            site_networks[site_name].append(network)
            instances.setdefault(site_name, []).append(site_id)
            forwarders.add(network)
            for node_name, node in site.nodes.items():
                node_path = f"{site_path}.nodes.{node_name}"
                clash = set(node.points) & set(node.pools)
                for name in sorted(clash | ({NETWORK, CLIENT} & (set(node.points) | set(node.pools)))):
                    if si == 0:
                        problem(f"{node_path}.points", f"'{name}' is also a pool or a reserved name "
                                                       f"({CLIENT}, {NETWORK}); give it another name")
                for ni in range(node.count):
                    prefix = "" if single else _joined(site_part, _part(node_name, node.count, ni))
                    node_id = prefix or node_name
                    for role, pool_spec in node.pools.items():
                        path = f"{node_path}.pools.{role}"
                        if role in flat_pools:
                            if si == ni == 0:
                                problem(path, f"'{role}' is also a pool of hardware.pools; give it another name")
                            continue
                        name = _joined(prefix, role)
                        pool = pool_of(pool_spec, f"{path}.profile", name)
                        if pool is None:
                            continue
                        if role_kind.setdefault(role, pool.kind) != pool.kind:
                            if ni == 0:
                                problem(path, f"role '{role}' is a {role_kind[role]} elsewhere and a {pool.kind} "
                                              f"here; one role name, one device kind")
                            continue
                        role_specs.setdefault(role, pool_spec)
                        pools[name] = pool
                        roles.setdefault(role, []).append(name)
                        role_of[name], node_of[name], site_of[name] = role, node_id, site_id
                        if pool.kind != "gpu":
                            forwarders.add(name)
                    for point in node.points:
                        forwarders.add(_joined(prefix, point))
                    local = {**{r: _joined(prefix, r) for r in node.pools},
                             **{p: _joined(prefix, p) for p in node.points},
                             NETWORK: network, CLIENT: CLIENT}
                    for li, link in enumerate(node.links):
                        ends = _ends(link, local, f"{node_path}.links[{li}].between", problem, report=si == ni == 0)
                        if ends is not None:
                            made = link_of(link, f"{node_path}.links[{li}]", _joined(prefix, link.name), ends)
                            if made is not None:
                                links.append(made)
            local = {NETWORK: network, CLIENT: CLIENT, **{p: p for p in flat_pools}}
            for li, link in enumerate(site.links):
                ends = _ends(link, local, f"{site_path}.links[{li}].between", problem, report=si == 0)
                if ends is not None:
                    made = link_of(link, f"{site_path}.links[{li}]", _joined(site_part, link.name), ends)
                    if made is not None:
                        links.append(made)

    for wi, link in enumerate(spec.wan):
        path = f"topology.wan[{wi}]"
        a, b = link.between
        unknown = [s for s in (a, b) if s not in spec.sites]
        if unknown:
            problem(f"{path}.between", f"unknown site '{unknown[0]}'; expected two of: {', '.join(spec.sites)}")
            continue
        pairs = [(x, y) for x in site_networks[a] for y in site_networks[b] if x != y]
        for i, (x, y) in enumerate(pairs):
            name = link.name if len(pairs) == 1 else f"{link.name}[{i}]"
            made = link_of(link, path, name, (x, y))
            if made is not None:
                links.append(made)

    names = [link.name for link in links]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problem("topology", f"two links are both named '{name}'; give each link of a node or site its own name")
    for name in flat_pools:  # pools outside the topology are their own role
        role_of[name] = name
    adjacency: dict[str, list[tuple[str, LinkPlan]]] = {}
    for link in [*links]:
        a, b = link.ends
        if a != b:
            adjacency.setdefault(a, []).append((b, link))
            adjacency.setdefault(b, []).append((a, link))
    forwarders |= {name for name in flat_pools}
    plan = TopologyPlan(spec.locality, role_of, node_of, site_of, frozenset(forwarders - {CLIENT}),
                        {k: tuple(v) for k, v in adjacency.items()}, {k: tuple(v) for k, v in instances.items()})
    return Compiled(pools, links, {r: tuple(p) for r, p in roles.items()}, role_specs, plan)


def _ends(link: LinkSpec, local: Mapping[str, str], path: str, problem, report: bool) -> Optional[tuple[str, str]]:
    out = []
    for end in link.between:
        if end not in local:
            if report:
                problem(path, f"unknown endpoint '{end}'; expected one of: {', '.join(local)}")
            return None
        out.append(local[end])
    return out[0], out[1]


def add_links(plan: TopologyPlan, links) -> TopologyPlan:
    """``plan`` with ``links`` (hardware.links between pools outside the topology) in its graph too."""
    adjacency = {k: list(v) for k, v in plan.adjacency.items()}
    for link in links:
        a, b = link.ends
        if a != b:
            adjacency.setdefault(a, []).append((b, link))
            adjacency.setdefault(b, []).append((a, link))
    return TopologyPlan(plan.locality, plan.role_of, plan.node_of, plan.site_of, plan.forwarders,
                        {k: tuple(v) for k, v in adjacency.items()}, plan.instances)
