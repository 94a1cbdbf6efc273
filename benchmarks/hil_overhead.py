"""Harness overhead: the pipeline's offline throughput against its bottleneck model alone.

Goal (issue 3): in offline mode, ``dgsim hil run`` moves at least 90% of the
raw onnxruntime throughput of the pipeline's bottleneck model on the same
cores. The pipeline is video-analytics-64's ``cpu-path`` variant (every
frame reaches the detector: parse, preprocess on the front's core; the
detector, batched by the scenario's dynamic batcher, on the GPU side's
core; postprocess back on the front), with a detector big enough to be the
bottleneck (320x320, width 0.5 by default).

- raw: the same detector file, the same backend (``open_backend``), the
  same core, threads and batch size (the batcher's ``max_batch``), run back
  to back on real preprocessed frames in a process pinned like the GPU
  side; images per second over ``--raw-seconds``.
- pipeline: one offline run of ``--seconds`` through the runner; its
  ``throughput`` metric (requests answered per second of the measurement
  window, warm-up excluded), its mean batch and the sides' utilisation.

The two alternate in one invocation (raw, pipeline, raw, pipeline, ...,
raw), and each pipeline round is compared with the mean of the raw
measurements on either side of it, so drift in a shared machine's load
hits both. Report: every round and the median ratio.

    python benchmarks/hil_overhead.py [--rounds 3] [--seconds 10] [--out reports/hil-overhead.md]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def raw_throughput(model: str, cores: tuple[int, ...], backend: str, batch: int, frames: dict, size: tuple,
                   seconds: float) -> float:
    """Images per second of the model alone, in a fresh process pinned to ``cores``."""
    context = mp.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_raw, (model, cores, backend, batch, frames, size, seconds))


def _raw(model, cores, backend, batch, frames, size, seconds) -> float:
    from hil.backends import BackendOptions, open_backend
    from hil.models import to_model_input
    from hil.runner.ops import FrameBank

    bank = FrameBank(**frames)
    x = to_model_input(np.stack([bank.frame(i) for i in range(batch)]), *size)
    options = BackendOptions(threads=len(cores), cores=cores, max_batch=batch)
    with open_backend(backend, model, options) as engine:
        engine.run(x)
        done, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            engine.run(x)
            done += batch
        return done / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="pipeline run length (after 1 s warm-up)")
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument("--detector-size", type=int, default=320)
    parser.add_argument("--widths", default="0.5,1.0", help="detector width multiples to measure, comma-separated")
    parser.add_argument("--transport", default="shm")
    parser.add_argument("--out", type=Path, help="write the report here (markdown)")
    args = parser.parse_args()
    sections = [measure_width(args, float(w)) for w in args.widths.split(",")]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(header(args) + "".join(sections))
        print(f"wrote {args.out}")


def measure_width(args, width: float) -> str:
    """Alternate raw and pipeline measurements for one detector width; the report's section."""
    from hil.runner.layout import GPU, build_models, lay_out
    from hil.runner.load import prepare
    from hil.runner.ops import bank_settings
    from hil.runner.run import Settings, run_replication
    from sim.metrics.summary import summarise
    from sim.plan import compile_plan
    from sim.scenario.load import load_scenario_file

    path = REPO / "scenarios" / "video-analytics-64.yaml"
    overrides = [f"hil.detector.input_size={args.detector_size}", f"hil.detector.width={width}",
                 f"hil.cache={REPO / '.dgsim-cache'}", f"run.duration={args.seconds + 1} s", "run.warmup=1 s",
                 "run.drain=60 s", "run.replications=1"]
    scenario, _ = prepare(load_scenario_file(path, overrides).resolve("cpu-path"), "offline", None, 1.0, 1, path.parent)
    layout = build_models(lay_out(compile_plan(scenario, str(path), path.parent), "cpu-path", str(path)))
    detect = next(s for s in layout.stages if s.op == "detect")
    batch = detect.batching.max_batch
    settings = Settings("offline", (args.transport,), "auto", 1, 60.0)
    raw_args = (str(detect.model), layout.cores[GPU], "auto", batch, bank_settings(layout), layout.tensor_size,
                args.raw_seconds)
    print(f"detector {args.detector_size}x{args.detector_size} width {width:g}, batch {batch}, cores {layout.cores}")
    raws, rounds = [raw_throughput(*raw_args)], []
    print(f"  raw #0: {raws[-1]:.2f} images/s")
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="dgsim-overhead-") as folder:
            run = run_replication(layout, r, settings, Path(folder))
        metrics = summarise(run.frame, run.usage, scenario.run.warmup, run.end)
        raws.append(raw_throughput(*raw_args))
        reference = (raws[-2] + raws[-1]) / 2
        rounds.append((metrics["throughput"], reference, metrics["throughput"] / reference,
                       metrics.get("stage.infer.batch", 1.0), metrics["utilisation.pool.cpu"], metrics["utilisation.pool.gpu"]))
        p, ref, q, b, front, gpu = rounds[-1]
        print(f"  round {r + 1}: pipeline {p:.2f}/s vs raw {ref:.2f}/s -> {q:.3f} (batch {b:.1f}, front {front:.0%}, "
              f"gpu side {gpu:.0%}); raw #{r + 1}: {raws[-1]:.2f}/s")
    ratio = statistics.median(r[2] for r in rounds)
    extra = statistics.median(1e3 / r[0] - 1e3 / r[1] for r in rounds)
    verdict = "meets" if ratio >= 0.9 else "misses"
    print(f"  median ratio {ratio:.3f} ({verdict} the 0.9 goal); {extra:.1f} ms more per image than the model alone")
    rows = "\n".join(f"| {i + 1} | {p:.2f} | {ref:.2f} | {q:.3f} | {b:.1f} | {front:.0%} | {gpu:.0%} |"
                     for i, (p, ref, q, b, front, gpu) in enumerate(rounds))
    return f"""
## Detector {layout.tensor_size[0]}x{layout.tensor_size[1]}, width {width:g}: median ratio {ratio:.3f} ({verdict} the goal)

Model alone: {statistics.mean(raws):.2f} images/s ({1e3 / statistics.mean(raws):.1f} ms per image at batch {batch});
the pipeline spends a median {extra:.1f} ms more per image.

| round | pipeline /s | raw /s | ratio | mean batch | front util | GPU-side util |
|---|---|---|---|---|---|---|
{rows}

Raw measurements in order: {', '.join(f'{r:.2f}' for r in raws)} images/s.
"""


def header(args) -> str:
    return f"""# Harness overhead: offline pipeline vs its bottleneck model alone

Generated by `python benchmarks/hil_overhead.py --rounds {args.rounds} --seconds {args.seconds:g} --widths {args.widths}
--out {args.out}` on a {os.cpu_count()}-CPU {platform.machine()} machine ({platform.processor() or 'unknown CPU'}),
Python {platform.python_version()}, shared with other jobs; no GPU, so the GPU side's detector runs in onnxruntime
on a host core (core 1), the front on core 0.

Goal (issue 3): in offline mode the pipeline's throughput is at least 90% of the raw onnxruntime throughput of its
bottleneck model on the same cores.

Setup: `video-analytics-64`, variant `cpu-path` (every frame reaches the detector), `--mode offline`, transport
{args.transport}, 240x320 frames; parse and preprocess (resize to the detector's input) on the front, the detector
batched by the scenario's dynamic batcher (up to 16) on the GPU side, postprocess back on the front. Raw: the same
ONNX file through the same backend (`open_backend`), pinned to the GPU side's core, batch 16 of real preprocessed
frames, back to back for {args.raw_seconds:g} s, before and after each pipeline round (the reference is their mean).
Pipeline: {args.seconds:g} s of offline load after a 1 s warm-up; throughput = requests answered per second of the
measurement window. Rounds alternate, so the machine's drifting load hits both.

Where the extra time per image goes (from one width-0.5 run's event file, and one check made while writing this
script, not repeated by it): batches run ~10% slower than in the raw loop, because the front's work on the other
core and the ring copies share the memory system and the L3 cache with the detector (a preprocessing loop at ~40%
duty on core 0 alone cut the raw detector on core 1 from 28.9 to 20.9 images/s on this VM); and ~17 ms pass
between batches (copying 1.2 MB tensors out of and 2.1 MB detector outputs into the shared-memory rings, event
logging). That cost is per image, so its share falls as the model gets heavier.
"""


if __name__ == "__main__":
    main()
