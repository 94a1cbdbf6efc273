"""City scale: cost per simulated second against the number of cameras (scenarios/city-10k.yaml).

The city's servers are sized at 62.5 streams each; this runs the scenario with N streams
over N / 62.5 servers (``--set`` on the stream count and the node count), one replication
in one process, records streamed, and reports per N: CPU seconds per simulated second,
requests per CPU second, peak RSS, and the ratio of cost per simulated second to the
smallest N's (linear cost in width: that ratio follows N / N_smallest).

    python benchmarks/city_scale.py --streams 1000 4000 10000 --duration 2 [--records none]

Prints a markdown table with the commit and the load (``uptime``); figures are in
reports/streamed-records.md ("city scale").
"""

from __future__ import annotations

import argparse

from memory_scale import context, measure

PER_SERVER = 62.5  # streams per server, as scenarios/city-10k.yaml (10,000 / 160)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 4000, 10000])
    parser.add_argument("--duration", type=float, default=2.0, help="simulated seconds per run")
    parser.add_argument("--records", default="all")
    parser.add_argument("--set", dest="settings", action="append", default=[])
    args = parser.parse_args()
    print(f"before: {context()}")
    print("\n| streams | servers | simulated s | requests in window | CPU s | CPU s per simulated s | "
          "requests per CPU s | peak RSS MiB | cost ratio / width ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    first = None
    for streams in args.streams:
        servers = max(1, round(streams / PER_SERVER))
        settings = [f"workload.sources.cameras.streams={streams}", f"topology.sites.city.nodes.srv.count={servers}",
                    *args.settings]
        m = measure("scenarios/city-10k.yaml", "node-local", args.duration, settings, args.records)
        per_second = m.cpu_s / args.duration
        first = first or (streams, per_second)
        ratio = (per_second / first[1]) / (streams / first[0])
        print(f"| {streams:,} | {servers} | {args.duration:g} | {m.arrived:,.0f} | {m.cpu_s:.1f} | "
              f"{per_second:.1f} | {m.arrived / m.cpu_s:,.0f} | {m.peak_rss_mib:,.0f} | {ratio:.2f} |", flush=True)
    print(f"\nafter: {context()}")


if __name__ == "__main__":
    main()
