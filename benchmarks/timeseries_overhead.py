"""Cost of recording time series: a default run with and without the sampler.

Simulates each variant of ``video-analytics-64`` (one replication, the
scenario's own 6 s of arrivals and 2 s drain) twice per round: once as
``System.run`` does it, once with ``sim.model.timeseries`` attached at the
given interval (default ``DEFAULT_INTERVAL``). The two models advance side
by side in one process, a chunk of simulated time each in turn
(alternating who goes first), and the CPU time (``time.process_time``)
of each turn is added to its model: load from other jobs on this shared
machine then falls on both alike instead of on whichever ran in a busy
second. The two models must end identical (the sampler only reads).

Reported per variant: median CPU seconds of each, the ratio of medians and
the median of the per-round ratios (goal: under 1.05), the time spent
inside the sampler's own ticks as a share of the run (a direct, less noisy
measure of its cost), the samples taken, and the size of the Parquet file
it leaves.

    python benchmarks/timeseries_overhead.py [--rounds 5] [--interval 0.01] [--chunk 0.05] [--out reports/timeseries-overhead.md]
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
from sim.model.engine import Engine
from sim.model.request import Outcome
from sim.model.system import _State
from sim.plan import compile_plan
from sim.scenario.builtin import scenario_path
from sim.scenario.load import load_scenario_file
from sim.workload import generate_arrivals


class _TimedSampler(timeseries.Sampler):
    """The sampler, with the CPU time of its ticks added up."""

    spent = 0.0

    def _tick(self) -> None:
        t0 = time.process_time()
        super()._tick()
        self.spent += time.process_time() - t0


def prepared(plan, arrivals, seed: int, replication: int, interval: float | None):
    """The model of ``System.run`` before it runs, with a sampler attached when ``interval`` is given
    (the lines system.py gains when it records time series)."""
    run = plan.scenario.run
    env = Engine()
    window = Window(run.warmup, run.duration)
    state = _State(plan, arrivals, env, window, seed, replication)
    state.schedule_next_arrival()
    horizon = run.duration + run.drain
    sampler = None
    if interval is not None:
        sampler = _TimedSampler(env, state.devices, state.channels_by_link, window, interval, until=horizon).start()
    return env, state, sampler, horizon


def run_sampled(plan, arrivals, seed: int, replication: int, interval: float) -> _TimedSampler:
    """``System.run`` with a sampler attached; returns the sampler."""
    env, state, sampler, horizon = prepared(plan, arrivals, seed, replication, interval)
    env.run(until=horizon)
    for request in state.requests:
        if request.outcome == Outcome.PENDING:
            request.outcome = Outcome.UNFINISHED
    return sampler


def lockstep(plan, arrivals, seed: int, intervals: tuple, chunk: float) -> tuple[list[float], list]:
    """Two models (sampled at ``intervals[k]``, None: not sampled) advanced side by side, ``chunk`` seconds
    of simulated time at a time, alternating which goes first: the CPU seconds of each, and their samplers."""
    models = [prepared(plan, arrivals, seed, 0, interval) for interval in intervals]
    horizon = models[0][3]
    spent = [0.0, 0.0]
    steps = max(1, round(horizon / chunk))
    for k in range(1, steps + 1):
        until = horizon * k / steps
        for j in ((0, 1) if k % 2 else (1, 0)):
            t0 = time.process_time()
            models[j][0].run(until=until)
            spent[j] += time.process_time() - t0
    first, second = models[0][1], models[1][1]  # the sampler only reads: both models end identical
    assert [r.done for r in first.requests] == [r.done for r in second.requests]
    return spent, [m[2] for m in models]


def measure(rounds: int, interval: float, chunk: float) -> list[dict]:
    scenario_file = load_scenario_file(scenario_path("video-analytics-64"), [])
    rows = []
    for variant in scenario_file.variant_names:
        scenario = scenario_file.resolve(variant)
        plan = compile_plan(scenario, base_dir=scenario_file.path.parent)
        run = scenario.run
        arrivals = generate_arrivals(scenario.workload, run.duration, run.seed, 0, plan.base_dir)
        plain, sampled, ratios, tick_share, control = [], [], [], [], []
        for k in range(rounds):
            order = (None, interval) if k % 2 == 0 else (interval, None)  # who is prepared first alternates too
            gc.collect()  # the previous round's models are garbage: collect them outside the timing
            spent, samplers = lockstep(plan, arrivals, run.seed, order, chunk)
            s = 1 if order[0] is None else 0
            a, b, sampler = spent[1 - s], spent[s], samplers[s]
            plain.append(a)
            sampled.append(b)
            ratios.append(b / a)
            tick_share.append(sampler.spent / b)
            gc.collect()
            spent, _ = lockstep(plan, arrivals, run.seed, (None, None), chunk)
            control.append(spent[1] / spent[0])
        t0 = time.process_time()
        table = sampler.table(0)
        with tempfile.TemporaryDirectory() as folder:
            path = timeseries.write_timeseries(Path(folder), variant, table)
            build = time.process_time() - t0
            size = path.stat().st_size
        rows.append({
            "variant": variant, "requests": len(arrivals), "plain": statistics.median(plain),
            "sampled": statistics.median(sampled), "ratio": statistics.median(sampled) / statistics.median(plain),
            "paired": statistics.median(ratios), "ticks": statistics.median(tick_share),
            "samples": len(sampler.times), "rows": len(table), "bytes": size, "build": build,
            "control": statistics.median(control),
            "build_share": build / statistics.median(sampled),
        })
    return rows


def render(rows: list[dict], rounds: int, interval: float, chunk: float) -> str:
    lines = [
        "# Time-series recording overhead",
        "",
        "Issue 15's goal: recording utilisation and queue length per pool and in-flight",
        "messages per link during a run slows a default run by under 5%. Each variant of",
        "video-analytics-64 (one replication, 6 s of arrivals + 2 s drain) is simulated",
        f"with and without the sampler (interval {interval * 1e3:g} ms), {rounds} rounds. In each",
        f"round both models run side by side in one process, {chunk * 1e3:g} ms of simulated time at a",
        "time, alternating which goes first, so that both see the same machine (this one is",
        "shared and loaded); CPU time of the process is summed per model. 'tick share' is the",
        "CPU time inside the sampler's own ticks over the sampled run's: its direct cost,",
        "free of run-to-run noise. 'write' is building the table and writing its Parquet",
        "file once after the run, and its share of the run. 'A/A control' runs two plain models",
        "the same way: how far apart two identical models measure here (the noise floor).",
        "",
        f"Machine: {platform.machine()}, CPython {platform.python_version()}, simpy {simpy.__version__}.",
        "",
        "| variant | requests | plain CPU s | sampled CPU s | ratio of medians | median paired ratio "
        "| A/A control ratio | tick share | samples | rows | Parquet | write |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['requests']} | {r['plain']:.2f} | {r['sampled']:.2f} | {r['ratio']:.3f} | "
            f"{r['paired']:.3f} | {r['control']:.3f} | {r['ticks']:.2%} | {r['samples']} | {r['rows']} | {r['bytes'] / 1024:.0f} KiB | "
            f"{r['build'] * 1e3:.0f} ms ({r['build_share']:.1%}) |")
    worst = max(max(r["paired"], r["ratio"]) for r in rows)
    noise = max(abs(r["control"] - 1) for r in rows)
    direct = max(r["ticks"] + r["build_share"] for r in rows)
    lines += ["", f"Direct cost (ticks + write): at most {direct:.1%} of a run: goal (under 5%) "
                  f"{'met' if direct < 0.05 else 'NOT met'}. Side-by-side ratios: worst {worst:.3f}, with two "
                  f"identical models measuring up to {noise:.1%} apart here (A/A control)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--interval", type=float, default=timeseries.DEFAULT_INTERVAL, help="seconds between samples")
    parser.add_argument("--chunk", type=float, default=0.05, help="simulated seconds per lockstep turn")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = parser.parse_args()
    rows = measure(args.rounds, args.interval, args.chunk)
    text = render(rows, args.rounds, args.interval, args.chunk)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
