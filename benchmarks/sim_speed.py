"""Simulator speed: dgsim against a minimal hand-written SimPy model.

Both simulate the same pipeline of ``video-analytics-64`` (each variant),
from the same arrivals, with what the minimal model leaves out taken out of
dgsim's run too (``SAME_MODEL``: every link FIFO, no host costs of moving
data, one channel from the DPU to the GPU, no merged messages). The minimal model is what an engineer would write in an
afternoon: a SimPy process per request, ``Resource`` per device and link, a
tiny dynamic batcher for the GPU, latencies recorded in a list. dgsim
additionally runs its policy objects, records every per-stage timestamp and
accounts utilisation, queue lengths and batch sizes.

Reported, for each variant: simulated requests per CPU-second of each model
(``time.process_time``, robust to other jobs on a shared machine; median of
``--repeat`` alternating runs in one process), the ratio of
dgsim's CPU time to the minimal model's (issue 11's goal: <= 1.0), and both models' mean
latency (they must agree: same semantics, different random streams; the run
exits 1 where they differ by more than 5%).

    python benchmarks/sim_speed.py [--repeat 3] [--out reports/sim-speed.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import simpy

from sim.experiment import run_replication
from sim.model.system import System
from sim.plan import Plan, compile_plan
from sim.scenario.builtin import scenario_path
from sim.scenario.load import load_scenario_file
from sim.workload import Arrivals, generate_arrivals

_LINKS = ("net-host", "net-dpu", "pcie", "dpu-grpc", "dpu-shm", "rdma")
# What the minimal model does not model, taken out of dgsim's run too, so both run one model: every
# link FIFO (no bandwidth sharing), no host costs of moving data (no copy jobs on the CPUs and DPUs),
# and one channel from the DPU to the GPU, RDMA (the minimal model takes the last link between two
# pools), each message on its own (no merging of a batch's results).
LATENCY_AGREEMENT = 0.05  # same model, different random streams: means within 5% (~3,000 served requests each)
SAME_MODEL = [*(f"hardware.links.{name}.contention=fifo" for name in _LINKS),
              *(f"hardware.links.{name}.host_cost=null" for name in _LINKS),
              "policies.channel.kind=fixed", "policies.channel.use=rdma", "policies.channel.merge=false"]


def minimal_model(plan: Plan, arrivals: Arrivals, seed: int) -> list[float]:
    """The same pipeline, written directly in SimPy. Returns served latencies."""
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    pools = {p.name: simpy.Resource(env, capacity=p.servers) for p in plan.pools.values()}
    links = {link.name: simpy.Resource(env, capacity=1) for link in plan.links}
    latencies: list[float] = []
    stages = plan.stages

    def link_between(a: str, b: str):
        found = plan.links_between(a, b)
        return found[-1] if found else None

    def hop(a: str, b: str, size: float):
        link = link_between(a, b)
        if link is None:
            return
        with links[link.name].request() as turn:
            yield turn
            yield env.timeout(link.overhead + size / link.bandwidth)
        yield env.timeout(link.latency.mean())

    def service(stage, pool_name: str, batch: int = 1) -> float:
        spec = stage.costs[plan.pools[pool_name].kind]
        mean = spec.mean(batch) / plan.pools[pool_name].speed
        cv = getattr(spec, "cv", 0.0)
        if cv:
            sigma = np.sqrt(np.log1p(cv * cv))
            return mean * rng.lognormal(-sigma * sigma / 2, sigma)
        return mean

    batch_stage = next((s for s in stages if s.batching.kind == "dynamic"), None)
    waiting: list = []
    wakeup = [env.event()]

    def batcher(pool_name: str):
        spec = batch_stage.batching
        while True:
            if not waiting:
                yield wakeup[0]
                continue
            due = waiting[0][0] + spec.max_delay
            if len(waiting) < spec.max_batch and env.now < due:
                yield wakeup[0] | env.timeout(due - env.now)
                continue
            batch = waiting[: spec.max_batch]
            del waiting[: spec.max_batch]
            yield env.timeout(service(batch_stage, pool_name, len(batch)))
            for _, done in batch:
                done.succeed()

    def request(i: int):
        arrival = env.now
        where, size = "client", arrivals.request(i)[5]
        for stage in stages:
            pool = stage.pools[0]
            yield from hop(where, pool, size)
            if stage is batch_stage:
                done = env.event()
                waiting.append((env.now, done))
                old, wakeup[0] = wakeup[0], env.event()
                old.succeed()
                yield done
            else:
                with pools[pool].request() as turn:
                    yield turn
                    yield env.timeout(service(stage, pool))
            if stage.pass_probability < 1 and rng.random() >= stage.pass_probability:
                return
            where = pool
            size = stage.output if stage.output is not None else size
        yield from hop(where, "client", plan.reply_bytes if plan.reply_bytes is not None else size)
        latencies.append(env.now - arrival)

    def source():
        for i, t in enumerate(arrivals.time):
            yield env.timeout(t - env.now)
            env.process(request(i))

    if batch_stage is not None:
        pool = batch_stage.pools[0]
        for _ in range(plan.pools[pool].servers):
            env.process(batcher(pool))
    env.process(source())
    env.run(until=plan.scenario.run.duration + plan.scenario.run.drain)
    return latencies


def measure(variant: str, repeat: int, scenario: str | None = None) -> dict[str, float]:
    scenario_file = load_scenario_file(scenario_path(scenario), ["run.replications=1", *SAME_MODEL])
    plan = compile_plan(scenario_file.resolve(variant))
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0)
    times: dict[str, list[float]] = {"dgsim model": [], "dgsim with metrics": [], "minimal": []}
    latency = {}
    for _ in range(repeat):
        start = time.process_time()
        output = System(plan, arrivals, run.seed, 0).run()
        times["dgsim model"].append(time.process_time() - start)
        start = time.process_time()
        frame, _ = run_replication(plan, 0)
        times["dgsim with metrics"].append(time.process_time() - start)
        start = time.process_time()
        latencies = minimal_model(plan, arrivals, run.seed)
        times["minimal"].append(time.process_time() - start)
        served = frame[frame["outcome"].isin(["completed", "deadline_missed"])]
        latency = {"dgsim": float(served["latency"].mean()), "minimal": float(np.mean(latencies))}
    median = {name: statistics.median(values) for name, values in times.items()}
    requests = len(arrivals)
    return {
        "requests": requests,
        "dgsim_req_per_s": requests / median["dgsim model"],
        "dgsim_metrics_req_per_s": requests / median["dgsim with metrics"],
        "minimal_req_per_s": requests / median["minimal"],
        "ratio": median["dgsim model"] / median["minimal"],
        "ratio_with_metrics": median["dgsim with metrics"] / median["minimal"],
        "dgsim_latency_ms": latency["dgsim"] * 1e3,
        "minimal_latency_ms": latency["minimal"] * 1e3,
        "finished": sum(r.outcome >= 0 for r in output.requests),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, help="append a markdown section to this report")
    parser.add_argument("--scenario", help="scenario file (default: the shipped video-analytics-64)")
    args = parser.parse_args()
    lines = [
        "| variant | requests | dgsim req/CPU-s | dgsim+metrics req/CPU-s | minimal req/CPU-s | ratio (goal <= 1.0) | "
        "ratio incl. metrics | mean latency dgsim / minimal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    disagree = []
    for variant in ("cpu-path", "dpu-offload"):
        r = measure(variant, args.repeat, args.scenario)
        if abs(r["dgsim_latency_ms"] / r["minimal_latency_ms"] - 1) > LATENCY_AGREEMENT:
            disagree.append(variant)
        lines.append(
            f"| {variant} | {r['requests']} | {r['dgsim_req_per_s']:,.0f} | {r['dgsim_metrics_req_per_s']:,.0f} | "
            f"{r['minimal_req_per_s']:,.0f} | {r['ratio']:.2f} | {r['ratio_with_metrics']:.2f} | "
            f"{r['dgsim_latency_ms']:.2f} / {r['minimal_latency_ms']:.2f} ms |"
        )
    header = (f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
              f"simpy {simpy.__version__}; median of {args.repeat} alternating runs in one process.")
    text = "\n".join([header, "", *lines])
    print(text)
    if args.out:  # appended: the report holds other benchmarks' sections too
        with args.out.open("a") as report:
            report.write(f"\n## sim_speed.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n{text}\n")
    if disagree:
        print(f"the two models' mean latencies differ by more than {LATENCY_AGREEMENT:.0%} ({', '.join(disagree)}): "
              "they no longer run the same model, and the speed ratio compares different work", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
