"""The cost of writing the per-request table: pyarrow's default Parquet settings vs dgsim's.

Runs ``dgsim run`` once (one variant, one replication, records streamed) to get a real request
table, then writes that table again and again, alternating pyarrow's defaults (a dictionary tried
for every column) with ``sim.metrics.records.parquet_options`` (dictionaries for the categorical
columns only), in row groups of 65,536 rows as the run writes them. Reports per setting the
median CPU microseconds per row over the rounds, the file size, and the ratio of the two measured
side by side; checks that both files read back to the same table.

    python benchmarks/records_write.py [--duration 120] [--rounds 5] [--scenario video-analytics-64]
        [--variant dpu-offload]

Prints a markdown table with the commit and the load; figures are in reports/sim-speed.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from memory_scale import REPO, context

ROWS_PER_GROUP = 65_536  # sim.metrics.sink.DEFAULT_ROWS_PER_GROUP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="simulated seconds of the run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", default="video-analytics-64")
    parser.add_argument("--variant", default="dpu-offload")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from sim.metrics.records import parquet_options

    print(f"before: {context()}")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        subprocess.run([sys.executable, "-m", "sim.cli", "run", args.scenario, "--variant", args.variant,
                        "--duration", f"{args.duration} s", "--set", "run.replications=1", "--jobs", "1",
                        "--out", str(out)], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), check=True,
                       capture_output=True)
        table = pq.read_table(out / "requests" / f"{args.variant}.parquet")
        settings = {"pyarrow defaults": {}, "dgsim (parquet_options)": parquet_options(table.schema)}
        times: dict[str, list[float]] = {name: [] for name in settings}
        sizes: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, options in settings.items():
                path = Path(folder) / f"{len(sizes)}.parquet"
                start = time.process_time()
                pq.write_table(table, path, row_group_size=ROWS_PER_GROUP, **options)
                times[name].append(time.process_time() - start)
                sizes.setdefault(name, path.stat().st_size)
                if not pq.read_table(path).equals(table):
                    raise SystemExit(f"{name}: the file does not read back to the same table")
                path.unlink()
    rows = table.num_rows
    print(f"\n{rows:,} rows x {table.num_columns} columns ({args.scenario}, {args.variant}, {args.duration:g} s); "
          f"median of {args.rounds} alternating rounds\n")
    print("| settings | CPU us per row | file MiB |")
    print("|---|---|---|")
    for name in settings:
        print(f"| {name} | {statistics.median(times[name]) / rows * 1e6:.2f} | {sizes[name] / 2**20:.1f} |")
    default, ours = times["pyarrow defaults"], times["dgsim (parquet_options)"]
    ratios = [b / a for a, b in zip(default, ours)]
    print(f"\ndgsim / defaults, per round: {', '.join(f'{r:.2f}' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f})")
    print(f"\nafter: {context()}")


if __name__ == "__main__":
    main()
