"""Servers and sites (sim/topology.py): locality, routes of several hops, a shared PCIe uplink.

Each scenario here is a few simulated seconds at most. The 4-node rack has,
per server, one DPU (ingress and post-processing) and four GPUs behind a
PCIe switch: ``uplink`` joins the DPU to the switch (one channel shared by
the four GPUs), ``slot`` joins the switch to each GPU (one channel per GPU),
``port`` joins the DPU to the site's network.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from sim.contract.outcomes import Outcome
from sim.model.system import System
from sim.plan import compile_plan
from sim.scenario.errors import ScenarioError
from sim.scenario.schema import CLIENT, Scenario
from sim.workload import generate_arrivals

PRE, DETECT, POST = 0, 1, 2


def rack(nodes: int = 4, locality: str = "node", rate: str = "2000/s", routing: str = "shortest-queue",
         uplink: bool = True, detect_mean: str = "1 ms", output: str = "1 MB") -> dict:
    inside = ([{"name": "uplink", "between": ["dpu", "switch"], "kind": "pcie", "bandwidth": "16 GB/s",
                "contention": "shared", "sharing": "shared"},
               {"name": "slot", "between": ["switch", "gpu"], "kind": "pcie", "bandwidth": "16 GB/s",
                "contention": "shared"}] if uplink else
              [{"name": "slot", "between": ["dpu", "gpu"], "kind": "pcie", "bandwidth": "16 GB/s",
                "contention": "shared"}])
    return {
        "name": "rack-test",
        "hardware": {},
        "topology": {"locality": locality, "sites": {"dc": {"nodes": {"srv": {
            "count": nodes,
            "pools": {"dpu": {"profile": "bluefield-3"}, "gpu": {"profile": "a100", "count": 4}},
            "points": ["switch"] if uplink else [],
            "links": [
                {"name": "nic", "between": ["client", "dpu"], "kind": "tcp", "bandwidth": "25 Gbit/s",
                 "contention": "shared"},
                {"name": "port", "between": ["network", "dpu"], "kind": "rdma", "bandwidth": "25 Gbit/s",
                 "latency": "2 us", "contention": "shared"},
                *inside,
            ]}}}}},
        "workload": {"sources": [{"name": "cams", "kind": "poisson", "rate": rate, "payload": "100 KB"}]},
        "pipeline": {"stages": [
            {"name": "pre", "costs": {"dpu": "0.1 ms"}, "output": output},
            {"name": "detect", "costs": {"gpu": {"kind": "exponential", "mean": detect_mean}}, "output": "10 KB"},
            {"name": "post", "costs": {"dpu": "0.05 ms"}, "output": "1 KB"},
        ]},
        "policies": {"routing": {"kind": routing}},
        "run": {"duration": "1.5 s", "warmup": "0.2 s", "drain": "1 s", "replications": 1, "seed": 3},
    }


def simulate(document: dict):
    plan = compile_plan(Scenario.model_validate(document))
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir)
    return plan, System(plan, arrivals, run.seed, 0).run()


def test_compiles_one_pool_per_node_and_role():
    plan = compile_plan(Scenario.model_validate(rack()))
    assert list(plan.pools) == [f"srv[{i}].{role}" for i in range(4) for role in ("dpu", "gpu")]
    assert plan.pools["srv[2].gpu"].count == 4
    assert plan.stages[DETECT].pools == tuple(f"srv[{i}].gpu" for i in range(4))
    hops = plan.topology.route("srv[0].dpu", "srv[0].gpu")
    assert [(h.frm, h.to, [l.name for l in h.links]) for h in hops] == [
        ("srv[0].dpu", "srv[0].switch", ["srv[0].uplink"]), ("srv[0].switch", "srv[0].gpu", ["srv[0].slot"])]
    across = plan.topology.route("srv[0].dpu", "srv[3].gpu")  # DPU -> network -> DPU -> switch -> GPU
    assert [h.links[0].name for h in across] == ["srv[0].port", "srv[3].port", "srv[3].uplink", "srv[3].slot"]
    assert plan.topology.route("srv[0].gpu", CLIENT)[-1].links[0].name == "srv[0].nic"


def test_requests_stay_in_their_node_and_replies_leave_from_the_ingress_device():
    plan, out = simulate(rack(routing="round-robin"))
    devices = out.devices
    served = [r for r in out.requests if r.outcome is Outcome.COMPLETED]
    assert len(served) > 2000
    assert {d.node for d in devices} == {f"srv[{i}]" for i in range(4)}
    ingress_nodes = set()
    for r in served:
        ingress = devices[r.instance[PRE]]
        ingress_nodes.add(ingress.node)
        assert devices[r.instance[DETECT]].node == ingress.node
        assert devices[r.instance[POST]] is ingress
        reply = plan.links[r.reply_link]
        assert reply.ends == (CLIENT, ingress.pool)  # the reply's last hop leaves from the ingress device
        assert plan.links[r.link[DETECT]].name == f"{ingress.node}.slot"  # it reached its GPU through the switch
    assert len(ingress_nodes) == 4  # the router spreads arrivals over the servers


def test_a_policy_may_send_requests_to_other_nodes_over_the_network_and_replies_still_return():
    plan, out = simulate(rack(locality="site", routing="random"))
    devices = out.devices
    served = [r for r in out.requests if r.outcome is Outcome.COMPLETED]
    away = [r for r in served if devices[r.instance[DETECT]].node != devices[r.instance[PRE]].node]
    assert len(away) > 0.5 * len(served)  # random over 16 GPUs of 4 nodes: about 3 in 4 leave their node
    for r in away[:200]:
        ingress = devices[r.instance[PRE]]
        route = plan.topology.route(ingress.pool, devices[r.instance[DETECT]].pool)
        assert any(link.kind == "rdma" for hop in route for link in hop.links)  # a real network hop
        assert plan.links[r.reply_link].ends == (CLIENT, ingress.pool)
    network = sum(c.bytes_moved for name, cs in out.channels.items() if name.endswith(".port") for c in cs)
    assert network > 0


def utilisation(out, link: str) -> list[float]:
    span = out.window.end - out.window.start
    return [c.busy_time / span for name, cs in out.channels.items() if name.split(".")[-1] == link for c in cs
            if c.bytes_moved > 1e9]  # the directions that carry the frames


@pytest.mark.slow  # simulates a loaded rack until the uplink saturates
def test_a_shared_pcie_uplink_saturates_before_the_per_gpu_links():
    # 1 MB frames at 15,000/s: 15 GB/s through one 16 GB/s uplink, 3.75 GB/s through each GPU's slot.
    _, busy = simulate(rack(nodes=1, rate="15000/s", detect_mean="0.2 ms"))
    uplink, slots = utilisation(busy, "uplink"), utilisation(busy, "slot")
    assert len(uplink) == 1 and len(slots) == 4
    assert uplink[0] > 0.85
    assert max(slots) < 0.35
    assert uplink[0] == pytest.approx(sum(slots), rel=0.05)  # every frame crosses both
    # without the shared uplink (each GPU its own x16 link to the DPU) the same load waits far less
    _, direct = simulate(rack(nodes=1, rate="15000/s", detect_mean="0.2 ms", uplink=False))

    def mean_latency(out):
        return np.mean([r.done - r.arrival for r in out.requests if r.outcome is Outcome.COMPLETED])

    assert mean_latency(busy) > 1.5 * mean_latency(direct)


FLAT = {
    "name": "flat",
    "hardware": {
        "pools": {"dpu": {"profile": "bluefield-3"}, "gpu": {"profile": "a100", "count": 3}},
        "links": [
            {"name": "nic", "between": ["client", "dpu"], "kind": "tcp", "bandwidth": "25 Gbit/s",
             "latency": {"kind": "exponential", "mean": "20 us"}, "contention": "shared"},
            {"name": "pcie", "between": ["dpu", "gpu"], "profile": "pcie-gen4-x16"},
        ],
    },
    "workload": {"sources": [{"name": "cams", "kind": "poisson", "rate": "3000/s", "payload": "200 KB"}]},
    "pipeline": {"stages": [
        {"name": "pre", "costs": {"dpu": {"kind": "exponential", "mean": "0.5 ms"}}, "output": "1.2 MB"},
        {"name": "detect", "costs": {"gpu": {"kind": "exponential", "mean": "0.8 ms"}}, "output": "10 KB"},
        {"name": "post", "costs": {"dpu": {"kind": "exponential", "mean": "0.1 ms"}}},
    ]},
    "policies": {"routing": {"kind": "power-of-two"}},
    "run": {"duration": "1 s", "warmup": "0.1 s", "drain": "1 s", "replications": 1, "seed": 5},
}


def test_a_one_server_topology_gives_the_flat_model_results_exactly():
    # one DPU: the flat model also replies from the device the request entered
    one = copy.deepcopy(FLAT)
    hardware = one.pop("hardware")
    one["hardware"] = {}
    one["topology"] = {"sites": {"here": {"nodes": {"box": {"pools": hardware["pools"], "links": hardware["links"]}}}}}
    flat_plan, flat = simulate(FLAT)
    plan, topo = simulate(one)
    assert plan.topology is not None and flat_plan.topology is None
    assert list(plan.pools) == list(flat_plan.pools)
    assert len(flat.requests) == len(topo.requests) > 2000

    def table(out):
        return [(r.outcome, r.done, tuple(r.start), tuple(r.end), tuple(r.instance)) for r in out.requests]

    assert table(flat) == table(topo)


def test_topology_mistakes_name_their_field():
    bad = rack()
    bad["topology"]["sites"]["dc"]["nodes"]["srv"]["links"].append(
        {"name": "oops", "between": ["dpu", "tpu"], "kind": "pcie", "bandwidth": "1 GB/s"})
    with pytest.raises(ScenarioError) as error:
        compile_plan(Scenario.model_validate(bad))
    assert any(p.path == "topology.sites.dc.nodes.srv.links[4].between" and "'tpu'" in p.message
               for p in error.value.problems)
    cut = rack()
    cut["topology"]["sites"]["dc"]["nodes"]["srv"]["links"] = [
        link for link in cut["topology"]["sites"]["dc"]["nodes"]["srv"]["links"] if link["name"] != "slot"]
    with pytest.raises(ScenarioError) as error:
        compile_plan(Scenario.model_validate(cut))
    assert any(p.path == "topology" and "no route from 'srv[0].dpu' to 'srv[0].gpu'" in p.message
               for p in error.value.problems)


# --- host costs of moving data ------------------------------------------------------------------

ONE_CORE = {
    "name": "one-core",
    "hardware": {
        "pools": {"cpu": {"profile": "host-cpu", "cores": 1}},
        "links": [{"name": "net", "between": ["client", "cpu"], "kind": "tcp", "bandwidth": "10 Gbit/s"}],
    },
    "workload": {"sources": [{"name": "s", "kind": "poisson", "rate": "400/s", "payload": "100 KB"}]},
    "pipeline": {"stages": [{"name": "work", "costs": {"cpu": {"kind": "exponential", "mean": "1 ms"}}}],
                 "reply": "1 KB"},
    "run": {"duration": "3 s", "warmup": "0.3 s", "drain": "1 s", "replications": 1, "seed": 2},
}


def busy_fraction(out) -> float:
    span = out.window.end - out.window.start
    return sum(d.busy_time for d in out.devices) / span


def test_receiving_a_message_costs_the_core_that_serves_the_stage():
    # kernel TCP receive: 0.1 ms per message + 2 copies of 100 KB at 500 MB/s per core = 0.5 ms per
    # request (the 1 KB reply is sent by the client side, which is not modelled); 400/s -> +0.2 of the core
    costed = copy.deepcopy(ONE_CORE)
    costed["hardware"]["links"][0]["receive_cost"] = {"per_message": "0.1 ms", "copy_rate": "500 MB/s", "copies": 2}
    _, plain = simulate(ONE_CORE)
    plan, paid = simulate(costed)
    assert plan.links[0].receive_cost == pytest.approx((1e-4, 2 / 500e6))
    assert busy_fraction(plain) == pytest.approx(0.4, abs=0.04)
    assert busy_fraction(paid) - busy_fraction(plain) == pytest.approx(400 * (1e-4 + 2 * 100e3 / 500e6), rel=0.1)
    served = [r for r in paid.requests if r.outcome is Outcome.COMPLETED]
    # the copy waits for the core like a job: the stage starts at least 0.5 ms after the message lands
    assert all(r.start[0] - r.arrival >= 0.5e-3 + 100e3 / 1.25e9 - 1e-12 for r in served)
    usage = {i for d in paid.devices for i in d.services}
    assert usage == {0}  # copies use the core, but are no stage of the pipeline


def test_host_costs_on_a_link_no_request_crosses_change_nothing():
    # the costed run sends every message through the routed path and gives every device a copy stage
    idle = copy.deepcopy(ONE_CORE)
    idle["hardware"]["pools"]["spare"] = {"profile": "host-cpu", "cores": 1}
    idle["hardware"]["links"].append({"name": "unused", "between": ["cpu", "spare"], "kind": "shm",
                                      "bandwidth": "10 GB/s", "send_cost": {"per_message": "1 ms"}})
    idle["policies"] = {"placement": {"map": {"work": "cpu"}}}
    plan, a = simulate(idle)
    assert plan.host_costs
    _, b = simulate(ONE_CORE)
    assert len(a.requests) > 1000
    assert [(r.outcome, r.done, r.start[0]) for r in a.requests] == [(r.outcome, r.done, r.start[0]) for r in b.requests]


def test_background_load_takes_its_share_of_the_cores_and_slows_the_stages():
    loaded = copy.deepcopy(ONE_CORE)
    loaded["hardware"]["pools"]["cpu"]["background"] = {"load": 0.3, "job": "0.5 ms"}
    _, plain = simulate(ONE_CORE)
    _, busy = simulate(loaded)
    assert busy_fraction(busy) - busy_fraction(plain) == pytest.approx(0.3, abs=0.05)

    def mean_latency(out):
        return np.mean([r.done - r.arrival for r in out.requests if r.outcome is Outcome.COMPLETED])

    assert mean_latency(busy) > 1.3 * mean_latency(plain)  # M/M/1 at 0.4 -> about 0.7 of the core busy


def test_failures_and_retries_keep_to_the_node():
    # one GPU of server 1 fails mid-run; its jobs are retried on another GPU of the same server
    doc = rack(routing="round-robin")
    doc["failures"] = [{"target": "srv[1].gpu[0]", "at": "0.5 s", "for": "0.3 s", "in_flight": "requeue"}]
    doc["resilience"] = {"retry": {"kind": "fixed", "attempts": 2, "target": "other"}}
    plan, out = simulate(doc)
    assert plan.resilience is not None
    devices = out.devices
    served = [r for r in out.requests if r.outcome is Outcome.COMPLETED]
    assert len(served) > 0.95 * len(out.requests)
    for r in served:
        ingress = devices[r.instance[PRE]]
        assert devices[r.instance[DETECT]].node == ingress.node
        assert plan.links[r.reply_link].ends == (CLIENT, ingress.pool)
    assert not any(r.instance[DETECT] == next(d.uid for d in devices if d.name == "srv[1].gpu[0]")
                   and 0.5 < r.start[DETECT] < 0.8 for r in served)


def test_merged_transfers_move_a_batch_as_one_message():
    # a GPU batch of 8 results crosses a DMA link with 1 ms per message: merged, one message
    doc = copy.deepcopy(FLAT)
    doc["hardware"]["pools"]["gpu"]["count"] = 1
    doc["hardware"]["links"][1] = {"name": "pcie", "between": ["dpu", "gpu"], "kind": "pcie",
                                   "bandwidth": "25 GB/s", "overhead": "1 ms", "contention": "fifo"}
    doc["workload"]["sources"][0]["rate"] = "800/s"
    doc["pipeline"]["stages"][1]["costs"]["gpu"] = "2 ms"
    doc["policies"] = {"batching": {"detect": {"kind": "fixed", "max_batch": 8, "timeout": "5 ms"}}}
    _, single = simulate(doc)
    doc["policies"]["channel"] = {"merge": True}
    plan, merged = simulate(doc)
    assert plan.scenario.policies.channel.merge

    def arrivals_per_batch(out) -> list[int]:
        batches: dict[int, set] = {}
        for r in out.requests:
            if r.outcome is Outcome.COMPLETED:
                batches.setdefault(r.batch[DETECT], set()).add(r.enqueued[POST])
        return [len(times) for times in batches.values()]

    assert max(arrivals_per_batch(merged)) == 1  # every batch's results reach the DPU together
    pcie = next(i for i, link in enumerate(plan.links) if link.name == "pcie")
    assert {r.link[POST] for r in merged.requests if r.outcome is Outcome.COMPLETED} == {pcie}  # recorded
    assert np.mean(arrivals_per_batch(single)) > 3  # one message each: they arrive one after another

    def mean_latency(out):
        return np.mean([r.done - r.arrival for r in out.requests if r.outcome is Outcome.COMPLETED])

    assert mean_latency(merged) < mean_latency(single)


def test_a_gpu_pays_no_host_costs_its_host_pays_its_side():
    doc = copy.deepcopy(FLAT)
    doc["hardware"]["links"][1]["send_cost"] = {"per_message": "50 us"}
    doc["hardware"]["links"][1]["receive_cost"] = {"per_message": "20 us"}
    _, plain = simulate(FLAT)
    _, paid = simulate(doc)
    span = paid.window.end - paid.window.start

    def busy(out, pool):
        return sum(d.busy_time for d in out.devices if d.pool == pool) / span

    assert busy(paid, "gpu") == pytest.approx(busy(plain, "gpu"), rel=0.02)
    served = sum(1 for r in paid.requests if r.outcome is Outcome.COMPLETED and r.arrival >= paid.window.start)
    # the DPU sends each tensor (50 us) and receives each result (20 us)
    assert busy(paid, "dpu") - busy(plain, "dpu") == pytest.approx(served * 70e-6 / span, rel=0.1)


# --- host-cost presets by transport, overrides, calibration entries ---------------------------------

def costed_link(**fields) -> dict:
    doc = copy.deepcopy(ONE_CORE)
    doc["hardware"]["links"][0].update(fields)
    return doc


def test_a_host_cost_preset_gives_both_ends_and_an_own_end_replaces_one():
    from sim import profiles

    plan = compile_plan(Scenario.model_validate(costed_link(host_cost="pageable-staging")))
    preset = profiles.HOST_COSTS["pageable-staging"]
    assert plan.links[0].send_cost == pytest.approx((preset.send.per_message, 1 / preset.send.copy_rate))
    assert plan.links[0].receive_cost == pytest.approx((6.5e-6, 1 / 14.4e9), rel=1e-3)  # D2H staging, derived
    own = compile_plan(Scenario.model_validate(costed_link(host_cost="pageable-staging",
                                                           receive_cost={"per_message": "1 ms"})))
    assert own.links[0].send_cost == plan.links[0].send_cost
    assert own.links[0].receive_cost == (1e-3, 0.0)
    none = compile_plan(Scenario.model_validate(costed_link(host_cost="zero-copy")))
    assert none.links[0].send_cost is None and none.links[0].receive_cost is None and not none.host_costs
    for preset in profiles.HOST_COSTS.values():  # every number carries its source
        assert all(end.source for end in (preset.send, preset.receive) if end is not None)


def test_an_unknown_host_cost_preset_names_the_field_and_the_known_ones():
    with pytest.raises(ScenarioError) as error:
        compile_plan(Scenario.model_validate(costed_link(host_cost="kernel-udp")))
    line = str(error.value)
    assert "hardware.links[0].host_cost" in line and "kernel-tcp" in line and "zero-copy" in line


def test_a_calibrated_end_replaces_the_preset_end(tmp_path):
    from sim.calibration import (CalibrationFile, HostCostEntry, HostCostPoint, Method, Provenance,
                                 write_calibration)

    points = [HostCostPoint(bytes=b, n=10, cpu_mean=20e-6 + 1e-9 * b, cpu_p50=20e-6 + 1e-9 * b,
                            wall_mean=30e-6 + 1e-9 * b) for b in (64, 1 << 20)]
    entry = HostCostEntry(kind="host_cost", transport="tcp", side="receive", per_message=20e-6, per_byte=1e-9,
                          per_message_ci=(19e-6, 21e-6), per_byte_ci=(0.9e-9, 1.1e-9), r2=1.0, mape=0.0, n=20,
                          points=points)
    write_calibration(CalibrationFile(
        format="dgsim-calibration/1",
        provenance=Provenance(host="test", cpu_model="none", cores=1, versions={"python": "3"},
                              date="2026-01-01T00:00:00+00:00", notes=["synthetic, not a measurement"]),
        method=Method(warmup_s=0, window_samples=10, window_s=1, max_windows=3, consecutive=3, tolerance=0.1),
        entries={"host.tcp.receive": entry}), tmp_path / "cal.yaml")
    doc = costed_link(host_cost="kernel-tcp",
                      receive_cost={"kind": "calibrated", "file": "cal.yaml", "entry": "host.tcp.receive"})
    plan = compile_plan(Scenario.model_validate(doc), base_dir=tmp_path)
    assert plan.links[0].receive_cost == pytest.approx((20e-6, 1e-9))
    assert plan.links[0].send_cost == pytest.approx((5.3e-6, 1 / 5e9))  # the preset's sending end


# --- real sites: the shipped edge-cloud -----------------------------------------------------------

def test_edge_cloud_frames_stay_in_their_site_except_when_the_policy_sends_them_to_the_cloud():
    from pathlib import Path

    from sim.scenario.load import load_scenario_file

    scenario_file = load_scenario_file(Path(__file__).resolve().parents[1] / "scenarios" / "edge-cloud.yaml",
                                       ["run.duration=3 s", "run.warmup=0.5 s", "run.drain=1 s"])
    plan = compile_plan(scenario_file.resolve("local-first"), base_dir=scenario_file.path.parent)
    run = plan.scenario.run
    out = System(plan, generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir),
                 run.seed, 0).run()
    devices, sites = out.devices, plan.topology.site_of
    served = [r for r in out.requests if r.outcome in (Outcome.COMPLETED, Outcome.DEADLINE_MISSED)]
    assert len(served) > 0.95 * len(out.requests)
    entered = [0, 0, 0, 0]
    to_cloud = 0
    for r in served:
        ingress, detect, post = (devices[r.instance[k]] for k in range(3))
        entered[int(sites[ingress.pool][len("edge["):-1])] += 1
        assert sites[ingress.pool] == f"edge[{r.id % 4}]"  # the cameras are wired to the sites in turn
        if sites[detect.pool] == "cloud":
            to_cloud += 1  # local-first spilled it: over the WAN to the cloud and back
            assert plan.links[r.link[1]].name == "cloud.dc.ingress"
        else:
            assert detect.node == ingress.node
        assert post is ingress  # post-processed on the DPU the frame entered, which replies
        assert plan.links[r.reply_link].ends == (CLIENT, ingress.pool)
    assert 0 < to_cloud < 0.5 * len(served)
    assert max(entered) - min(entered) <= 4


# --- resilience fallbacks follow the topology ---------------------------------------------------------

def test_a_fallback_named_by_role_runs_in_the_request_node():
    # every GPU of server 1 is down for a while; detect falls back to a small model on the DPU role:
    # the fallback must run on the DPU of the request's own server, reached over the topology
    doc = rack(routing="round-robin")
    doc["failures"] = [{"target": "srv[1].gpu", "at": "0.4 s", "for": "0.5 s"}]
    doc["resilience"] = {"stages": {"detect": {"fallback": {"pools": ["dpu"], "costs": {"dpu": "2 ms"},
                                                            "degraded": True}}}}
    plan, out = simulate(doc)
    assert plan.resilience.stages[DETECT].fallback.pools == tuple(f"srv[{i}].dpu" for i in range(4))
    devices = out.devices
    degraded = [r for r in out.requests if r.outcome is Outcome.DEGRADED]
    assert len(degraded) > 50
    for r in degraded:
        ingress = devices[r.instance[PRE]]
        assert ingress.node == "srv[1]"
        assert devices[r.instance[DETECT]] is ingress  # the DPU the frame is on: no hop at all
    bad = copy.deepcopy(doc)
    bad["resilience"]["stages"]["detect"]["fallback"]["pools"] = ["npu"]
    with pytest.raises(ScenarioError) as error:
        compile_plan(Scenario.model_validate(bad))
    assert "resilience.stages.detect.fallback.pools" in str(error.value) and "expected one of: dpu, gpu" in str(error.value)


# --- NVLink between the GPUs of one node -----------------------------------------------------------

def test_a_model_split_across_two_gpus_sends_its_activations_over_nvlink_not_pcie():
    from pathlib import Path

    from sim.scenario.load import load_scenario_file

    scenario_file = load_scenario_file(Path(__file__).resolve().parents[1] / "docs" / "examples" / "nvlink-split.yaml",
                                       ["run.duration=0.8 s", "run.warmup=0.1 s", "run.drain=0.5 s"])
    plan = compile_plan(scenario_file.resolve("base"), base_dir=scenario_file.path.parent)
    assert [[link.name for link in hop.links] for hop in plan.topology.route("gpu-a", "gpu-b")] == [["nvlink"]]
    run = plan.scenario.run
    out = System(plan, generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir),
                 run.seed, 0).run()
    moved = {name: sum(c.bytes_moved for c in channels) for name, channels in out.channels.items()}
    names = [link.name for link in plan.links]
    served = [r for r in out.requests if r.outcome is Outcome.COMPLETED and out.window.start <= r.arrival]
    assert len(served) > 300
    tail = 2  # the stages: preprocess, head (first half of the detector), tail (second half)
    assert {names[r.link[tail]] for r in served} == {"nvlink"}  # every activation crossed NVLink ...
    # ... and only NVLink: its 13 MB per request, while the slots carry the tensor in and the result out
    assert moved["nvlink"] == pytest.approx(13e6 * len(served), rel=0.05)
    assert moved["slot-a"] == pytest.approx(2.46e6 * len(served), rel=0.05)
    assert moved["slot-b"] == pytest.approx(2.82e6 * len(served), rel=0.05)


def test_a_per_port_link_in_the_middle_of_a_route_carries_messages():
    # edge-cloud's cloud-only frames cross port -> wan -> ingress; the WAN hop has no sending or
    # receiving instance of its own (it is neither the first nor the last hop)
    from pathlib import Path

    from sim.scenario.load import load_scenario_file

    scenario_file = load_scenario_file(Path(__file__).resolve().parents[1] / "scenarios" / "edge-cloud.yaml",
                                       ["run.duration=1 s", "run.warmup=0.2 s", "run.drain=1 s",
                                        "topology.wan.wan.sharing=per-port"])
    plan = compile_plan(scenario_file.resolve("cloud-only"), base_dir=scenario_file.path.parent)
    run = plan.scenario.run
    out = System(plan, generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir),
                 run.seed, 0).run()
    served = [r for r in out.requests if r.outcome in (Outcome.COMPLETED, Outcome.DEADLINE_MISSED)]
    assert len(served) > 0.95 * len(out.requests) > 0
    assert all(plan.links[r.link[1]].name == "cloud.dc.ingress" for r in served)


def test_a_source_wired_to_a_site_that_cannot_serve_its_entry_stage_names_the_field():
    # the cloud site has GPUs only: frames entering there would find no device for 'preprocess'
    from pathlib import Path

    from sim.scenario.load import load_scenario_file

    with pytest.raises(ScenarioError) as caught:  # every variant is compiled while the file is read
        load_scenario_file(Path(__file__).resolve().parents[1] / "scenarios" / "edge-cloud.yaml",
                           ["workload.sources.cameras.enters=cloud"])
    lines = str(caught.value).splitlines()
    assert len(lines) == 1
    assert "workload.sources[0].enters" in lines[0] and "'preprocess'" in lines[0]
