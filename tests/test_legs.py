"""Routed sends look their route, links and channels up once per pair of endpoints (``_State._leg``); a
one-hop leg without host costs sends straight on its channel.

The cache must change nothing: the same channel for every hop as ``_channel`` gives, the channel
policy still asked per message where a hop has several links, and whole runs identical to the
plain per-message lookup."""

from __future__ import annotations

import copy

import pandas as pd

import sim.model.system as system
from sim.model.collect import collect
from sim.model.device import Window
from sim.model.engine import Engine
from sim.plan import compile_plan
from sim.scenario.schema import Scenario
from sim.workload import generate_arrivals
from tests.test_topology import rack


def _plain_leg(monkeypatch) -> None:
    """Make every leg uncached: route only, links and channels looked up per message as before (the links
    chosen per size are remembered only as long as the leg, and a message's choice is the same either way)."""
    cached = system._State._leg

    def plain(self, source, target):
        return cached(self, source, target)[0], None, None, -1, {}, False

    monkeypatch.setattr(system._State, "_leg", plain)


def _frame(document: dict) -> pd.DataFrame:
    plan = compile_plan(Scenario.model_validate(document))
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir)
    frame, _usage = collect(system.System(plan, arrivals, run.seed, 0).run(), 0)
    return frame


def _two_link_rack() -> dict:
    """The rack, with a second link (RDMA) beside the PCIe slot: the channel policy picks by size."""
    document = rack(nodes=3, locality="site", rate="1500/s", routing="round-robin")
    links = document["topology"]["sites"]["dc"]["nodes"]["srv"]["links"]
    links.append({"name": "rdma", "between": ["switch", "gpu"], "kind": "rdma", "bandwidth": "12 GB/s",
                  "contention": "fifo"})
    # frames in (1 MB) over the slot, detections back (10 KB) over RDMA
    document["policies"]["channel"] = {"kind": "by-size", "bands": [{"below": "100 KB", "use": "rdma"},
                                                                    {"use": "pcie"}]}
    document["run"]["duration"] = "0.6 s"
    return document


def test_whole_runs_equal_the_plain_lookup(monkeypatch):
    for document in (rack(nodes=3, rate="1500/s"), rack(nodes=3, locality="site", rate="1500/s",
                                                     routing="round-robin"), _two_link_rack()):
        document["run"]["duration"] = "0.6 s"
        cached = _frame(copy.deepcopy(document))
        with monkeypatch.context() as patch:
            _plain_leg(patch)
            plain = _frame(copy.deepcopy(document))
        assert len(cached) > 500
        pd.testing.assert_frame_equal(cached, plain)


def test_each_cached_channel_is_the_one_channel_lookup_gives():
    plan = compile_plan(Scenario.model_validate(rack(nodes=2, locality="site", routing="round-robin",
                                                     rate="1000/s")))
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, 0.3, run.seed, 0, plan.base_dir)
    env = Engine()
    state = system._State(plan, arrivals, env, Window(0.0, 0.3), run.seed, 0)
    state.schedule_next_arrival()
    env.run(until=0.5)
    legs = {key: leg for key, leg in state._legs.items() if leg[0]}
    assert len(legs) > 4  # client -> DPUs, DPU -> GPUs of both servers, back
    devices = state.devices
    assert any(leg[5] for leg in legs.values()) and not all(leg[5] for leg in legs.values())
    for (a, b), (route, chosen, channels, index, _sizes, direct) in legs.items():
        assert chosen == tuple(hop.links[0] for hop in route)
        # sent straight on its channel: a one-hop leg whose link has no host costs (and links do not fail)
        assert direct == (len(route) == 1 and chosen[0].send_cost is None and chosen[0].receive_cost is None)
        assert index == state._link_index[chosen[-1].name]
        source = devices[a] if a >= 0 else None
        target = devices[b] if b >= 0 else None
        for i, (hop, link, channel) in enumerate(zip(route, chosen, channels)):
            assert channel is not None  # every hop of a used leg has carried a message
            last = i == len(route) - 1
            assert channel is state._channel(link, source if i == 0 else None, target if last else None, hop.frm)


def test_a_hop_with_several_links_asks_the_channel_policy_per_message():
    plan = compile_plan(Scenario.model_validate(_two_link_rack()))
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, 0.3, run.seed, 0, plan.base_dir)
    env = Engine()
    state = system._State(plan, arrivals, env, Window(0.0, 0.3), run.seed, 0)
    state.schedule_next_arrival()
    env.run(until=0.5)
    inside = [leg for leg in state._legs.values() if any(len(hop.links) > 1 for hop in leg[0])]
    assert inside and all(leg[1] is None and leg[2] is None for leg in inside)
    used = {name: sum(c.bytes_moved for c in channels) for name, channels in state.channels_by_link().items()}
    assert used[next(n for n in used if n.endswith("rdma"))] > 0  # detections back, by size
    assert used[next(n for n in used if n.endswith("slot"))] > 0  # frames in
    for route, _chosen, _channels, _index, by_size, direct in inside:  # what a leg remembers is what the policy says
        assert not direct  # a link chosen per message is not sent straight
        assert by_size
        for size, (chosen, index) in by_size.items():
            assert [link.kind for link in chosen] == [
                state.channel_policy.choose(size, [link.kind for link in hop.links]) for hop in route]
            assert index == state._link_index[chosen[-1].name]
