"""Wall and CPU time of ``dgsim capacity`` on video-analytics-64, one core (issue 10's goal: < 60 s for both variants).

    python benchmarks/capacity_speed.py --out reports/explore-speed.md [--save results/va-capacity]

Runs the capacity search of each variant in this process (no worker
processes: one core), exactly as ``dgsim capacity -j 1`` does, and records
per variant the wall time, this process's CPU time (user + system: what one
core spent, which is what the goal is about on a shared machine), the probes
and the replications simulated. ``--save`` also writes capacity.json there
(benchmarks/seed_comparison.py can read it instead of searching again).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.explore.capacity import DEFAULT_TOLERANCE, find_capacity  # noqa: E402
from sim.explore.capacity_report import capacity_document, write_capacity  # noqa: E402
from sim.explore.commands import CAPACITY_REPLICATION_CAP  # noqa: E402
from sim.explore.executors import Serial  # noqa: E402
from sim.scenario.load import load_scenario_file  # noqa: E402
from provenance import commit  # noqa: E402  (benchmarks/, beside this script)

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "video-analytics-64.yaml"


def replace_section(path: Path, name: str, lines: list[str]) -> None:
    """Write ``lines`` between this benchmark's markers in ``path``, keeping the other sections."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    text = path.read_text() if path.exists() else "# Exploration speed\n"
    block = "\n".join([begin, *lines, end])
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/explore-speed.md"))
    parser.add_argument("--save", type=Path, default=None)
    args = parser.parse_args()
    scenario_file = load_scenario_file(SCENARIO)
    rows, results = [], []
    load_before = os.getloadavg()
    for variant in scenario_file.variant_names:
        wall, cpu = time.perf_counter(), time.process_time()
        result = find_capacity(scenario_file, variant, Serial(), DEFAULT_TOLERANCE, CAPACITY_REPLICATION_CAP,
                               lambda line: print(line, file=sys.stderr))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        results.append(result)
        reps = sum(p.replications for p in result.search.probes)
        probes = ", ".join(f"{p.value:g} {p.verdict.value} x{p.replications}" for p in result.search.probes)
        rows.append((variant, result.value, len(result.search.probes), reps, wall, cpu, probes))
    if args.save:
        first = scenario_file.resolve(scenario_file.variant_names[0])
        write_capacity(args.save, capacity_document(first.name, first.run.seed, DEFAULT_TOLERANCE, results))
    total_wall, total_cpu = sum(r[4] for r in rows), sum(r[5] for r in rows)
    load_after = os.getloadavg()
    lines = [
        "## `dgsim capacity` on video-analytics-64, one core",
        "",
        f"Command: `python benchmarks/capacity_speed.py --out {args.out}`. Each variant's search runs in one",
        "process (as `dgsim capacity -j 1`): tolerance 2%, at most "
        f"{CAPACITY_REPLICATION_CAP} replications per probe, 6 s of arrivals per replication. dgsim at commit "
        f"{commit()}; load average (1, 5, 15 min) before {', '.join(f'{x:.1f}' for x in load_before)}, after "
        f"{', '.join(f'{x:.1f}' for x in load_after)}.",
        "",
        "| variant | capacity (streams) | probes: load, verdict x replications | replications simulated | wall s | "
        "CPU s (one core) |",
        "|---|---|---|---|---|---|",
        *[f"| {v} | {c:g} | {p} | {r} | {w:.1f} | {u:.1f} |" for v, c, _, r, w, u, p in rows],
        f"| **both** | | | {sum(r[3] for r in rows)} | **{total_wall:.1f}** | **{total_cpu:.1f}** |",
        "",
        f"Goal: both variants under 60 s on one core: **{'met' if total_cpu < 60 else 'not met'}** on CPU time "
        f"({total_cpu:.0f} s). Machine: {platform.machine()}, Python {platform.python_version()}, shared with other "
        "work (wall time includes waiting for the CPU; CPU time is what one core spent).",
    ]
    replace_section(args.out, "capacity_speed", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
