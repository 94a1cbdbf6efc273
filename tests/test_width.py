"""Cost in width (issue 11, item 3): link channels grow with the instances, not their pairs, and
join-shortest-queue among many candidates uses a load index that makes exactly the scan's choices."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import sim.model.system as system
from sim.model.collect import collect
from sim.model.system import System
from sim.plan import compile_plan
from sim.policies.routing import IndexedShortestQueue, JoinShortestQueue
from sim.scenario.load import load_scenario_file
from sim.workload import generate_arrivals

SCENARIO = """\
name: width-{k}
description: {k} DPUs, {gpus} GPUs, join-shortest-queue over every GPU
hardware:
  pools:
    dpu: {{profile: bluefield-3, cores: 2, count: {k}}}
    gpu: {{profile: a100, streams: 1, count: {gpus}}}
  links:
    - {{name: net, between: [client, dpu], profile: tcp-100g, sharing: per-port}}
    - {{name: fabric, between: [dpu, gpu], profile: roce-200g, sharing: {sharing}}}
workload:
  sources:
    - {{name: cameras, kind: poisson, rate: {rate}/s, payload: 33 KB}}
pipeline:
  stages:
    - {{name: decode, costs: {{dpu: {{kind: exponential, mean: 2.5 ms}}}}, output: 600 KB}}
    - {{name: infer, costs: {{gpu: {{kind: exponential, mean: 2 ms}}}}, output: 2 KB}}
    - {{name: answer, costs: {{dpu: {{kind: exponential, mean: 0.2 ms}}}}}}
policies:
  routing: {{kind: shortest-queue}}
run: {{duration: 0.5 s, warmup: 0.1 s, drain: 1 s, seed: 3, replications: 1}}
"""


def _run(tmp_path: Path, k: int, sharing: str):
    path = tmp_path / f"width-{k}-{sharing}.yaml"
    path.write_text(SCENARIO.format(k=k, gpus=2 * k, rate=400 * k, sharing=sharing))
    plan = compile_plan(load_scenario_file(path).resolve("base"), str(path), path.parent)
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir)
    return System(plan, arrivals, run.seed, 0).run()


def _channels(output) -> int:
    return sum(len(channels) for channels in output.channels.values())


def test_per_port_channels_grow_with_the_instances_not_their_pairs(tmp_path):
    # every DPU sends to many GPUs (JSQ over all of them), yet each instance has one port per link:
    # net: k in + k out; fabric: k DPU ports + 2k GPU ports
    counts = {k: _channels(_run(tmp_path, k, "per-port")) for k in (2, 6)}
    assert counts == {2: 10, 6: 30}


def test_per_pair_channels_are_made_only_for_pairs_that_traffic_joins(tmp_path):
    output = _run(tmp_path, 6, "per-pair")
    used = set()
    for request in output.requests:  # stages: decode (DPU) -> infer (GPU) -> answer (DPU)
        decode, infer, answer = request.instance
        if infer >= 0:
            used.add((decode, infer))
        if answer >= 0:
            used.add((infer, answer))
    assert all(r.outcome.name == "COMPLETED" for r in output.requests)  # nothing left in flight
    fabric = len(output.channels["fabric"])
    assert fabric == len(used)  # one per pair used, in each direction, none made in advance
    assert fabric > 30  # and with JSQ spreading over 12 GPUs, far more than per-port's


@dataclass
class _Instance:
    queue_length: int = 0
    busy: int = 0
    servers: int = 1
    tier: int = 0


def test_indexed_shortest_queue_makes_the_scans_choice_after_every_change():
    rng = random.Random(5)
    candidates = [_Instance(servers=rng.choice([1, 2, 4])) for _ in range(40)]
    index, scan = IndexedShortestQueue(candidates), JoinShortestQueue()
    for _ in range(5_000):
        i = rng.randrange(len(candidates))
        candidate = candidates[i]
        if rng.random() < 0.5:
            candidate.queue_length += 1
        elif candidate.queue_length:
            candidate.queue_length -= 1
        candidate.busy = rng.randint(0, candidate.servers)
        index.refresh(i)
        assert index.choose(candidates, None) == scan.choose(candidates, None)  # ties to the first, too
    subset = candidates[::3]  # any other list (healthy ones, a node's own) is scanned
    assert index.choose(subset, None) == scan.choose(subset, None)


def test_the_load_index_leaves_every_decision_as_the_scan_made_it(tmp_path, monkeypatch):
    indexed = collect(_run(tmp_path, 9, "per-port"), 0)[0]  # 18 GPU candidates: indexed
    monkeypatch.setattr(system, "INDEX_FROM", 10**9)
    scanned = collect(_run(tmp_path, 9, "per-port"), 0)[0]
    assert len(indexed) > 1000 and indexed["infer__device"].nunique() >= 12
    pd.testing.assert_frame_equal(indexed, scanned)
