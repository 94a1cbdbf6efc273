"""The request sink's row buffers side by side: Python lists (``_Rows``) against the compiled buffer.

A run's ended requests wait in the sink's buffer until a row group of the request table is full,
then the group is read as arrays (the summary's columns and the Parquet row group). This takes the
requests of a real run (``--scenario``, default video-analytics-64's dpu-offload, ``--duration``
simulated seconds, kept in memory), and in both buffers, alternating over ``--repeat`` rounds,
appends every request and reads every field back as the sink does; reported: nanoseconds per
request (median of the rounds) and the ratio compiled / Python. Both buffers' arrays are compared
bit for bit: the run exits 1 if they differ.

    python benchmarks/row_buffer.py [--scenario video-analytics-64] [--variant dpu-offload]
                                    [--duration 5] [--repeat 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import numpy as np

from sim.metrics.sink import COMPILED, row_buffer
from sim.model.system import System
from sim.scenario.builtin import scenario_path
from sim.scenario.errors import ScenarioError
from sim.scenario.load import load_scenario_file
from sim.workload import generate_arrivals

TIMES, CODES = ("enqueued", "start", "end"), ("instance", "batch", "batch_size", "link")
SCALARS = {"id": np.int64, "source": np.int64, "klass": np.int64, "priority": np.int32, "arrival": float,
           "deadline": float, "size": float, "done": float, "outcome": np.int8, "reply_link": np.int64}


def _requests(scenario: str, variant: str, duration: float) -> tuple[list, int]:
    plan = load_scenario_file(scenario_path(scenario), [f"run.duration={duration} s"]).plan(variant)
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir)
    output = System(plan, arrivals, run.seed, 0).run()
    return output.requests, len(plan.stages)


def _time(compiled: bool, requests: list, width: int) -> tuple[float, list[bytes]]:
    start = time.perf_counter()
    group = row_buffer(compiled)(width, len(requests))
    add = group.add
    for request in requests:
        add(request)
    arrays = [group.each(name, dtype) for name, dtype in SCALARS.items()]
    arrays += [group.matrix(name) for name in TIMES] + [group.matrix(name, np.int64) for name in CODES]
    seconds = (time.perf_counter() - start) / len(requests)
    return seconds, [a.tobytes() for a in arrays]


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="video-analytics-64")
    parser.add_argument("--variant", default="dpu-offload")
    parser.add_argument("--duration", type=_positive, default=5.0, help="simulated seconds of requests")
    parser.add_argument("--repeat", type=lambda text: int(_positive(text)), default=5)
    args = parser.parse_args(argv)
    if not COMPILED:
        print("the compiled row buffer was not built in this installation (sim/metrics/_rows.pyx): nothing to "
              "compare", file=sys.stderr)
        return 2
    try:
        requests, width = _requests(args.scenario, args.variant, args.duration)
    except ScenarioError as error:
        print(error, file=sys.stderr)
        return 2
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for compiled in (False, True):
            seconds, arrays = _time(compiled, requests, width)
            times[compiled].append(seconds)
            if not compiled:
                reference = arrays
            elif arrays != reference:
                print("the buffers gave different arrays", file=sys.stderr)
                return 1
    slow, fast = statistics.median(times[False]), statistics.median(times[True])
    print(f"Machine: {platform.machine()}, CPython {platform.python_version()}; {args.scenario} "
          f"({args.variant}), {len(requests):,} requests of {width} stages; median of {args.repeat} alternating "
          f"rounds.\n")
    print("| Python ns per request | compiled ns per request | compiled / Python |")
    print("|---|---|---|")
    print(f"| {slow * 1e9:.0f} | {fast * 1e9:.0f} | {fast / slow:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
