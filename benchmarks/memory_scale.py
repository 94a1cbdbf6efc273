"""Peak memory and CPU time of long runs: does memory stay flat as the simulated duration grows?

Runs ``dgsim run`` (one variant, one replication, one process, records streamed) once per
simulated duration under ``/usr/bin/time`` and reports, per run: peak RSS of the process,
CPU time (user + system), the requests that arrived in the measurement window and the
bytes per request that peak memory grew by against the previous (shorter) run. With streamed
records memory should grow only by the compact columns the summary keeps (9 + stages + 16 x stages started
bytes per request, ``sim.metrics.sink``), the arrivals (time and source, 10 bytes per request)
and the draws made up front per request (8 bytes per prefilter stage), all held until the run
ends. ``--extrapolate T`` adds the peak expected at T simulated seconds from the slope of the
last two runs (peak per simulated second).

    python benchmarks/memory_scale.py --durations 60 300 900 [--scenario video-analytics-64]
        [--variant dpu-offload] [--set field=value ...] [--records all] [--extrapolate 3600]

Prints a markdown table with the commit and the machine load (``uptime``) before and after;
figures are in reports/streamed-records.md. ``measure`` is shared with benchmarks/city_scale.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Measured:
    cpu_s: float  # user + system of the run's process
    peak_rss_mib: float
    arrived: float  # requests that arrived in the measurement window (all variants' first)
    wall_s: float


def measure(scenario: str, variant: str, duration: float, settings: list[str], records: str = "all",
            nice: bool = True) -> Measured:
    """One ``dgsim run`` in a child process, timed by /usr/bin/time (peak RSS, CPU)."""
    with tempfile.TemporaryDirectory() as folder:
        stats = Path(folder) / "time.txt"
        out = Path(folder) / "out"
        command = ["/usr/bin/time", "-o", str(stats), "-f", "%M %U %S %e",
                   *(["nice"] if nice else []), sys.executable, "-m", "sim.cli", "run", scenario,
                   "--variant", variant, "--duration", f"{duration} s", "--set", "run.replications=1",
                   "--jobs", "1", "--records", records, "--max-work", "1e12", "--out", str(out)]
        for item in settings:
            command += ["--set", item]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"dgsim run failed ({done.returncode}): {done.stderr[-2000:]}")
        rss_kb, user, system, wall = stats.read_text().split()[-4:]
        summary = json.loads((out / "summary.json").read_text())
        metrics = summary["variants"][variant]["metrics"]
        return Measured(float(user) + float(system), float(rss_kb) / 1024,
                        metrics["requests.arrived"]["mean"], float(wall))


def context() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return f"commit {commit}, {os.cpu_count()} CPUs; {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[60, 300, 900])
    parser.add_argument("--scenario", default="video-analytics-64")
    parser.add_argument("--variant", default="dpu-offload")
    parser.add_argument("--set", dest="settings", action="append", default=[])
    parser.add_argument("--records", default="all")
    parser.add_argument("--extrapolate", type=float, default=None,
                        help="also print the peak RSS extrapolated to this many simulated seconds")
    args = parser.parse_args()
    print(f"before: {context()}")
    print("\n| simulated s | requests in window | peak RSS MiB | CPU s | CPU s per simulated s | "
          "peak growth vs previous, bytes/request |")
    print("|---|---|---|---|---|---|")
    runs: list[tuple[float, Measured]] = []
    for duration in args.durations:
        m = measure(args.scenario, args.variant, duration, args.settings, args.records)
        growth = ""
        if runs and m.arrived > runs[-1][1].arrived:
            growth = f"{(m.peak_rss_mib - runs[-1][1].peak_rss_mib) * 2**20 / (m.arrived - runs[-1][1].arrived):.0f}"
        runs.append((duration, m))
        print(f"| {duration:g} | {m.arrived:,.0f} | {m.peak_rss_mib:,.0f} | {m.cpu_s:.1f} | "
              f"{m.cpu_s / duration:.2f} | {growth} |", flush=True)
    if args.extrapolate and len(runs) >= 2:
        (d1, m1), (d2, m2) = runs[-2:]
        slope = (m2.peak_rss_mib - m1.peak_rss_mib) / (d2 - d1)
        print(f"\nextrapolated peak RSS at {args.extrapolate:g} simulated s: "
              f"{m2.peak_rss_mib + slope * (args.extrapolate - d2):,.0f} MiB "
              f"({slope:.3f} MiB per simulated s, from the last two runs)")
    print(f"\nafter: {context()}")


if __name__ == "__main__":
    main()
