"""City scale: cost per simulated second against the number of cameras (scenarios/city-10k.yaml).

The city's servers are sized at 62.5 streams each; this runs the scenario with N streams
over N / 62.5 servers (``--set`` on the stream count and the node count), one replication
in one process, records streamed, and reports per N: CPU seconds per simulated second,
requests per CPU second, peak RSS, and the ratio of cost per simulated second to the
smallest N's (linear cost in width: that ratio follows N / N_smallest).

    python benchmarks/city_scale.py --streams 1000 4000 10000 --duration 1 [2] [--records none]

With two durations per N (``--duration 1 2``) it also reports the marginal cost of one more
simulated second (the difference of the two runs, free of the fixed cost of a run: imports,
building the devices, writing results) and extrapolates a run of ``--extrapolate`` simulated
seconds (default 60) from it. The extrapolation reads low: at 10,000 cameras, 1 s and 2 s runs
gave 7 CPU-min for 60 s where the run itself took 11.7-12.7 (reports/sim-speed.md, session 12;
likely because short runs have not reached a long run's request population and heap, not
isolated). Time the long run to know it.
Prints a markdown table with the commit and the load
(``uptime``); figures are in reports/streamed-records.md ("city scale").
"""

from __future__ import annotations

import argparse

from memory_scale import context, measure

PER_SERVER = 62.5  # streams per server, as scenarios/city-10k.yaml (10,000 / 160)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--duration", type=float, nargs="+", default=[2.0],
                        help="simulated seconds per run; two values: also the marginal cost of a second")
    parser.add_argument("--extrapolate", type=float, default=60.0, help="simulated seconds to extrapolate to")
    parser.add_argument("--records", default="all")
    parser.add_argument("--set", dest="settings", action="append", default=[])
    args = parser.parse_args()
    durations = sorted(args.duration)
    if len(durations) > 2 or len(set(durations)) != len(durations):
        parser.error("--duration takes one value, or two different ones")
    print(f"before: {context()}")
    print("\n| streams | servers | simulated s | requests in window | CPU s | CPU s per simulated s | "
          "requests per CPU s | peak RSS MiB | cost ratio / width ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    first = None
    marginal = []
    for streams in args.streams:
        servers = max(1, round(streams / PER_SERVER))
        settings = [f"workload.sources.cameras.streams={streams}", f"topology.sites.city.nodes.srv.count={servers}",
                    *args.settings]
        runs = []
        for duration in durations:
            m = measure("scenarios/city-10k.yaml", "node-local", duration, settings, args.records)
            runs.append(m)
            per_second = m.cpu_s / duration
            if duration == durations[0]:
                first = first or (streams, per_second)
            ratio = f"{(per_second / first[1]) / (streams / first[0]):.2f}" if duration == durations[0] else ""
            print(f"| {streams:,} | {servers} | {duration:g} | {m.arrived:,.0f} | {m.cpu_s:.1f} | "
                  f"{per_second:.1f} | {m.arrived / m.cpu_s:,.0f} | {m.peak_rss_mib:,.0f} | {ratio} |", flush=True)
        if len(runs) == 2:
            marginal.append((streams, runs, (runs[1].cpu_s - runs[0].cpu_s) / (durations[1] - durations[0])))
    if marginal:
        print(f"\n| streams | CPU s per further simulated s | CPU minutes for {args.extrapolate:g} simulated s |")
        print("|---|---|---|")
        for streams, runs, per_second in marginal:
            if per_second <= 0:  # the longer run cost no more: the difference is within the noise
                print(f"| {streams:,} | below the noise ({per_second:.1f}) | - |")
                continue
            total = runs[0].cpu_s + (args.extrapolate - durations[0]) * per_second
            print(f"| {streams:,} | {per_second:.1f} | {total / 60:.0f} |")
        print("\n(extrapolated from short runs, which read low: time the long run to know it)")
    print(f"\nafter: {context()}")


if __name__ == "__main__":
    main()
