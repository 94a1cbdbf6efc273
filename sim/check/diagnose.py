"""Why a budget failed, in plain rules with the numbers behind them.

When a variant fails a budget (or regresses), a few rules of thumb look at
its other metrics and say where the time goes, the way a performance
engineer would read the table:

- the GPU is lightly used while latency is over budget: the GPU is not the
  bottleneck; the DPU stage or a link is (the busiest other pool or link
  is named; the rule needs one to exist);
- a link is nearly always busy: the pipeline is transfer-bound;
- a device pool is nearly always busy: it is compute-bound, with a queue;
- batches leave far from full: the batcher's queue delay (``max_delay``,
  or ``timeout`` for fixed batches) is too short to fill them;
- a stage's jobs wait longer than they are served: that stage's queue
  dominates the latency.

Each finding is one line naming the rule, the numbers and the knob to turn.
Thresholds are the constants below; the rules only explain, never decide.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from sim.check.budgets import show
from sim.check.verdict import Outcome
from sim.contract.metric_keys import Kind, MetricKey, Subject
from sim.metrics.summary import Estimate
from sim.profiles import DEVICES
from sim.scenario.schema import Scenario

BUSY = 0.9  # utilisation at or above which a pool or link is saturated
GPU_IDLE = 0.5  # GPU utilisation below which the GPU is not what limits latency
LOW_FILL = 0.5  # mean batch / max_batch below which batches leave too early


def diagnose(scenario: Scenario, estimates: Mapping[str, Estimate], outcomes: Sequence[Outcome]) -> list[str]:
    """Findings for a variant with a failed (or invalid) budget; none when nothing failed."""
    failed = [o for o in outcomes if o.fails(inconclusive_fails=False)]
    if not failed:
        return []

    def mean(kind: Kind, subject: Subject) -> float:
        e = estimates.get(MetricKey(kind, subject).name)
        return math.nan if e is None else e.mean

    def pct(value: float) -> str:
        return f"{value:.0%}"

    pools = {name: getattr(DEVICES.get(spec.profile), "kind", None) for name, spec in scenario.hardware.pools.items()}
    links = [link.name for link in scenario.hardware.links]
    pool_busy = {name: mean(Kind.UTILISATION, Subject.pool(name)) for name in pools}
    link_busy = {name: mean(Kind.UTILISATION, Subject.link(name)) for name in links}
    pool_busy = {name: u for name, u in pool_busy.items() if not math.isnan(u)}
    link_busy = {name: u for name, u in link_busy.items() if not math.isnan(u)}
    out = []
    late = [o for o in failed if o.budget.key.kind is Kind.LATENCY]
    gpus = {name: pool_busy[name] for name, kind in pools.items() if kind == "gpu" and name in pool_busy}
    others = {f"'{n}'": u for n, u in pool_busy.items() if n not in gpus}
    others.update({f"link '{n}'" if f"'{n}'" in others else f"'{n}'": u for n, u in link_busy.items()})
    if late and gpus and others and max(gpus.values()) < GPU_IDLE:
        o = late[0]
        where = max(others, key=others.get)
        out.append(f"GPU utilisation low while latency is high: {', '.join(f'{n} {pct(u)}' for n, u in gpus.items())}"
                   f" busy while {o.budget.label} is {show(o.budget.key, o.estimate.mean)} "
                   f"(budget {o.budget.text}) -> the DPU stage or a link is the bottleneck; busiest elsewhere: "
                   f"{where} at {pct(others[where])}")
    for name in links:
        if link_busy.get(name, 0.0) >= BUSY:
            rate = mean(Kind.BYTES_PER_S, Subject.link(name))
            out.append(f"link '{name}' is {pct(link_busy[name])} busy ({rate / 1e6:.1f} MB/s) -> transfer-bound: "
                       f"use a faster link, smaller payloads or fewer hops")
    for name in pools:
        if pool_busy.get(name, 0.0) >= BUSY:
            out.append(f"pool '{name}' is {pct(pool_busy[name])} busy with "
                       f"{mean(Kind.QUEUE, Subject.pool(name)):.1f} jobs queued on "
                       f"average -> compute-bound: add devices, a faster part or bigger batches")
    for stage, spec in scenario.policies.batching.items():
        knob = "max_delay" if spec.kind in ("dynamic", "deadline") else "timeout"
        delay = getattr(spec, knob)
        batch = mean(Kind.BATCH, Subject.stage(stage))
        fill = batch / spec.max_batch
        if spec.kind != "none" and spec.max_batch > 1 and delay and fill < LOW_FILL:
            out.append(f"batch fill low on '{stage}': mean batch {batch:.2f} of max {spec.max_batch} "
                       f"({pct(fill)}) -> {knob} {delay * 1e3:g} ms is too short to fill batches; "
                       f"raise policies.batching.{stage}.{knob}")
    waits = {s.name: (mean(Kind.WAIT, Subject.stage(s.name)), mean(Kind.SERVICE, Subject.stage(s.name)))
             for s in scenario.pipeline.stages}
    waits = {s: ws for s, ws in waits.items() if not math.isnan(ws[0])}
    if waits:
        stage = max(waits, key=lambda s: waits[s][0])
        wait, service = waits[stage]
        if wait > service:
            key = MetricKey(Kind.WAIT, Subject.stage(stage))
            out.append(f"stage '{stage}' waits {show(key, wait)} on average for "
                       f"{show(key, service)} of service -> its queue dominates latency")
    return out
