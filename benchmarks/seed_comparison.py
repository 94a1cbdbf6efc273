"""Regenerate reports/seed-comparison.md: the seed design's claims beside what dgsim predicts.

    python benchmarks/seed_comparison.py --out reports/seed-comparison.md [--capacity results/va-capacity/capacity.json]

Simulates scenarios/video-analytics-64.yaml as shipped (nothing tuned): the
capacity of each design in camera streams at its budgets (the same search as
``dgsim capacity``; or read from a capacity.json it wrote), GPU utilisation
at each design's capacity, and latency, utilisation and the prefilter's
drop rate at the seed's 64 streams; then the same at 64 streams with the
scenario's what-ifs (``--set`` overrides: no host costs, pinned staging, a
busy host, every tensor over RDMA), to say what the host costs and the
channel bands move. Costs come from the device profiles' cited prices and
the transports' cited host costs (sim/profiles.py).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import tempfile
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.experiment import run_variants  # noqa: E402
from sim.explore.capacity import DEFAULT_TOLERANCE, find_capacity, scenario_budgets  # noqa: E402
from sim.explore.pages import capacity_page  # noqa: E402
from sim.explore.capacity_report import capacity_document  # noqa: E402
from sim.explore.commands import CAPACITY_REPLICATION_CAP  # noqa: E402
from sim.explore.executors import Serial  # noqa: E402
from sim.scenario.load import load_scenario_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "video-analytics-64.yaml"
CPU, DPU = "cpu-path", "dpu-offload"
# The figures of the previous report (the model before host costs and size bands: one RDMA link between
# the DPU and the GPU, transfers costing no CPU time), commit dc5da0a of reports/seed-comparison.md.
BEFORE = {"capacity": {CPU: 75, DPU: 82}, "p50": {CPU: 8.4, DPU: 11.1}, "p99": {CPU: 12.5, DPU: 15.9},
          "gpu": {CPU: 0.39, DPU: 0.18}, "front": {CPU: 3.86, DPU: 7.09}}
NO_HOST_COSTS = [f"hardware.links.{link}.host_cost=zero-copy" for link in
                 ("net-host", "net-dpu", "pcie", "dpu-grpc", "dpu-shm", "rdma")]
WHAT_IFS = {  # name: (what it changes, overrides, variants it concerns)
    "no host costs": ("every link's host_cost: zero-copy (transfers cost no CPU time)", NO_HOST_COSTS, (CPU, DPU)),
    "pinned staging": ("the CPU path's PCIe copies from pinned memory", ["hardware.links.pcie.host_cost=pinned-staging"],
                       (CPU,)),
    "busy host": ("other work keeps 20% of the host's 8 cores busy (assumed)",
                  ["hardware.pools.cpu.background={load: 0.2, job: 1 ms}"], (CPU,)),
    "RDMA tensors": ("two bands: < 512 KB TCP, else RDMA (every tensor over GPUDirect RDMA)",
                     ["policies.channel.bands=[{below: 512 KB, use: tcp}, {use: rdma}]"], (DPU,)),
}


def pct(value) -> str:
    return "-" if value is None else f"{value:.0%}"


def ms(estimate) -> str:
    return f"{estimate.mean * 1e3:.1f} ms [{estimate.low * 1e3:.1f}, {estimate.high * 1e3:.1f}]"


def gpu_busy(estimates):
    """The GPU pool's utilisation estimate (metric named before or after the MetricKey change)."""
    return estimates.get("utilisation.pool.gpu") or estimates["utilisation.gpu"]


def front_end(scenario_file, variant: str) -> tuple[str, int, float]:
    """The pool that saturates first (analytic bound), its servers and its busy time per offered frame."""
    from sim.explore.bound import demands
    from sim.plan import compile_plan

    plan = compile_plan(scenario_file.resolve(variant))
    first = max(demands(plan), key=lambda d: d.per_request / d.limit)
    pool = plan.pools[first.resource.name]
    servers = pool.count * pool.servers
    return first.resource.name, servers, first.per_request * servers * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "seed-comparison.md")
    parser.add_argument("--capacity", type=Path, default=None, help="a capacity.json of this scenario to reuse")
    parser.add_argument("--save-capacity", type=Path, default=None, help="write the capacity search's document here")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="scenario override for every run (smoke tests only: the report is of the file as shipped)")
    args = parser.parse_args()
    scenario_file = load_scenario_file(SCENARIO, args.overrides)
    base = scenario_file.resolve(CPU)
    if args.capacity:
        document = json.loads(args.capacity.read_text())
    else:
        results = [find_capacity(scenario_file, v, Serial(), DEFAULT_TOLERANCE, CAPACITY_REPLICATION_CAP,
                                 lambda line: print(line, file=sys.stderr)) for v in (CPU, DPU)]
        document = json.loads(json.dumps(capacity_document(base.name, base.run.seed, DEFAULT_TOLERANCE, results)))
        if args.save_capacity:
            args.save_capacity.write_text(json.dumps(document))
    at64 = run_variants(scenario_file, [CPU, DPU])
    what_if = {name: run_variants(load_scenario_file(SCENARIO, [*args.overrides, *overrides]), list(variants))
               for name, (_, overrides, variants) in WHAT_IFS.items()}
    bare = load_scenario_file(SCENARIO, [*args.overrides, *NO_HOST_COSTS])
    front_bare = {v: front_end(bare, v) for v in (CPU, DPU)}
    cap = {v: document["variants"][v] for v in (CPU, DPU)}
    e = {v: at64[v].estimates for v in (CPU, DPU)}
    ratio = cap[DPU]["capacity"]["value"] / cap[CPU]["capacity"]["value"]
    front = {v: front_end(scenario_file, v) for v in (CPU, DPU)}  # (pool, servers, busy ms per frame)

    def util(v, name):
        u = cap[v]["utilisation"].get(name)
        return None if u is None else u["mean"]

    lines = [
        "# The seed design's claims against dgsim's predictions",
        "",
        "Regenerate: `python benchmarks/seed_comparison.py --out reports/seed-comparison.md` "
        "(add `--capacity results/video-analytics-64-capacity/capacity.json` to reuse a `dgsim capacity` run).",
        "",
        f"Generated {datetime.date.today().isoformat()}. Scenario: `scenarios/video-analytics-64.yaml` as shipped (seed "
        f"{base.run.seed}, {base.run.replications} replications of {base.run.duration:g} s, 95% confidence "
        "intervals). Nothing was tuned to match the claims. Capacity: `dgsim capacity` (largest stream count "
        f"meeting every `slo` budget: p99 <= 100 ms, miss rate <= 1%, GPU <= 90% busy; tolerance "
        f"{document['tolerance']:.0%}; INCONCLUSIVE probes count as not passing).",
        "",
        "| seed design's claim | dgsim predicts | agrees? |",
        "|---|---|---|",
        "| 64 camera streams at 25-30 fps | input: 64 streams, rates drawn in [25, 30] fps | (input) |",
        "| 100 ms end-to-end budget | input: p99 <= 100 ms budget and a 100 ms deadline | (input) |",
        f"| prefilter drops ~71% of frames | {pct(e[DPU]['rate.filter'].mean)} filtered at 64 streams "
        f"(input `pass_probability: 0.29`; the simulator draws it per frame) | yes, by construction |",
        f"| ~2.1x throughput with DPU offload | capacity {cap[CPU]['capacity']['value']:g} streams (cpu-path) vs "
        f"{cap[DPU]['capacity']['value']:g} (dpu-offload): **{ratio:.2f}x** | {'no' if abs(ratio - 2.1) > 0.3 else 'yes'} |",
        f"| GPU utilisation 32% -> 76% | at 64 streams: {pct(gpu_busy(e[CPU]).mean)} -> "
        f"{pct(gpu_busy(e[DPU]).mean)}; at each design's capacity: {pct(util(CPU, 'pool.gpu'))} -> "
        f"{pct(util(DPU, 'pool.gpu'))} | no |",
        f"| lower end-to-end latency with offload | at 64 streams, p50 {ms(e[CPU]['latency.p50'])} (cpu-path) vs "
        f"{ms(e[DPU]['latency.p50'])} (dpu-offload); p99 {ms(e[CPU]['latency.p99'])} vs {ms(e[DPU]['latency.p99'])} "
        f"| {'yes' if e[DPU]['latency.p99'].high < e[CPU]['latency.p99'].low else 'no'} |",
        "",
        "## Capacity of each design",
        "",
        "| design | capacity (streams) | bracket: passes / not | binding budget | bottleneck at capacity | "
        "utilisation at capacity | analytic bound | USD/h | USD/h per stream |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in (CPU, DPU):
        c = cap[v]
        busy = ", ".join(f"{k} {u['mean']:.0%}" for k, u in sorted(c["utilisation"].items()))
        binding = c["binding_budget"]
        lines.append(
            f"| {v} | {c['capacity']['value']:g} | {c['capacity']['low']:g} / {c['capacity']['high']:g} "
            f"({c['capacity']['high_verdict']}) | {binding['label'] + ' ' + binding['budget'] if binding else '-'} | "
            f"{c['bottleneck']['name'] if c['bottleneck'] else '-'} | {busy} | "
            f"{c['analytic_bound']['value']:.1f} ({c['analytic_bound']['resource']}) | "
            f"{c['cost_per_hour']:.2f} | {c['cost_per_unit']:.3f} |")
    lines += ["", "Costs (USD per hour of the pools each design uses; sources in `sim/profiles.py`):", ""]
    for v in (CPU, DPU):
        for p in cap[v]["cost_pools"]:
            lines.append(f"- {v}, pool `{p['pool']}`: {p['usd_per_hour']:.3f} USD/h; {p['basis']}")
    lines += [
        "",
        "## What moved since the previous report, and why",
        "",
        "The previous report (commit dc5da0a) simulated the same pipeline with transfers that cost no CPU "
        "time and one RDMA link between the DPU and the GPU. This one adds the host's cost of moving data "
        "(issue 12) and the seed's three channels between the DPU and the GPU, chosen by size:",
        "",
        "| figure | before: cpu-path / dpu-offload | now: cpu-path / dpu-offload |",
        "|---|---|---|",
        f"| capacity (streams) | {BEFORE['capacity'][CPU]} / {BEFORE['capacity'][DPU]} | "
        f"{cap[CPU]['capacity']['value']:g} / {cap[DPU]['capacity']['value']:g} |",
        f"| front end busy per frame | {BEFORE['front'][CPU]:.2f} / {BEFORE['front'][DPU]:.2f} ms | "
        f"{front[CPU][2]:.2f} / {front[DPU][2]:.2f} ms |",
        f"| p50 at 64 streams | {BEFORE['p50'][CPU]} / {BEFORE['p50'][DPU]} ms | "
        f"{e[CPU]['latency.p50'].mean * 1e3:.1f} / {e[DPU]['latency.p50'].mean * 1e3:.1f} ms |",
        f"| p99 at 64 streams | {BEFORE['p99'][CPU]} / {BEFORE['p99'][DPU]} ms | "
        f"{e[CPU]['latency.p99'].mean * 1e3:.1f} / {e[DPU]['latency.p99'].mean * 1e3:.1f} ms |",
        f"| GPU busy at 64 streams | {pct(BEFORE['gpu'][CPU])} / {pct(BEFORE['gpu'][DPU])} | "
        f"{pct(gpu_busy(e[CPU]).mean)} / {pct(gpu_busy(e[DPU]).mean)} |",
        "",
        f"- **Host costs.** Per frame, moving data now costs the CPU path's host cores "
        f"{front[CPU][2] - front_bare[CPU][2]:.2f} ms of the {front[CPU][2]:.2f} ms its front end is busy "
        f"(kernel TCP receive of the 33 KB frame and send of the reply, a pageable cudaMemcpy of the 2.46 MB "
        f"tensor and of the batch's results), and the DPU's Arm cores {front[DPU][2] - front_bare[DPU][2]:.2f} ms "
        f"of {front[DPU][2]:.2f} ms (kernel TCP, and a copy of each passing frame's tensor into shared memory). "
        "The CPU path pays more, as the seed argues, but these cited costs are small against decoding a 1080p "
        "frame in software (3.5 ms, assumed): they move the capacity ratio by "
        f"{(cap[DPU]['capacity']['value'] / cap[CPU]['capacity']['value']) - BEFORE['capacity'][DPU] / BEFORE['capacity'][CPU]:+.2f}, "
        "not to 2.1x. The what-ifs below separate them.",
        "- **Channel bands.** Under the default (seed) bands the 2.46 MB tensor is in the shared-memory band, "
        "so the DPU sends it by a user-space copy, not by RDMA; a batch's merged results (>= 4 MB from two "
        "frames up) go back by RDMA. docs/model.md says which of the seed's two band assignments the default "
        "follows and why; the RDMA-tensors row below is the other kind of assignment.",
        "",
        "At 64 streams, each what-if against the shipped scenario (same seed and replications; overrides "
        "as in the scenario file's last lines):",
        "",
        "| what-if | changes | design | p50 | p99 | front-end pool busy | GPU busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in (CPU, DPU):
        pool = front[v][0]
        lines.append(f"| (as shipped) | - | {v} | {ms(e[v]['latency.p50'])} | {ms(e[v]['latency.p99'])} | "
                     f"{pool} {pct(e[v][f'utilisation.pool.{pool}'].mean)} | {pct(gpu_busy(e[v]).mean)} |")
    for name, (change, _, variants) in WHAT_IFS.items():
        for v in variants:
            w = what_if[name][v].estimates
            pool = front[v][0]
            lines.append(f"| {name} | {change} | {v} | {ms(w['latency.p50'])} | {ms(w['latency.p99'])} | "
                         f"{pool} {pct(w[f'utilisation.pool.{pool}'].mean)} | {pct(gpu_busy(w).mean)} |")
    lines += [
        "",
        "Host costs used (`host_cost:` of each link; per message + per byte, at the end that pays; sources "
        "from `sim/profiles.py`):",
        "",
    ]
    from sim import profiles
    for link in base.hardware.links:
        preset = profiles.HOST_COSTS.get(link.host_cost) if link.host_cost else None
        if preset is None:
            continue
        ends = "; ".join(f"{side}: {end.source}" for side, end in (("send", preset.send), ("receive", preset.receive))
                         if end is not None) or "no CPU time"
        lines.append(f"- `{link.name}` ({link.host_cost}): {ends}")
    lines += [
        "",
        "## Where dgsim disagrees, and which assumption decides it",
        "",
        f"- **Throughput ({ratio:.2f}x, not ~2.1x).** Neither design is GPU-bound in this scenario. Each is "
        f"limited by its front end: the CPU path by pool `{front[CPU][0]}` ({front[CPU][1]} host cores, an "
        f"assumption of the scenario) busy {front[CPU][2]:.2f} ms per frame (parse, software decode/resize, "
        f"NMS: assumed costs; moving data: cited host costs); DPU offload by pool `{front[DPU][0]}` "
        f"({front[DPU][1]} BlueField-3 Arm cores) busy "
        f"{front[DPU][2]:.2f} ms per frame (the same work at an assumed 1.7-2x a host core's cost, plus the "
        f"prefilter and its own transfers). Capacity follows cores over per-frame cost: ({front[DPU][1]} / {front[DPU][2]:.2f} ms) / "
        f"({front[CPU][1]} / {front[CPU][2]:.2f} ms) = "
        f"{(front[DPU][1] / front[DPU][2]) / (front[CPU][1] / front[CPU][2]):.2f}, which the simulated capacities "
        "match within the search's tolerance. The seed's 2.1x needs a DPU front end twice as fast relative to "
        "the host's as assumed here: fewer host cores given to video, hardware decode on the DPU, or a host path "
        "that pays far more for moving data than the cited figures say (the busy-host what-if shows how quickly "
        "other work on the host's cores breaks the CPU path at 64 streams). The seed does not say which; "
        "calibrate the stage costs and the transports' CPU time (`dgsim hil calibrate`) and the pool sizes "
        "before trusting either figure.",
        "- **Capacity at saturation.** Capacities against the analytic bounds: "
        + "; ".join(f"{v} {cap[v]['capacity']['value']:g} vs {cap[v]['analytic_bound']['value']:.1f} streams, "
                    f"{cap[v]['bottleneck']['name']} {cap[v]['bottleneck']['utilisation']['mean']:.0%} busy, binding "
                    f"budget {cap[v]['binding_budget']['label']}" for v in (CPU, DPU))
        + f". Where a capacity sits at its bound, the front end is ~100% busy there and a {base.run.duration:g} s "
        "run is too short for its slowly growing queue to break the budgets: a finite run overstates what a "
        "saturated design sustains. Longer runs (`--set run.duration=...`) move such capacities down; the ratio "
        "between designs follows the bounds.",
        f"- **GPU utilisation.** The CPU path's GPU, {pct(gpu_busy(e[CPU]).mean)} busy at 64 streams, "
        "is close to the seed's 32%. But in dgsim the prefilter removes ~71% of the frames before the GPU, so at the same "
        "load the offload design's GPU is *less* busy, not more; at each design's capacity the GPU stays far "
        "from saturation (YOLOv8s at ~0.28 ms per frame in batches of up to 16 on an A100, derived from "
        "ultralytics' batch-1 figure). The seed's 32% -> 76% implies the GPU carried ~2.4x more work after "
        "offload, which cannot follow from 2.1x more frames of which 29% reach it; it would need the GPU to "
        "do work per frame that dgsim's scenario does not give it (decode on NVDEC, say) or a different "
        "prefilter pass rate. dgsim's GPU figures follow the detector cost and batching assumptions.",
        "- **Latency.** At 64 streams both designs are far below the budget; offload's per-frame path is "
        "longer (slower Arm cores for decode, an extra prefilter stage, a copy into shared memory) while the "
        "CPU path pays kernel TCP and pageable PCIe copies on cores that are also decoding. Which is lower is "
        "decided by the assumed Arm/x86 decode ratio (1.7x) and by how busy the host's cores are: see the "
        "what-ifs.",
        "",
        "Assumptions named above are marked `assumed` in the scenario file; every device figure, host cost "
        "and price cites its public source in `sim/profiles.py`.",
    ]
    lines += ["", "## Pictures: every probe of both searches", ""]
    for name, caption in (("latency-vs-load", "p50 and p99 latency at each probed load, 95% CI bands, the budget"),
                          ("utilisation-vs-load", "utilisation of every pool and link at each probed load")):
        figure = f"{args.out.stem}-{name}.png"
        lines.append(f"![{caption}]({figure})")
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        capacity_page(Path(scratch), document, {b.metric: b.bound for b in scenario_budgets(base)
                                               if b.metric.startswith("latency.")})
        for name in ("latency-vs-load", "utilisation-vs-load"):
            shutil.copyfile(Path(scratch) / "plots" / f"{name}.png", args.out.parent / f"{args.out.stem}-{name}.png")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
