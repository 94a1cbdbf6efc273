"""Engine speed: dgsim against a minimal SimPy model and a heapq event loop.

Issue 11's yardstick. The same network in three engines, run side by side
in one process:

- a tandem of three M/M/2 stations (a Jackson network): Poisson arrivals at
  1,600/s, each station two servers with exponential service of mean 1 ms,
  so rho = 0.8 at every station; ``--customers`` (default 200,000) arrive;
- dgsim: the network as a scenario file (three pools of two servers joined
  by ideal links: a hop takes no simulated time), one replication: loading
  the scenario, then the steps of ``sim.experiment.run_replication``
  (arrivals, simulation, request table, metrics: what one replication of
  ``dgsim run`` costs), each timed, so the report also gives the ratio of
  the simulation alone to the minimal model;
- minimal: what an engineer writes in SimPy in ten minutes: a process per
  customer, a ``simpy.Resource`` per station, sojourn times in a list;
- heapq: the floor of pure Python: one heap of (time, order, event), a
  deque per station, no engine at all.

Reported per engine: CPU seconds (``time.process_time``; median of
``--repeat`` rounds, engines alternating in each round so a shared
machine's drifting load hits all of them), customers per CPU-second, the
ratios dgsim/minimal and dgsim/heapq, and the mean sojourn with a 95%
batch-means interval (customers arriving after a 1 s warm-up, 20 batches
in order of arrival). The three must agree with each other and with the
closed form (Erlang C per station, summed: 8.333 ms): the run exits 1 if
any interval misses the closed form or any two engines' difference
excludes 0 at 95%.

A second mode profiles a mid-size dgsim run with cProfile and splits its
time between the event loop (SimPy's environment and heap, and
sim/model/engine.py's subclass of it), the model (sim/model, sim/costs), the
policies (sim/policies), the metrics (sim/metrics, sim/model/collect.py)
and arrivals (sim/workload); time in libraries (numpy, pandas, heapq,
builtins) is charged to the dgsim or SimPy code that called them.

    python benchmarks/engine_speed.py [--customers 200000] [--repeat 1] [--append reports/sim-speed.md]
    python benchmarks/engine_speed.py --profile [--scenario video-analytics-64] [--variant dpu-offload]
        [--duration 20] [--append reports/sim-speed.md]
"""

from __future__ import annotations

import argparse
import cProfile
import heapq
import math
import os
import platform
import pstats
import random
import statistics
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np
import simpy
from scipy import stats

REPO = Path(__file__).resolve().parents[1]

ARRIVAL_RATE = 1600.0  # per second
MEAN_SERVICE = 1e-3  # seconds
SERVERS = 2
STATIONS = 3
WARMUP = 1.0  # seconds: customers arriving earlier are left out of every engine's mean
BATCHES = 20

# Three pools of two servers; costs are on each kind's reference profile (speed 1), so the
# 1 ms mean is the service time. dgsim needs a link between consecutive pools: ideal ones
# (0 B messages, no latency, no overhead), so a hop takes no simulated time.
SCENARIO = """\
name: tandem-3xmm2
description: Three M/M/2 stations in tandem, rho 0.8 each (engine benchmark, benchmarks/engine_speed.py)
hardware:
  pools:
    cpu: {{profile: host-cpu, cores: 2}}
    dpu: {{profile: bluefield-3, cores: 2}}
    gpu: {{profile: a100, streams: 2}}
  links:
    - {{name: one-two, between: [cpu, dpu], kind: pcie, bandwidth: 1e9 GB/s, latency: 0 s, overhead: 0 s}}
    - {{name: two-three, between: [dpu, gpu], kind: pcie, bandwidth: 1e9 GB/s, latency: 0 s, overhead: 0 s}}
workload:
  sources:
    - {{name: arrivals, kind: poisson, rate: {rate}/s, payload: 0 B}}
pipeline:
  stages:
    - {{name: one, costs: {{cpu: {{kind: exponential, mean: {mean} ms}}}}}}
    - {{name: two, costs: {{dpu: {{kind: exponential, mean: {mean} ms}}}}}}
    - {{name: three, costs: {{gpu: {{kind: exponential, mean: {mean} ms}}}}}}
run: {{duration: {duration} s, warmup: {warmup} s, drain: 30 s, seed: {seed}, replications: 1}}
"""


def erlang_c_sojourn(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in an M/M/c station."""
    a = arrival_rate / service_rate
    rho = a / servers
    head = sum(a**k / math.factorial(k) for k in range(servers))
    tail = a**servers / math.factorial(servers) / (1 - rho)
    return tail / (head + tail) / (servers * service_rate - arrival_rate) + 1 / service_rate


THEORY = STATIONS * erlang_c_sojourn(ARRIVAL_RATE, 1 / MEAN_SERVICE, SERVERS)


@dataclass(frozen=True)
class Sojourns:
    """Arrival times and sojourn times of the customers that finished, in order of arrival."""

    arrival: np.ndarray
    sojourn: np.ndarray
    phases: dict[str, float] | None = None  # dgsim: CPU seconds per phase of the replication

    def measured(self) -> np.ndarray:
        order = np.argsort(self.arrival, kind="stable")
        keep = self.arrival[order] >= WARMUP
        return self.sojourn[order][keep]


def batch_means_interval(values: np.ndarray, batches: int = BATCHES) -> tuple[float, float]:
    """Mean and 95% half-width from ``batches`` consecutive batch means."""
    usable = len(values) - len(values) % batches
    means = values[:usable].reshape(batches, -1).mean(axis=1)
    half = stats.t.ppf(0.975, batches - 1) * means.std(ddof=1) / math.sqrt(batches)
    return float(values.mean()), float(half)


# --- the three engines ----------------------------------------------------------------------------


def run_dgsim(customers: int, seed: int) -> Sojourns:
    """One replication of the scenario above, as ``dgsim run`` computes it (``run_replication``'s phases)."""
    from sim.plan import compile_plan
    from sim.scenario.load import load_scenario_file

    duration = customers / ARRIVAL_RATE
    text = SCENARIO.format(rate=ARRIVAL_RATE, mean=MEAN_SERVICE * 1e3, duration=duration, warmup=WARMUP, seed=seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tandem-3xmm2.yaml"
        path.write_text(text)
        start = time.process_time()
        plan = compile_plan(load_scenario_file(path).resolve("base"), str(path), path.parent)
        load = time.process_time() - start
        frame, phases = run_phases(plan)
    served = frame[frame["outcome"].isin(["completed", "deadline_missed"])]
    return Sojourns(served["arrival"].to_numpy(float), served["latency"].to_numpy(float),
                    {"scenario load": load, **phases})


def run_minimal_simpy(customers: int, seed: int) -> Sojourns:
    """A process per customer, a Resource per station."""
    env = simpy.Environment()
    rng = random.Random(seed)
    stations = [simpy.Resource(env, capacity=SERVERS) for _ in range(STATIONS)]
    arrivals: list[float] = []
    sojourns: list[float] = []
    service_rate = 1 / MEAN_SERVICE

    def customer():
        arrival = env.now
        for station in stations:
            with station.request() as turn:
                yield turn
                yield env.timeout(rng.expovariate(service_rate))
        arrivals.append(arrival)
        sojourns.append(env.now - arrival)

    def source():
        for _ in range(customers):
            yield env.timeout(rng.expovariate(ARRIVAL_RATE))
            env.process(customer())

    env.process(source())
    env.run()
    return Sojourns(np.array(arrivals), np.array(sojourns))


def run_heapq(customers: int, seed: int) -> Sojourns:
    """One heap of events, a FIFO queue and a busy count per station."""
    rng = random.Random(seed)
    service_rate = 1 / MEAN_SERVICE
    ARRIVE, DONE = 0, 1
    heap: list[tuple[float, int, int, int, int]] = []  # (time, order, kind, customer, station)
    order = count()
    waiting = [deque() for _ in range(STATIONS)]
    busy = [0] * STATIONS
    arrival = [0.0] * customers
    sojourn = [0.0] * customers

    def enter(now: float, who: int, station: int) -> None:
        if busy[station] < SERVERS:
            busy[station] += 1
            heapq.heappush(heap, (now + rng.expovariate(service_rate), next(order), DONE, who, station))
        else:
            waiting[station].append(who)

    heapq.heappush(heap, (rng.expovariate(ARRIVAL_RATE), next(order), ARRIVE, 0, 0))
    while heap:
        now, _, kind, who, station = heapq.heappop(heap)
        if kind == ARRIVE:
            arrival[who] = now
            if who + 1 < customers:
                heapq.heappush(heap, (now + rng.expovariate(ARRIVAL_RATE), next(order), ARRIVE, who + 1, 0))
            enter(now, who, 0)
            continue
        if waiting[station]:
            heapq.heappush(heap, (now + rng.expovariate(service_rate), next(order), DONE,
                                  waiting[station].popleft(), station))
        else:
            busy[station] -= 1
        if station + 1 < STATIONS:
            enter(now, who, station + 1)
        else:
            sojourn[who] = now - arrival[who]
    return Sojourns(np.array(arrival), np.array(sojourn))


ENGINES = {"dgsim": run_dgsim, "minimal": run_minimal_simpy, "heapq": run_heapq}


# --- reporting ------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (f"{os.cpu_count()}-CPU {platform.machine()} ({cpu}), {platform.python_implementation()} "
            f"{platform.python_version()}, simpy {simpy.__version__}, numpy {np.__version__}")


def provenance() -> str:
    def run(*command: str) -> str:
        try:
            return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    commit = run("git", "rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes in sim/)" if run("git", "status", "--porcelain", "--", "sim") else ""
    return (f"commit {commit}{dirty}; {machine()}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load: `{run('uptime').strip()}`")


def compare_engines(customers: int, repeat: int, seed: int) -> tuple[str, bool]:
    import sim.experiment  # noqa: F401  (imports are not the engine's time)
    import sim.plan  # noqa: F401
    import sim.scenario.load  # noqa: F401

    cpu: dict[str, list[float]] = {name: [] for name in ENGINES}
    results: dict[str, Sojourns] = {}
    for _ in range(repeat):
        for name, engine in ENGINES.items():
            start = time.process_time()
            results[name] = engine(customers, seed)
            cpu[name].append(time.process_time() - start)
    median = {name: statistics.median(values) for name, values in cpu.items()}
    intervals = {name: batch_means_interval(result.measured()) for name, result in results.items()}
    ok = True
    lines = [
        f"Tandem of {STATIONS} M/M/{SERVERS} stations, rho 0.8, {customers:,} customers "
        f"({'median of %d rounds' % repeat if repeat > 1 else 'one round'}, engines alternating, one process).",
        "",
        "| engine | customers | CPU s | customers per CPU-s | dgsim / this | mean sojourn ms (95% CI) | "
        "closed form in CI |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        mean, half = intervals[name]
        inside = abs(mean - THEORY) <= half
        ok &= inside
        lines.append(f"| {name} | {len(result.sojourn):,} | {median[name]:.2f} | {len(result.sojourn) / median[name]:,.0f} | "
                     f"{median['dgsim'] / median[name]:.2f} | {mean * 1e3:.3f} +- {half * 1e3:.3f} | "
                     f"{'yes' if inside else 'NO'} |")
    names = list(results)
    agreement = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            difference = intervals[a][0] - intervals[b][0]
            half = math.hypot(intervals[a][1], intervals[b][1])
            agree = abs(difference) <= half
            ok &= agree
            agreement.append(f"{a} - {b} = {difference * 1e3:+.3f} +- {half * 1e3:.3f} ms ({'agree' if agree else 'DISAGREE'})")
    lines += ["", f"Closed form (Erlang C per station, summed): {THEORY * 1e3:.3f} ms. Differences: "
              + "; ".join(agreement) + ".",
              f"Ratios: dgsim/minimal = {median['dgsim'] / median['minimal']:.2f}, "
              f"dgsim/heapq = {median['dgsim'] / median['heapq']:.2f} "
              f"(rounds, CPU s: " + "; ".join(f"{n} " + ", ".join(f"{v:.2f}" for v in cpu[n]) for n in cpu) + ").",
              "dgsim's last round by phase (CPU s): " + ", ".join(
                  f"{name} {seconds:.2f}" for name, seconds in (results["dgsim"].phases or {}).items())
              + f"; simulation alone / minimal = {(results['dgsim'].phases or {}).get('simulation', math.nan) / median['minimal']:.2f}."]
    return "\n".join(lines), ok


# --- profile split --------------------------------------------------------------------------------

CATEGORIES = (
    # the event loop: SimPy's environment and heap, and sim/model/engine.py's subclass of it
    ("event loop (SimPy, sim/model/engine.py)", ("simpy", "sim/model/engine.py")),
    ("metrics (sim/metrics, sim/model/collect.py)", ("sim/metrics/", "sim/model/collect.py")),
    ("policies (sim/policies)", ("sim/policies/",)),
    ("model (sim/model, sim/station.py, sim/costs.py)", ("sim/model/", "sim/station.py", "sim/costs.py")),
    ("arrivals (sim/workload)", ("sim/workload",)),
)
OTHER_DGSIM = "other dgsim (sim/*)"


def own_place(filename: str) -> str | None:
    """Where code in ``filename`` lives (``sim/model/device.py``, ``simpy``), or None for a library."""
    path = filename.replace(os.sep, "/")
    if "/simpy/" in path:
        return "simpy"
    if "site-packages" not in path and "/sim/" in path:
        return "sim/" + path.rsplit("/sim/", 1)[1]
    return None


def category(place: str) -> str:
    for name, parts in CATEGORIES:
        if any(part.strip("/") in place for part in parts):
            return name
    return OTHER_DGSIM


def split_profile(profile: pstats.Stats) -> dict[str, float]:
    """Self time per place; a library function's self time goes to its callers' places."""
    table = profile.stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    memo: dict[tuple, dict[str, float]] = {}

    def shares(key: tuple, seen: frozenset) -> dict[str, float]:
        """How ``key``'s time divides among places (fractions summing to 1)."""
        if key in memo:
            return memo[key]
        own = own_place(key[0])
        if own is not None:
            return {own: 1.0}
        callers = table[key][4] if key in table else {}
        weights: dict[str, float] = {}
        total = 0.0
        for caller, (_cc, _nc, tt, ct) in callers.items():
            weight = ct or tt
            if weight <= 0 or caller in seen:
                continue
            for name, share in shares(caller, seen | {key}).items():
                weights[name] = weights.get(name, 0.0) + weight * share
            total += weight
        result = {name: w / total for name, w in weights.items()} if total > 0 else {"unattributed": 1.0}
        memo[key] = result  # first answer kept: in a recursive cycle, an approximation
        return result

    split: dict[str, float] = {}
    for key, (_cc, _nc, tt, _ct, _callers) in table.items():
        for name, share in shares(key, frozenset()).items():
            split[name] = split.get(name, 0.0) + tt * share
    return split


def run_phases(plan):
    """``sim.experiment.run_replication`` step by step: its request table and CPU seconds per phase."""
    from sim.metrics.summary import summarise
    from sim.model.collect import collect
    from sim.model.system import System
    from sim.workload import generate_arrivals

    run = plan.scenario.run
    phases = {}
    start = time.process_time()
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir)
    phases["arrivals"] = time.process_time() - start
    start = time.process_time()
    output = System(plan, arrivals, run.seed, 0).run()
    phases["simulation"] = time.process_time() - start
    start = time.process_time()
    frame, usage = collect(output, 0)
    phases["request table"] = time.process_time() - start
    start = time.process_time()
    summarise(frame, usage, run.warmup, run.duration)
    phases["metrics"] = time.process_time() - start
    return frame, phases


def profile_run(scenario: str, variant: str, duration: float) -> str:
    from sim.experiment import run_replication
    from sim.plan import compile_plan
    from sim.scenario.builtin import scenario_path
    from sim.scenario.load import load_scenario_file

    path = scenario_path(scenario)
    scenario_file = load_scenario_file(path, [f"run.duration={duration} s", "run.replications=1"])
    plan = compile_plan(scenario_file.resolve(variant), str(path), path.parent)
    _, phases = run_phases(plan)
    plain = sum(phases.values())
    profiler = cProfile.Profile(time.process_time)
    start = time.process_time()
    profiler.enable()
    frame, _ = run_replication(plan, 0)
    profiler.disable()
    cpu = time.process_time() - start
    profile = pstats.Stats(profiler)
    places = split_profile(profile)
    split: dict[str, float] = {}
    for place, seconds in places.items():
        name = "unattributed" if place == "unattributed" else category(place)
        split[name] = split.get(name, 0.0) + seconds
    total = sum(split.values())
    lines = [f"cProfile of one replication of `{scenario}` variant `{variant}`, {duration:g} s simulated "
             f"({len(frame):,} requests): {plain:.1f} CPU s without the profiler, {cpu:.1f} CPU s under it "
             f"({total:.1f} s attributed). The profiler's cost per call inflates code that makes many small "
             "calls, so read the shares, not the seconds. Self time by where the code lives; library time "
             "(numpy, pandas, heapq, builtins such as `len`) is charged to the calling code's place in "
             "proportion to the time each caller spent in it.",
             "", "| part | CPU s | share |", "|---|---|---|"]
    for name, seconds in sorted(split.items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {seconds:.2f} | {seconds / total:.1%} |")
    lines += ["", "The same replication's phases without the profiler (CPU s): "
              + ", ".join(f"{name} {seconds:.2f} ({seconds / plain:.0%})" for name, seconds in phases.items()) + "."]
    lines += ["", "By file (same attribution):", "", "| file | CPU s | share |", "|---|---|---|"]
    for place, seconds in sorted(places.items(), key=lambda item: -item[1]):
        if seconds >= 0.005 * total:
            lines.append(f"| `{place}` | {seconds:.2f} | {seconds / total:.1%} |")
    top = sorted(profile.stats.items(), key=lambda item: -item[1][2])[:15]
    lines += ["", "Top functions by self time:", "", "| function | calls | self s | cumulative s |", "|---|---|---|---|"]
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in top:
        where = filename.replace(str(REPO) + "/", "")
        where = where.split("site-packages/")[-1]
        lines.append(f"| `{where}:{line} {name}` | {nc:,} | {tt:.2f} | {ct:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=200_000, help="customers through the tandem (default 200,000)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; CPU seconds are the median (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="profile a dgsim run instead of comparing engines")
    parser.add_argument("--scenario", default="video-analytics-64")
    parser.add_argument("--variant", default="dpu-offload")
    parser.add_argument("--duration", type=float, default=20.0, help="simulated seconds for --profile")
    parser.add_argument("--append", type=Path, help="append the section to this markdown report")
    args = parser.parse_args()
    if args.profile:
        title = "## Where dgsim's time goes (cProfile, issue 11)"
        body, ok = profile_run(args.scenario, args.variant, args.duration), True
        command = (f"python benchmarks/engine_speed.py --profile --scenario {args.scenario} --variant {args.variant} "
                   f"--duration {args.duration:g}")
    else:
        title = "## Engine speed: dgsim vs minimal SimPy vs heapq (issue 11)"
        body, ok = compare_engines(args.customers, args.repeat, args.seed)
        command = f"python benchmarks/engine_speed.py --customers {args.customers} --repeat {args.repeat}"
    text = f"{title}\n\n{provenance()}.\n\n{body}\n\nRerun: `{command}`\n"
    print(text)
    if args.append:
        with args.append.open("a") as report:
            report.write("\n" + text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
