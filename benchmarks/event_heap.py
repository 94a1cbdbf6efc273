"""The engine's event heaps side by side: ``heapq`` on a list against the compiled heap.

A run's heap holds about as many entries as it has jobs in service and messages in flight: ~150
for video-analytics-64, thousands for the city. At each size the heap is filled with timer
entries (``(time, NORMAL, id, function, args)``, as the engine's), then the same ``--operations``
entries are pushed and the first popped, one of each in turn (a steady state: the size stays put),
in both heaps, alternating heaps over ``--repeat`` rounds; reported: nanoseconds per push+pop
(median of the rounds) and the ratio compiled / heapq. Both heaps' popped ids are compared: the
run exits 1 if they differ.

    python benchmarks/event_heap.py [--sizes 150 5000 50000] [--operations 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import itertools
import platform
import random
import statistics
import sys
import time

from sim.model.heap import COMPILED, new_heap


def _entries(size: int, operations: int, seed: int) -> tuple[list[tuple], list[tuple]]:
    rng, ids = random.Random(seed), itertools.count()
    first = [(rng.random(), 1, next(ids), print, ()) for _ in range(size)]
    # later entries come later in time, as a run's timers do (the clock only moves on)
    later = [(1.0 + k / operations + rng.random() * 0.01, 1, next(ids), print, ()) for k in range(operations)]
    return first, later


def _time(compiled: bool, first: list[tuple], later: list[tuple]) -> tuple[float, list[int]]:
    heap = new_heap(compiled)
    for entry in first:
        heap.push(entry)
    push, pop, popped = heap.push, heap.pop, []
    keep = popped.append
    start = time.perf_counter()
    for entry in later:
        push(entry)
        keep(pop()[2])
    return (time.perf_counter() - start) / len(later), popped


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_positive, nargs="+", default=[150, 5000, 50000])
    parser.add_argument("--operations", type=_positive, default=200_000)
    parser.add_argument("--repeat", type=_positive, default=5)
    args = parser.parse_args(argv)
    if not COMPILED:
        print("the compiled heap was not built in this installation (sim/model/_heap.pyx): nothing to compare",
              file=sys.stderr)
        return 2
    print(f"Machine: {platform.machine()}, CPython {platform.python_version()}; median of {args.repeat} "
          f"alternating rounds, {args.operations:,} push+pop per round.\n")
    print("| entries in the heap | heapq ns per push+pop | compiled ns per push+pop | compiled / heapq |")
    print("|---|---|---|---|")
    for size in args.sizes:
        first, later = _entries(size, args.operations, seed=size)
        times: dict[bool, list[float]] = {True: [], False: []}
        reference: list[int] = []  # heapq's popped ids, this round
        for _ in range(args.repeat):
            for compiled in (False, True):
                seconds, popped = _time(compiled, first, later)
                times[compiled].append(seconds)
                if compiled:
                    if popped != reference:
                        print(f"the heaps popped different entries at {size} entries", file=sys.stderr)
                        return 1
                else:
                    reference = popped
        slow, fast = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {size:,} | {slow * 1e9:.0f} | {fast * 1e9:.0f} | {fast / slow:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
