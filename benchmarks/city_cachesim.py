"""The city's cost per request in instructions and simulated cache misses, against its width (callgrind).

CPU time on this shared VM moves by 15-30% from hour to hour; callgrind's counts do not move at
all, and with its cache simulation they also say how much of the run leaves the caches. For each
N streams (over N / 62.5 servers, as benchmarks/city_scale.py) this runs scenarios/city-10k.yaml
twice under ``valgrind --tool=callgrind --cache-sim=yes``, for a short and a longer simulated
duration (the longer one adds about ``--requests`` frames, whatever N is), both at once, and
reports the difference per added request: instructions (Ir), first-level data-cache misses (D1:
reads + writes) and last-level data misses (LL: reads + writes) of a simulated last level of
``--ll-kib`` (default 1,024 KiB, the L2 of one core here, so that an "LL miss" is an access that
left the core's own caches and went to the shared L3 or memory).

Instructions per request that stay flat as N grows mean the model's work is linear in width;
misses per request that grow with N are why a wider city still costs more CPU time per request.

    python benchmarks/city_cachesim.py --streams 1000 10000 [--requests 27500] [--ll-kib 1024]

Needs valgrind (exit 2 without it). Each width takes a few minutes per 10,000 requests: valgrind
runs Python about 50 times slower. Prints a markdown table with the commit and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from city_scale import PER_SERVER
from memory_scale import REPO, context

FRAMES_PER_STREAM_S = 27.5  # the scenario's mean frame rate (25-30 fps), to size the longer run
BASE_S = 0.25  # the short run's simulated seconds (after a 0.2 s warm-up; 0.2 s drain)
EVENTS = ("Ir", "D1mr", "D1mw", "DLmr", "DLmw")


@dataclass(frozen=True)
class Counted:
    events: dict[str, int]  # callgrind's totals, by event name
    arrived: float  # requests that arrived in the measurement window


def _start(streams: int, servers: int, duration: float, ll_bytes: int,
           folder: Path) -> tuple[subprocess.Popen, Path, Path]:
    """valgrind running one city run; its callgrind file and results folder."""
    counts, out = folder / f"callgrind-{streams}-{duration:g}.out", folder / f"out-{streams}-{duration:g}"
    command = [shutil.which("valgrind"), "--tool=callgrind", "--cache-sim=yes", "--D1=49152,12,64",
               f"--LL={ll_bytes},16,64", f"--callgrind-out-file={counts}",
               sys.executable, "-m", "sim.cli", "run", "scenarios/city-10k.yaml",
               "--variant", "node-local", "--duration", f"{duration:.6g} s",
               "--set", f"workload.sources.cameras.streams={streams}",
               "--set", f"topology.sites.city.nodes.srv.count={servers}",
               "--set", "run.replications=1", "--set", "run.warmup=0.2s", "--set", "run.drain=0.2s",
               "--jobs", "1", "--records", "all", "--max-work", "1e12", "--out", str(out)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(REPO)))
    return process, counts, out


def _finish(process: subprocess.Popen, counts: Path, out: Path) -> Counted:
    _, errors = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the run under valgrind failed ({process.returncode}): {errors[-2000:]}")
    events = header = None
    for line in counts.read_text().splitlines():
        if line.startswith("events:"):
            header = line.split()[1:]
        elif line.startswith("totals:") or line.startswith("summary:"):
            events = dict(zip(header, map(int, line.split()[1:])))
    metrics = json.loads((out / "summary.json").read_text())["variants"]["node-local"]["metrics"]
    return Counted(events, metrics["requests.arrived"]["mean"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--requests", type=float, default=27500.0, help="frames the longer run adds, about")
    parser.add_argument("--ll-kib", type=int, default=1024, help="the simulated last-level cache, KiB")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("city_cachesim: valgrind is not installed (Debian: apt install valgrind)", file=sys.stderr)
        sys.exit(2)
    if any(n <= 0 for n in args.streams) or args.requests <= 0:
        print("city_cachesim: --streams and --requests take positive numbers", file=sys.stderr)
        sys.exit(2)
    sets = args.ll_kib * 1024 // (16 * 64)  # valgrind's cache: 16 ways of 64-byte lines, a power of two of sets
    if args.ll_kib < 64 or sets & (sets - 1):  # (below 64 KiB it would be smaller than the D1 cache)
        print(f"city_cachesim: --ll-kib {args.ll_kib}: expected a power of two, at least 64 (KiB)", file=sys.stderr)
        sys.exit(2)
    print(f"before: {context()}")
    print(f"\nper request added (the longer run minus the shorter); LL: a simulated {args.ll_kib:,} KiB last level\n")
    print("| streams | servers | requests added | instructions | D1 misses | LL misses | LL misses / 1k instructions |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for streams in args.streams:
            servers = max(1, round(streams / PER_SERVER))
            longer = BASE_S + args.requests / (streams * FRAMES_PER_STREAM_S)
            started = [_start(streams, servers, duration, args.ll_kib * 1024, Path(folder))
                       for duration in (BASE_S, longer)]
            short, long_ = (_finish(*run) for run in started)
            added = long_.arrived - short.arrived
            per = {name: (long_.events.get(name, 0) - short.events.get(name, 0)) / added for name in EVENTS}
            d1, ll = per["D1mr"] + per["D1mw"], per["DLmr"] + per["DLmw"]
            print(f"| {streams:,} | {servers} | {added:,.0f} | {per['Ir']:,.0f} | "
                  f"{d1:,.0f} | {ll:,.0f} | {1000 * ll / per['Ir']:.2f} |", flush=True)
    print(f"\nafter: {context()}")


if __name__ == "__main__":
    main()
