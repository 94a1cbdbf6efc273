"""Cost in width: CPU per simulated request as the devices grow (issue 11, item 3).

One design scaled out: ``k`` DPUs each take the frames of their own share of
cameras (a client link per DPU) and send each frame on to one of ``2k`` GPUs
(join-shortest-queue over all of them) over a network link, and the answer
comes back to a DPU, which answers. The load per device is the same at every width, so
a simulator whose cost is linear in width spends the same CPU per simulated
request at 3, 48 and 480 devices. Reported per width: requests, CPU seconds
of the simulation (``time.process_time``), microseconds per request, and the
link channels the run opened, with the DPU-GPU link ``per-pair`` (the
default: a channel for every pair traffic joins, which JSQ over all GPUs
makes k x 2k) and ``per-port`` (a channel per sending instance).

    python benchmarks/width.py [--widths 1 16 160] [--duration 0.5] [--append reports/sim-speed.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

RATE_PER_DPU = 400.0  # requests per second per DPU: each device about half busy

SCENARIO = """\
name: width-{k}
description: {k} DPUs, {gpus} GPUs, join-shortest-queue over every GPU (benchmarks/width.py)
hardware:
  pools:
    dpu: {{profile: bluefield-3, cores: 2, count: {k}}}
    gpu: {{profile: a100, streams: 1, count: {gpus}}}
  links:
    - {{name: net, between: [client, dpu], profile: tcp-100g, sharing: per-port}}
    - {{name: fabric, between: [dpu, gpu], profile: roce-200g, sharing: {sharing}}}
workload:
  sources:
    - {{name: cameras, kind: poisson, rate: {rate}/s, payload: 33 KB}}
pipeline:
  stages:
    - {{name: decode, costs: {{dpu: {{kind: exponential, mean: 2.5 ms}}}}, output: 600 KB}}
    - {{name: infer, costs: {{gpu: {{kind: exponential, mean: 2 ms}}}}, output: 2 KB}}
    - {{name: answer, costs: {{dpu: {{kind: exponential, mean: 0.2 ms}}}}}}
policies:
  routing: {{kind: shortest-queue}}
run: {{duration: {duration} s, warmup: 0.1 s, drain: 1 s, seed: 1, replications: 1}}
"""


def scenario_text(k: int, sharing: str, duration: float) -> str:
    return SCENARIO.format(k=k, gpus=2 * k, rate=RATE_PER_DPU * k, sharing=sharing, duration=duration)


def run_width(k: int, sharing: str, duration: float) -> dict[str, float]:
    from sim.model.system import System
    from sim.plan import compile_plan
    from sim.scenario.load import load_scenario_file
    from sim.workload import generate_arrivals

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"width-{k}.yaml"
        path.write_text(scenario_text(k, sharing, duration))
        plan = compile_plan(load_scenario_file(path).resolve("base"), str(path), path.parent)
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, 0, plan.base_dir)
    start = time.process_time()
    output = System(plan, arrivals, run.seed, 0).run()
    cpu = time.process_time() - start
    return {"devices": 3 * k, "requests": len(arrivals), "cpu": cpu,
            "us_per_request": cpu / len(arrivals) * 1e6,
            "channels": sum(len(channels) for channels in output.channels.values())}


def main() -> int:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine_speed import provenance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 16, 160], help="DPUs (devices = 3 x this)")
    parser.add_argument("--duration", type=float, default=0.5, help="simulated seconds of arrivals")
    parser.add_argument("--append", type=Path, help="append the section to this markdown report")
    args = parser.parse_args()
    import sim.model.system  # noqa: F401  (imports are not the simulation's time)

    lines = ["| devices | DPU-GPU sharing | requests | CPU s | us per request | channels |", "|---|---|---|---|---|---|"]
    for k in args.widths:
        for sharing in ("per-pair", "per-port"):
            r = run_width(k, sharing, args.duration)
            lines.append(f"| {r['devices']} | {sharing} | {r['requests']:,} | {r['cpu']:.2f} | "
                         f"{r['us_per_request']:.0f} | {r['channels']:,} |")
    text = (f"## Cost in width (issue 11, item 3)\n\n{provenance()}.\n\n" + "\n".join(lines)
            + f"\n\nRerun: `python benchmarks/width.py --widths {' '.join(map(str, args.widths))} "
              f"--duration {args.duration:g}`\n")
    print(text)
    if args.append:
        with args.append.open("a") as report:
            report.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
