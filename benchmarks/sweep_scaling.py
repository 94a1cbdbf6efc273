"""A 64-point sweep on a Dask LocalCluster with 1 and 2 workers, and Dask against local processes.

    python benchmarks/sweep_scaling.py --out reports/explore-speed.md

The sweep: video-analytics-64's cpu-path variant at 64 stream counts
(8, 9, ..., 71), each cell 2 replications of 0.6 s of arrivals (0.1 s
warm-up): small cells, so that the per-cell overhead of each executor
shows. Three executors run the same cells, one after another, each with
an empty cache: 2 local worker processes, and a Dask LocalCluster (worker
processes, one thread each) with 1 and with 2 workers. Reported: wall time of the sweep (cluster start-up excluded and
shown apart), the CPU time every process of the executor spent (this
process and its worker processes, read with psutil just before they are
closed), the 2-worker/1-worker speed-up on Dask, Dask's time over local
processes at the same worker count, and whether every executor wrote the
same sweep.parquet bytes; with the commit measured and the load average
before and after. Run on the shared 2-core machine, so the 2-worker
figures compete with whatever else runs: compare ratios from the same run
only, and CPU seconds for the work done.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.explore.executors import DaskCluster, Processes  # noqa: E402
from sim.explore.grid import parse_grid  # noqa: E402
from sim.explore.sweep import plan_cells, run_cells, sweep_table, write_table  # noqa: E402
from provenance import commit  # noqa: E402  (benchmarks/, beside this script)

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "video-analytics-64.yaml"
OVERRIDES = ["run.duration=0.6 s", "run.warmup=0.1 s", "run.drain=0.3 s", "run.replications=2"]


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


def cpu_seconds(before: dict[int, float]) -> tuple[float, dict[int, float]]:
    """CPU seconds (user + system) of this process and every live descendant, and per-process figures."""
    import psutil  # comes with dask.distributed

    now = {}
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            t = process.cpu_times()
            now[process.pid] = t.user + t.system
        except psutil.Error:
            pass
    return sum(v - before.get(pid, 0.0) for pid, v in now.items()), now


def timed(make, cells, axes, folder: Path) -> tuple[float, float, float, str]:
    """Start-up wall s, sweep wall s, CPU s of the sweep in every process, and the table's digest."""
    started = time.perf_counter()
    executor = make()
    ready = time.perf_counter()
    _, before = cpu_seconds({})
    try:
        results = run_cells(cells, executor, folder / "points")
        done = time.perf_counter()
        cpu, _ = cpu_seconds(before)
    finally:
        executor.close()
    assert not any(r.error for r in results), [r.error for r in results if r.error][:1]
    write_table(sweep_table(cells, results, axes), folder / "sweep.parquet")
    return ready - started, done - ready, cpu, hashlib.sha256((folder / "sweep.parquet").read_bytes()).hexdigest()


def started_processes() -> Processes:
    """2 local worker processes, started (as a LocalCluster's are when it returns)."""
    executor = Processes(2)
    executor.run(abs, [0, 0])
    return executor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/explore-speed.md"))
    parser.add_argument("--points", type=int, default=64)
    args = parser.parse_args()
    axes = parse_grid([f"workload.sources.cameras.streams={','.join(str(8 + i) for i in range(args.points))}"])
    cells = plan_cells(SCENARIO, OVERRIDES, ["cpu-path"], axes, False)
    executors = {
        "local processes, 2": started_processes,
        "Dask LocalCluster, 1 worker": lambda: DaskCluster("local", workers=1),
        "Dask LocalCluster, 2 workers": lambda: DaskCluster("local", workers=2),
    }
    measured = {}
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="dgsim-sweep-bench-"))
    try:
        for i, (name, make) in enumerate(executors.items()):
            measured[name] = timed(make, cells, axes, scratch / str(i))
            print(f"{name}: start {measured[name][0]:.1f} s, sweep {measured[name][1]:.1f} s, "
                  f"{measured[name][2]:.1f} CPU s", file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    load_after = os.getloadavg()
    same = len({digest for *_, digest in measured.values()}) == 1
    dask1, dask2 = measured["Dask LocalCluster, 1 worker"][1], measured["Dask LocalCluster, 2 workers"][1]
    local2 = measured["local processes, 2"][1]
    cpu1, cpu2 = measured["Dask LocalCluster, 1 worker"][2], measured["Dask LocalCluster, 2 workers"][2]
    cpu_local = measured["local processes, 2"][2]
    lines = [
        f"## A {args.points}-point sweep: Dask LocalCluster with 1 and 2 workers, and local processes",
        "",
        f"Command: `python benchmarks/sweep_scaling.py --out {args.out}`. video-analytics-64, cpu-path, "
        f"streams = 8..{7 + args.points}, each cell 2 replications of 0.6 s of arrivals; every executor starts "
        f"with an empty cache. dgsim at commit {commit()}; load average (1, 5, 15 min) before "
        f"{', '.join(f'{x:.1f}' for x in load_before)}, after {', '.join(f'{x:.1f}' for x in load_after)}. "
        "Wall seconds on the shared 2-core machine; CPU seconds of the sweep in every process of the executor "
        "(this one, its worker processes; psutil).",
        "",
        "| executor | start-up s (wall) | sweep s (wall) | sweep CPU s (all processes) |",
        "|---|---|---|---|",
        *[f"| {name} | {start:.1f} | {run:.1f} | {cpu:.1f} |" for name, (start, run, cpu, _) in measured.items()],
        "",
        f"- Dask scaling, 2 workers over 1: **{dask1 / dask2:.2f}x** faster in wall time (2 cores at most, shared); "
        f"CPU spent: {cpu2 / cpu1:.2f}x that of 1 worker.",
        f"- Dask overhead against local processes, 2 workers each: Dask takes **{dask2 / local2:.2f}x** the wall time "
        f"({dask2 - local2:+.1f} s over {args.points} cells, {(dask2 - local2) / args.points * 1e3:+.0f} ms per cell) "
        f"and {cpu2 / cpu_local:.2f}x the CPU ({(cpu2 - cpu_local) / args.points * 1e3:+.0f} ms per cell).",
        f"- Same sweep.parquet bytes from all three executors: **{'yes' if same else 'NO'}**.",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} cores shared with "
        "other work; absolute times move between runs, ratios from one run are the figures to read.",
    ]
    replace_section(args.out, "sweep_scaling", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
