"""Cost of recording time series: a default run with and without the sampler.

Simulates each variant of ``video-analytics-64`` (one replication, the
scenario's own 6 s of arrivals and 2 s drain) twice per round: once as
``System.run`` does it, once with ``sim.model.timeseries`` attached at the
given interval (default ``DEFAULT_INTERVAL``). Rounds alternate the order.
CPU time of this process (``time.process_time``) is measured, so other
jobs on the machine disturb it less than wall time would; the garbage of
the previous run is collected before each timed run (left in place, its
collection lands in whichever run comes next and swamps the difference).

Reported per variant: median CPU seconds of each, the ratio of medians and
the median of the per-round ratios (goal: under 1.05), the time spent
inside the sampler's own ticks as a share of the run (a direct, less noisy
measure of its cost), the samples taken, and the size of the Parquet file
it leaves.

    python benchmarks/timeseries_overhead.py [--rounds 5] [--interval 0.01] [--out reports/timeseries-overhead.md]
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import tempfile
import time
from pathlib import Path

import simpy

from sim.model import timeseries
from sim.model.device import Window
from sim.model.request import Outcome
from sim.model.system import System, _State
from sim.plan import compile_plan
from sim.scenario.builtin import scenario_path
from sim.scenario.load import load_scenario_file
from sim.workload import generate_arrivals


class _TimedSampler(timeseries.Sampler):
    """The sampler, with the CPU time of its ticks added up."""

    spent = 0.0

    def _tick(self, event) -> None:
        t0 = time.process_time()
        super()._tick(event)
        self.spent += time.process_time() - t0


def run_sampled(plan, arrivals, seed: int, replication: int, interval: float) -> _TimedSampler:
    """``System.run`` with a sampler attached: the few lines system.py gains when it records time series."""
    run = plan.scenario.run
    env = simpy.Environment()
    window = Window(run.warmup, run.duration)
    state = _State(plan, arrivals, env, window, seed, replication)
    state.schedule_next_arrival()
    horizon = run.duration + run.drain
    sampler = _TimedSampler(env, state.devices, state.channels_by_link, window, interval, until=horizon).start()
    env.run(until=horizon)
    for request in state.requests:
        if request.outcome == Outcome.PENDING:
            request.outcome = Outcome.UNFINISHED
    return sampler


def measure(rounds: int, interval: float) -> list[dict]:
    scenario_file = load_scenario_file(scenario_path("video-analytics-64"), [])
    rows = []
    for variant in scenario_file.variant_names:
        scenario = scenario_file.resolve(variant)
        plan = compile_plan(scenario, base_dir=scenario_file.path.parent)
        run = scenario.run
        arrivals = generate_arrivals(scenario.workload, run.duration, run.seed, 0, plan.base_dir)
        plain, sampled, ratios, tick_share = [], [], [], []
        table, samples, build = None, 0, 0.0
        for k in range(rounds):
            order = ("plain", "sampled") if k % 2 == 0 else ("sampled", "plain")
            times = {}
            for mode in order:
                gc.collect()  # the previous run's model is garbage: collect it outside the timing
                t0 = time.process_time()
                if mode == "plain":
                    System(plan, arrivals, run.seed, 0).run()
                    times[mode] = time.process_time() - t0
                    continue
                sampler = run_sampled(plan, arrivals, run.seed, 0, interval)
                times[mode] = time.process_time() - t0
                tick_share.append(sampler.spent / times[mode])
                t0 = time.process_time()
                table = sampler.table(0)
                build = time.process_time() - t0
                samples = len(sampler.times)
                sampler = None
            plain.append(times["plain"])
            sampled.append(times["sampled"])
            ratios.append(times["sampled"] / times["plain"])
        with tempfile.TemporaryDirectory() as folder:
            t0 = time.process_time()
            path = timeseries.write_timeseries(Path(folder), variant, table)
            build += time.process_time() - t0
            size = path.stat().st_size
        rows.append({
            "variant": variant, "requests": len(arrivals), "plain": statistics.median(plain),
            "sampled": statistics.median(sampled), "ratio": statistics.median(sampled) / statistics.median(plain),
            "paired": statistics.median(ratios), "ticks": statistics.median(tick_share), "samples": samples,
            "rows": len(table), "bytes": size, "build": build,
        })
    return rows


def render(rows: list[dict], rounds: int, interval: float) -> str:
    lines = [
        "# Time-series recording overhead",
        "",
        "Issue 15's goal: recording utilisation and queue length per pool and in-flight",
        "messages per link during a run slows a default run by under 5%. Each variant of",
        "video-analytics-64 (one replication, 6 s of arrivals + 2 s drain) is simulated",
        f"with and without the sampler (interval {interval * 1e3:g} ms), alternating, {rounds} rounds,",
        "CPU time of the process. 'tick share' is the CPU time spent inside the sampler's",
        "own ticks over the sampled run's CPU time: the sampler's direct cost, unaffected by",
        "run-to-run noise. The table build and Parquet write happen once per replication",
        "after the run ('write').",
        "",
        f"Machine: {platform.machine()}, CPython {platform.python_version()}, simpy {simpy.__version__}.",
        "",
        "| variant | requests | plain CPU s | sampled CPU s | ratio of medians | median paired ratio | tick share "
        "| samples | rows | Parquet | write |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['requests']} | {r['plain']:.2f} | {r['sampled']:.2f} | {r['ratio']:.3f} | "
            f"{r['paired']:.3f} | {r['ticks']:.2%} | {r['samples']} | {r['rows']} | {r['bytes'] / 1024:.0f} KiB | "
            f"{r['build'] * 1e3:.0f} ms |")
    worst = max(max(r["paired"], r["ratio"]) for r in rows)
    direct = max(r["ticks"] for r in rows)
    lines += ["", f"Goal (under 5% slower): {'met' if worst < 1.05 else 'NOT met'} by the measured ratios "
                  f"(worst {worst:.3f}); the sampler's own ticks cost at most {direct:.1%} of a run."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=timeseries.DEFAULT_INTERVAL, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args()
    rows = measure(args.rounds, args.interval)
    text = render(rows, args.rounds, args.interval)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
