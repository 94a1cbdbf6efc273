"""The offered-load estimate (``sim.capacity``) against loads worked out by hand.

Each scenario is small enough to compute its utilisations on paper:
arrival rate x pass fraction x mean service time per request / (servers x
instances) for pools, messages/s x (overhead + bytes / bandwidth) /
channels for links. The estimate must match these to rounding, and flag
exactly the pools and links above 1.
"""

from __future__ import annotations

import pytest

from sim.capacity import offered_loads, overload_warnings, overloads
from sim.scenario.load import load_scenario_file

SCENARIO = """\
name: paper
hardware:
  pools:
    dpu: {profile: host-cpu, servers: 2, speed: 0.5}
    gpu: {profile: a100, servers: 1, count: 2}
  links:
    - {name: wire, between: [dpu, gpu], kind: tcp, bandwidth: 1 GB/s, overhead: 10 us, latency: 1 ms}
workload:
  sources:
    - {name: cams, kind: periodic, streams: 10, rate: 20 fps, payload: 100 KB}
    - {name: bursts, kind: poisson, rate: 300/s, payload: 100 KB}
pipeline:
  stages:
    - name: filter
      pass_probability: 0.25
      output: 50 KB
      costs: {cpu: {kind: deterministic, value: 1 ms}}
    - name: infer
      costs: {gpu: {kind: affine, base: 4 ms, per_item: 1 ms}}
policies:
  placement: {strategy: explicit, map: {filter: dpu, infer: gpu}}
  batching: {infer: {kind: dynamic, max_batch: 4, max_delay: 5 ms}}
run: {duration: 2 s, warmup: 0.5 s, seed: 1, replications: 1}
"""


@pytest.fixture()
def plan(tmp_path):
    path = tmp_path / "paper.yaml"
    path.write_text(SCENARIO)
    return load_scenario_file(path).plan("base")


def test_pool_and_link_loads_match_the_hand_computation(plan):
    loads = {(load.kind, load.name): load for load in offered_loads(plan)}
    rate = 10 * 20 + 300  # 500 requests/s
    # filter: 1 ms at speed 0.5 = 2 ms per request on 2 servers
    assert loads["pool", "dpu"].utilisation == pytest.approx(rate * 2e-3 / 2)
    # infer: a quarter pass; a full batch of 4 takes 4 + 4 x 1 = 8 ms, 2 ms per request, 2 GPUs of one stream
    assert loads["pool", "gpu"].utilisation == pytest.approx(rate * 0.25 * 2e-3 / 2)
    # dpu -> gpu: 125 messages/s of 50 KB, each holding a channel 10 us + 50 us; per-pair: 1 x 2 channels
    assert loads["link", "wire"].utilisation == pytest.approx(rate * 0.25 * (10e-6 + 50e3 / 1e9) / 2)
    assert overloads(plan) == []


def test_only_the_overloaded_pool_is_flagged(plan, tmp_path):
    path = tmp_path / "hot.yaml"
    path.write_text(SCENARIO.replace("rate: 300/s", "rate: 4800/s"))  # 5,000/s: dpu at 5, gpu at 1.25
    hot = load_scenario_file(path).plan("base")
    flagged = overloads(hot)
    assert [(l.kind, l.name) for l in flagged] == [("pool", "dpu"), ("pool", "gpu")]
    assert flagged[0].utilisation == pytest.approx(5.0) and flagged[1].utilisation == pytest.approx(1.25)
    [first, second] = overload_warnings(hot)
    assert first["name"] == "dpu" and "5.00x its capacity" in first["message"] and second["utilisation"] == 1.25
