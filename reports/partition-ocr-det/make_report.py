"""Regenerate reports/partition-ocr-det.md: partition, search, and measure the best and worst cuts for real.

    python reports/partition-ocr-det/make_report.py [--work /tmp/ocr-report] [--duration '40 s']

1. ``dgsim partition`` the PP-OCRv4 text detector (rapidocr-onnxruntime's wheel) at 1x3x256x256, writing
   every candidate cut's segments under WORK/parts (kept out of the repository: ~5 MB per pair) and
   ``--search`` the scenario next to this script with segment costs measured on this host.
2. ``dgsim hil run`` the best and the worst cut of the ranking at the scenario's load.
3. Write the report: per-cut FLOPs, bytes, the FLOPs estimate and the measured time of each segment,
   the ranking, and each measured run beside the simulator's prediction of it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REPORT = REPO / "reports" / "partition-ocr-det.md"
SHAPE = "x:1x3x256x256"


def model_path() -> Path:
    return Path(importlib.util.find_spec("rapidocr_onnxruntime").origin).parent / "models" / "ch_PP-OCRv4_det_infer.onnx"


def dgsim(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "sim.cli", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"dgsim {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def measured_run(folder: Path, cut: str) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    frame = pd.read_parquet(folder / "requests" / f"{cut}.parquet")
    served = frame[frame["outcome"].isin(["completed", "deadline_missed"])]
    lat = served["latency"]
    service = {s: float((served[f"infer-{s}__end"] - served[f"infer-{s}__start"]).mean())
               for s in ("head", "tail")}
    return {"n": int(len(served)), "p50": float(lat.quantile(0.5)), "p99": float(lat.quantile(0.99)),
            "mean": float(lat.mean()), "service": service, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/ocr-report"))
    parser.add_argument("--duration", default="40 s")
    args = parser.parse_args()
    parts = args.work / "parts"
    if not (parts / "split-ranking.json").exists():
        dgsim("partition", str(model_path()), "--input", SHAPE, "--out", str(parts), "--scenario",
              str(HERE / "scenario.yaml"), "--stage", "infer", "--search", "--capacity")
    cuts = json.loads((parts / "cuts.json").read_text())
    ranking = json.loads((parts / "split-ranking.json").read_text())
    shutil.copy(parts / "cuts.json", HERE / "cuts.json")
    shutil.copy(parts / "split-ranking.json", HERE / "split-ranking.json")
    ranked = ranking["cuts"]
    picks = {"best": ranked[0]["cut"], "worst": ranked[-1]["cut"]}
    runs = {}
    for label, cut in picks.items():
        out = args.work / f"run-{cut}"
        if not (out / "summary.json").exists():
            dgsim("hil", "run", str(parts / "split.yaml"), "--variant", cut, "--duration", args.duration,
                  "--min-requests", "200", "--transport", "tcp", "--out", str(out))
        runs[label] = measured_run(out, cut)
    write(cuts, ranking, picks, runs, args)


def write(cuts: dict, ranking: dict, picks: dict, runs: dict, args) -> None:
    from hil.partition.estimate import EFFECTIVE_FLOPS, estimate_seconds

    by_cut = {c["cut"]: c for c in ranking["cuts"]}
    ms = lambda s: f"{s * 1e3:.1f}"  # noqa: E731
    lines = [
        "# Partitioning a public text detector between DPU and GPU (PP-OCRv4 det)", "",
        f"Model: `ch_PP-OCRv4_det_infer.onnx` from the `rapidocr-onnxruntime` wheel (sha256 `{cuts['sha256'][:16]}...`), "
        f"input `{SHAPE}`, {cuts['work_nodes']} work nodes, {cuts['total_flops'] / 1e9:.2f} GFLOP counted "
        f"({cuts['flops_counted']}). Scenario: [scenario.yaml](partition-ocr-det/scenario.yaml) (Poisson 4/s, one "
        "server per side, a localhost TCP hop). Regenerate with `python reports/partition-ocr-det/make_report.py`.", "",
        f"Host: {platform.node()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} when written "
        "(the machine is shared with other jobs: every time here is this busy host's, and noisy). Both sides of "
        "the harness are host cores: the 'DPU' and 'GPU' times below are this host's, not a BlueField's or a GPU's.", "",
        "## Candidate cuts", "",
        "Every cut composes: head then tail reproduce the model's output on generated inputs within "
        f"{cuts['tolerance']}. *Estimate* = counted FLOPs / {EFFECTIVE_FLOPS['cpu'] / 1e9:.0f} GFLOP/s, the effective "
        "host-CPU rate of `hil/partition/estimate.py` (derived from a published YOLOv8s CPU time; an estimate). "
        "*Measured* = the segment in onnxruntime on one pinned core under `hil calibrate`'s stability rule "
        "(quick settings).", "",
        "| cut | after node | crossing | bytes/item | head GFLOP | tail GFLOP | head est. ms | head meas. ms | "
        "tail est. ms | tail meas. ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cuts["cuts"]:
        r = by_cut.get(c["name"], {})
        crossing = ", ".join(f"{'x'.join(map(str, t['shape']))}" for t in c["crossing"])
        lines.append(
            f"| {c['name']} | `{c['after_node']}` | {crossing} | {c['bytes_per_item'] / 1e3:.0f} KB | "
            f"{c['head_flops'] / 1e9:.3f} | {c['tail_flops'] / 1e9:.3f} | "
            f"{ms(estimate_seconds(c['head_flops'], 'cpu'))} | {ms(r['head_s']) if r else '-'} | "
            f"{ms(estimate_seconds(c['tail_flops'], 'cpu'))} | {ms(r['tail_s']) if r else '-'} |")
    lines += [
        "", "## Ranked cuts (simulated at the scenario's load, segment costs measured here)", "",
        f"Ranked by {', then '.join(ranking['ranked_by'])}. Simulation: {ranking['split_scenario']}, run section of "
        "the scenario (2 replications of 150 s).", "",
        "| rank | cut | head ms | tail ms | crossing | sim. p50 ms | sim. p99 ms | bound /s | bottleneck | capacity /s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for i, r in enumerate(ranking["cuts"], 1):
        cap = f"{r['capacity']:.2f}" if r.get("capacity") is not None else "-"
        lines.append(f"| {i} | {r['cut']} | {ms(r['head_s'])} | {ms(r['tail_s'])} | {r['crossing_bytes'] / 1e3:.0f} KB | "
                     f"{ms(r['p50_s'])} | {ms(r['p99_s'])} | {r['bound_per_s']:.1f} | {r['bottleneck']} | {cap} |")
    lines += [
        "", "## The best and the worst cut, run for real", "",
        f"`dgsim hil run split.yaml --variant CUT --duration '{args.duration}' --min-requests 200 --transport tcp`: "
        "the head on the front process (core 0), the crossing tensor packed into one message over TCP, the tail "
        "on the GPU-side process (core 1, onnxruntime on host cores standing in for the GPU).", "",
        "| | cut | requests served | meas. p50 ms | sim. p50 ms | meas. p99 ms | sim. p99 ms | meas. mean ms | "
        "sim. mean ms | head service ms (meas. in run / costed) | tail service ms (meas. in run / costed) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, cut in picks.items():
        m, r = runs[label], by_cut[cut]
        lines.append(f"| {label} | {cut} | {m['n']} | {ms(m['p50'])} | {ms(r['p50_s'])} | {ms(m['p99'])} | "
                     f"{ms(r['p99_s'])} | {ms(m['mean'])} | {ms(r['mean_s'])} | {ms(m['service']['head'])} / "
                     f"{ms(r['head_s'])} | {ms(m['service']['tail'])} / {ms(r['tail_s'])} |")
    lines += ["", "## Reading it", "", (HERE / "reading.md").read_text().rstrip() if (HERE / "reading.md").exists()
              else "(write reports/partition-ocr-det/reading.md after looking at the figures)"]
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
