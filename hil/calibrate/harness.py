"""The harness's own per-request overhead, measured through the runner itself.

A request in ``dgsim hil run`` costs something even when its stages cost
nothing: the front issues it, the channel policy picks a transport, the
message crosses to the GPU-side process, its station queues and batches it,
the answer crosses back, the front records the outcome, and both idle loops
poll in between. To see that cost alone, this runs a one-stage pipeline
whose only stage sits on the GPU side and is emulated with a zero cost
(``hil.op: emulate``, cost ``0 s``), with empty payloads, in single-stream
mode (one request at a time), on the scenario's own cores, transports and
channel policy. Every measured request's latency is overhead. The stability
rule is applied to the sequence of latencies, window after window.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import numpy as np

from hil.calibrate.fit import distribution_entry
from hil.calibrate.measure import Settings, measure
from hil.runner.layout import lay_out
from hil.runner.run import Settings as RunSettings
from hil.runner.run import run_replication
from sim.plan import compile_plan
from sim.scenario.schema import Scenario

WARMUP_S = 0.3


def overhead_scenario(scenario: Scenario) -> Scenario:
    """A zero-cost, empty-payload pipeline on ``scenario``'s cores, transports and channel policy."""
    return Scenario.model_validate({
        "name": f"{scenario.name}-harness-overhead",
        "hardware": {"pools": {"front": {"profile": "bluefield-3"}, "gpu": {"profile": "a100"}}},
        "workload": {"sources": [{"name": "empty", "kind": "poisson", "rate": "100/s", "payload": "0 B"}]},
        "pipeline": {"stages": [{"name": "noop", "costs": {"gpu": "0 s"}, "hil": {"op": "emulate"}}],
                     "reply": "0 B"},
        "policies": {"channel": scenario.policies.channel.model_dump(by_alias=True)},
        "run": {"duration": f"{WARMUP_S + 0.1} s", "warmup": f"{WARMUP_S} s", "drain": "1 s", "replications": 1},
        "hil": (scenario.hil.model_dump(by_alias=True) if scenario.hil else None),
    })


def harness_overhead(scenario: Scenario, kinds: tuple[str, ...], rule: Settings, label: str = ""):
    """A distribution entry: request latency through the runner with nothing to do."""
    measured = overhead_scenario(scenario)
    layout = lay_out(compile_plan(measured, label), "overhead", label)
    requests = rule.max_windows * rule.window_samples
    settings = RunSettings(mode="single-stream", kinds=kinds, backend="auto", min_requests=requests,
                           reply_timeout=10.0)
    with tempfile.TemporaryDirectory(prefix="dgsim-calibrate-") as folder:
        run = run_replication(layout, 0, settings, Path(folder))
    frame = run.frame.sort_values("arrival")
    done = frame[(frame["outcome"] == "completed") & (frame["arrival"] >= WARMUP_S)]
    latencies = done["latency"].to_numpy(dtype=float)
    if len(latencies) < rule.consecutive * rule.window_samples:
        failed = run.failure or f"{len(latencies)} of {len(frame)} requests completed"
        raise RuntimeError(f"harness overhead run did not complete enough requests: {failed}")
    stream = iter(latencies.tolist())  # the windows are counted over the recorded sequence
    counted = dataclasses.replace(rule, warmup_s=0.0, warmup_runs=0, window_s=math.inf,
                                  min_window_samples=rule.window_samples,
                                  max_windows=min(rule.max_windows, len(latencies) // rule.window_samples))
    measurement = measure(lambda: next(stream), counted)
    cores = ", ".join(f"{side} {list(c)}" for side, c in layout.cores.items())
    return distribution_entry(measurement, (
        "request latency through dgsim hil run with one zero-cost emulated stage on the GPU side, empty "
        f"payloads, single-stream, after {WARMUP_S:g} s of warm-up: issue, transport there and back "
        f"({', '.join(kinds)}, chosen by the scenario's channel policy), queueing, polling, bookkeeping; "
        f"cores {cores}; {int(np.sum(frame['outcome'] == 'completed'))} requests completed"))
