"""The validation report: a markdown file, two plots and the table as JSON.

``write_report`` writes ``<report>.md`` (the table, the goal met or missed
per metric and load, how it was produced, what the twin models, where the
remaining error comes from) and, beside it, ``<stem>-cdf.png`` (measured
and predicted latency distributions, one panel per load) and
``<stem>-error.png`` (error against load, per metric, with the goal's
bands). ``rows_document`` is the same table as data (``validation.json`` in
the results folder).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hil.validate.compare import (
    GOAL_MAX_LOAD,
    GOALS,
    LATENCY,
    P50,
    P99,
    THROUGHPUT,
    Row,
    breakdown,
    relative_error,
    served_counts,
    window,
)
from hil.validate.conditions import LOW_LOAD
from hil.validate.sweep import TWINS, Sweep
from sim.contract.metric_keys import ALL, Kind, MetricKey, Unit
from sim.metrics.records import column

TWIN_TITLES = {"calibration": "calibration only", "load": "+ in-run service (probes)",
               "twin": "+ loop turns, pickup, real sizes (the prediction)",
               "in-run": "diagnostic: this run's mean services"}


def scale(metric: MetricKey) -> tuple[float, str]:
    """Factor and unit the report shows ``metric`` in: ms for seconds, /s for rates, fractions as they are."""
    unit = metric.unit
    if unit is Unit.SECONDS or unit is Unit.PER_SECOND:
        return unit.scale, unit.symbol
    return 1.0, ""


def fmt(value: float, metric: MetricKey) -> str:
    k, _ = scale(metric)
    return "n/a" if value is None or math.isnan(value) else f"{value * k:.4g}"


def measured_text(row: Row) -> str:
    e = row.measured
    half = "" if math.isnan(e.low) else f" ± {fmt(e.half_width, row.metric)}"
    return fmt(e.mean, row.metric) + half


def verdict(row: Row) -> str:
    if row.met is None:
        return ""
    return ("met" if row.met else "**missed**") + f" (±{row.goal:.0%})"


def _num(value):
    """JSON numbers: NaN (no data) as null, recursively."""
    if isinstance(value, dict):
        return {k: _num(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_num(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def rows_document(sweep: Sweep, rows: list[Row]) -> dict:
    return _num({
        "variant": sweep.variant, "capacity": sweep.capacity, "capacity_predicted": sweep.capacity_predicted,
        "low_load": LOW_LOAD,
        "conditions": {f"{p.load:g}": {"capacity_now": p.capacity, "k_low": p.conditions.low,
                                       "k_load1": p.conditions.high, "turn_s": p.conditions.turn,
                                       "pickup_s": p.conditions.pickup, "message_bytes": p.conditions.sizes}
                       for p in sweep.points},
        "pass_fraction": sweep.pass_fraction,
        "rows": [{"load": r.load, "metric": r.metric.name, "predicted": r.predicted.mean,
                  "predicted_ci95": [r.predicted.low, r.predicted.high], "measured": r.measured.mean,
                  "measured_ci95": [r.measured.low, r.measured.high], "error": r.error, "goal": r.goal, "met": r.met}
                 for r in rows],
    })


def write_report(sweep: Sweep, rows: list[Row], ablation: dict[str, list[Row]], path: Path,
                 context: dict) -> list[Path]:
    """Write the markdown report and its plots; return the files written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cdf = path.with_name(f"{path.stem}-cdf.png")
    err = path.with_name(f"{path.stem}-error.png")
    plot_cdfs(sweep, cdf)
    plot_errors(rows, err)
    path.write_text(markdown(sweep, rows, ablation, context, cdf.name, err.name))
    return [path, cdf, err]


def markdown(sweep: Sweep, rows: list[Row], ablation: dict[str, list[Row]], c: dict, cdf: str, err: str) -> str:
    s = sweep.layout.settings
    run = sweep.layout.scenario.run
    goal_rows = [r for r in rows if r.met is not None]
    out = [f"# Validation on `{c['host']}`: the simulator's harness twin against `dgsim hil run`", ""]
    out += [f"Written by `{c['command']}` on {c['date']} ({c['elapsed']:.0f} s). Scenario "
            f"`{c['scenario']}`, variant `{sweep.variant}`; calibration `{c['calibration']}`.", ""]
    out += ["## Result", "",
            f"Goal (issue 4): at loads up to {GOAL_MAX_LOAD:g} of the measured capacity, |error| <= 5% on p50 latency, "
            "<= 10% on p99 and <= 3% on throughput. Error = (predicted - measured) / measured.", ""]
    for metric, tol in GOALS.items():
        mine = [r for r in goal_rows if r.metric == metric]
        met = sum(bool(r.met) for r in mine)
        out.append(f"- `{metric}` within ±{tol:.0%}: **{met} of {len(mine)}** loads "
                   f"({', '.join(f'{r.load:g}: {r.error:+.1%}' for r in mine)})")
    out += ["", f"Measured capacity {sweep.capacity:.1f} requests/s (median of three offline probes); predicted: "
            + ", ".join(f"{TWIN_TITLES[n]} {v:.1f} ({(v - sweep.capacity) / sweep.capacity:+.1%})"
                        for n, v in sweep.capacity_predicted.items()) + ".", ""]
    out += ["| load | metric | predicted (95% CI) | measured ± 95% CI | error | goal |", "|---|---|---|---|---|---|"]
    for r in rows:
        _, unit = scale(r.metric)
        low, high = fmt(r.predicted.low, r.metric), fmt(r.predicted.high, r.metric)
        ci = "" if math.isnan(r.predicted.low) else f" [{low}, {high}]"
        out.append(f"| {r.load:g} | {r.metric}{f' ({unit})' if unit else ''} | {fmt(r.predicted.mean, r.metric)}{ci} | "
                   f"{measured_text(r)} | {r.error:+.1%} | {verdict(r)} |")
    out += ["", "Each replication is paired (the same arrivals measured and simulated); error per replication:", "",
            "| load | p50 error per replication | p99 error per replication | measured p50 per replication (ms) |",
            "|---|---|---|---|"]
    for p in sweep.points:
        pairs = list(zip(p.measured.runs, p.simulated["twin"].runs))
        per = {m: ", ".join(f"{relative_error(s_.get(m.name, math.nan), r.get(m.name, math.nan)):+.1%}"
                            for r, s_ in pairs)
               for m in (P50, P99)}
        measured_p50 = ", ".join(f"{r.get(P50.name, math.nan) * 1e3:.1f}" for r, _ in pairs)
        out.append(f"| {p.load:g} | {per[P50]} | {per[P99]} | {measured_p50} |")
    out += ["", f"![latency CDF: measured vs predicted, per load]({cdf})", "", f"![error against load]({err})", ""]

    out += ["## How it was produced", ""]
    out += ["```console", f"$ {c['calibrate_command']}", f"$ {c['command']}", "```", ""]
    out += [f"- Host `{c['host']}`: {c['cpu']}, {c['cores']} cores, no GPU; {c['versions']}. 1-minute load average "
            f"{c['load_before']:.2f} before and {c['load_after']:.2f} after (other sessions share this machine).",
            f"- Calibration: {c['calibration_note']}",
            f"- Sizes (the scenario's `hil` section): frames {s.frames.height}x{s.frames.width} "
            f"({s.frames.count} distinct), prefilter input {s.prefilter.input_size}x{s.prefilter.input_size}, "
            f"detector {sweep.layout.tensor_size[0]}x{sweep.layout.tensor_size[1]} width {s.detector.width:g}; "
            f"front on cores {list(sweep.layout.cores['front'])}, "
            f"GPU side on cores {list(sweep.layout.cores['gpu'])} (host cores standing in for a DPU and a GPU; "
            f"onnxruntime on CPU); transport {', '.join(c['kinds'])}.",
            f"- Capacity: the median of three `dgsim hil run --mode offline` runs of {c['probe']:g} s after a "
            f"{run.warmup:g} s warm-up. "
            f"Low-load probe: `--mode server` at {LOW_LOAD:g} x capacity for {2 * c['probe']:g} s, seed {run.seed} "
            "+ 7919. Each load L: "
            "`--mode server` at "
            f"L x capacity, Poisson arrivals drawn by `sim.workload` from seed {run.seed}, replications "
            f"0..{c['replications'] - 1}, {run.warmup:g} s warm-up; the twin: the same scenario, seed and "
            "replications, so the very arrival sequences measured (checked equal, request by request). Predicted "
            "CIs are over those replications too.",
            f"- The prefilter's real pass fraction over the frame bank: {sweep.pass_fraction or 'no prefilter'}; "
            f"{sweep.served_fraction:.1%} of requests get a latency, so each load runs long enough for "
            f">= {c['min_served']} served requests per replication (LoadGen's minimum for a p99 is 662).", ""]
    out += [f"| load | rate (/s) | duration (s) | served per replication (>= {c['min_served']}) | arrivals identical |",
            "|---|---|---|---|---|"]
    for p in sweep.points:
        r = p.measured.scenario.run
        served = served_counts(p.measured.frame, r.warmup, r.duration)
        few = "" if min(served, default=0) >= c["min_served"] else " (**too few**)"
        same = "yes" if p.identical_arrivals else "**no**"
        out.append(f"| {p.load:g} | {p.rate:.2f} | {r.duration:g} | {', '.join(map(str, served))}{few} | {same} |")
    out += ["", f"Results (standard format; `dgsim check --results` reads each): `{c['out']}/load-<L>/measured/`, "
            f"`simulated/` (the prediction), `simulated-<twin>/` (ablation), `twin/calibration-*.yaml` (the adjusted "
            f"calibrations), `validation.json` (this table as data).", ""]

    k = sweep.conditions
    out += ["## What the twin models", "",
            "The simulator must predict the harness as it runs here, not the scenario's hardware. The twin "
            "(`hil/validate/twin.py`) keeps the scenario's pipeline, placement, workload and policies and replaces:",
            "",
            "- each pool by one device with one server at speed 1: each side of the harness is one single-threaded "
            "process that runs one batch at a time;",
            "- each real stage's cost by its calibration entry (the detector affine in batch size, the others "
            "distributions); the prefilter's pass probability by the real model's pass fraction on the frame bank;",
            "- the links by one per transport opened, between the two processes, latency the calibration's "
            "`transport.<kind>` fit in bytes; no client links (the front issues requests itself, the result is "
            "known on the front).",
            "",
            "Three run conditions the calibration (each op alone, back to back, hot caches) cannot see were found by "
            "comparing measured runs with the twin component by component (below) and are modelled "
            "(`hil/validate/conditions.py`), each measured in the probe runs, never in a validation run:",
            "",
            f"1. **In-run service time, which depends on the load.** Ratio in-run / calibrated mean service per stage, "
            f"at {LOW_LOAD:g} x capacity and under a full backlog (load 1), interpolated linearly in the load. First "
            "probes: " + ", ".join(f"{n} {k.low.get(n, 1):.2f} -> {k.high.get(n, 1):.2f}" for n in k.high) + ". "
            "The host drifts as other work comes and goes, so an offline probe runs again before each load and the "
            "full-backlog ratios are the mean over every offline probe so far (a mean, so as not to chase one slow "
            "spell); the low-load ratios move by the same factor (table below).",
            "2. **The loop's turn between batches** (issue, poll and copy out of the rings, log, ask the batchers): "
            + ", ".join(f"{side} {t * 1e3:.3f} ms" for side, t in k.turn.items())
            + " per batch (first probe), added to every batch of that process (and left out of the predicted "
            "utilisation, as the harness counts only batches as busy).",
            f"3. **Pickup**: an idle process sleeps in steps up to 1 ms and its core must wake, so a message to it "
            f"waits {k.pickup * 1e3:.3f} ms on average before it is taken off the ring (measured in the low-load "
            "probe, beyond the calibrated transport time): added to each link's per-message overhead. The messages "
            "have the "
            "sizes the harness sends: "
            + ", ".join(f"to the {side} side {n / 1e3:.0f} kB" for side, n in k.sizes.items())
            + " (the scenario's nominal sizes are for the real hardware's tensors).", "",
            "Per load, as used (capacity: the offline probe just before it):", "",
            "| load | capacity just before (/s) | " + " | ".join(f"k {n}" for n in k.high)
            + " | turn front (ms) |", "|---|---|" + "---|" * len(k.high) + "---|"]
    for p in sweep.points:
        out.append(f"| {p.load:g} | {p.capacity:.1f} | "
                   + " | ".join(f"{p.conditions.k(n, p.load):.2f}" for n in k.high)
                   + f" | {p.conditions.turn.get('front', 0.0) * 1e3:.3f} |")
    out += [""]

    out += ["## Where the error comes from", "",
            "Error of each twin (ablation; each row adds one model to the one above; the last row is a diagnostic "
            "that is given the mean service times measured in that very run, so what remains there is not "
            "service-time prediction):", ""]
    loads = [p.load for p in sweep.points]
    for metric in (P50, P99, MetricKey(Kind.LATENCY, ALL, "mean")):
        out += [f"`{metric}`:", "", "| twin | " + " | ".join(f"load {x:g}" for x in loads) + " |",
                "|---|" + "---|" * len(loads)]
        for name in TWINS:
            errs = {r.load: r.error for r in ablation.get(name, []) if r.metric == metric}
            out.append(f"| {TWIN_TITLES[name]} | " + " | ".join(f"{errs.get(x, math.nan):+.1%}" for x in loads) + " |")
        out.append("")
    out += ["Mean latency of served requests by component, measured / predicted (ms): the hop into a stage (transport "
            "and pickup; in the harness it also holds the time a busy receiver took to look), its queue wait, its "
            "service:", ""]
    names = list(breakdown(sweep.points[0].measured.frame, run.warmup, sweep.points[0].measured.scenario.run.duration))
    out += ["| component | " + " | ".join(f"load {x:g}" for x in loads) + " |", "|---|" + "---|" * len(loads)]
    parts = []
    for p in sweep.points:
        r = p.measured.scenario.run
        parts.append((breakdown(p.measured.frame, r.warmup, r.duration),
                      breakdown(p.simulated["twin"].frame, r.warmup, r.duration)))
    for name in names:
        if all(abs(m[name]) < 1e-6 and abs(t[name]) < 1e-6 for m, t in parts):
            continue
        out.append(f"| {name} | " + " | ".join(f"{m[name] * 1e3:.2f} / {t[name] * 1e3:.2f}" for m, t in parts) + " |")
    out += ["", "Measured front-side service (ms) of requests that found the front idle vs. queued behind others "
            "(the same op, the same frames):", "",
            "| load | " + " | ".join(f"{s.name} idle / queued" for s in sweep.layout.side_stages("front")) + " |",
            "|---|" + "---|" * len(sweep.layout.side_stages("front"))]
    for p in sweep.points:
        out.append(f"| {p.load:g} | " + " | ".join(f"{a:.2f} / {b:.2f}" for a, b in cold_warm(p, sweep)) + " |")
    out += ["", *analysis(sweep, rows, ablation), ""]
    return "\n".join(out) + "\n"


def cold_warm(point, sweep: Sweep) -> list[tuple[float, float]]:
    """Per front stage: mean service (ms) of requests that arrived to an idle front, and of the others."""
    r = point.measured.scenario.run
    rows = window(point.measured.frame, r.warmup, r.duration)
    first = sweep.layout.side_stages("front")[0].name
    idle = (rows[column(first, "start")] - rows[column(first, "enqueued")]).to_numpy() < 0.6e-3
    out = []
    for s in sweep.layout.side_stages("front"):
        service = (rows[column(s.name, "end")] - rows[column(s.name, "start")]).to_numpy() * 1e3
        out.append((float(np.nanmean(service[idle])) if idle.any() else math.nan,
                    float(np.nanmean(service[~idle])) if (~idle).any() else math.nan))
    return out


def plot_cdfs(sweep: Sweep, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    n = len(sweep.points)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], sweep.points):
        r = p.measured.scenario.run
        for label, frame, style in (("measured", p.measured.frame, "-"),
                                    ("predicted", p.simulated["twin"].frame, "--")):
            lat = np.sort(window(frame, r.warmup, r.duration)["latency"].to_numpy()) * 1e3
            ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat), style, label=label, lw=1.4)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"load {p.load:g} ({p.rate:.1f}/s)", fontsize=9)
        ax.set_xlabel("latency (ms)", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("fraction of served requests", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_errors(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    metrics = list(dict.fromkeys(r.metric for r in rows))
    for metric in metrics:
        mine = [r for r in rows if r.metric == metric and not math.isnan(r.error)]
        style = "-o" if metric in LATENCY or metric == THROUGHPUT else ":s"
        ax.plot([r.load for r in mine], [100 * r.error for r in mine], style, ms=3, lw=1.2, label=metric.name)
    for tol, colour in ((5, "tab:green"), (10, "tab:orange")):
        ax.axhspan(-tol, tol, color=colour, alpha=0.08)
    ax.axvline(GOAL_MAX_LOAD, color="grey", ls="--", lw=0.8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("load (fraction of measured capacity)", fontsize=8)
    ax.set_ylabel("error (predicted - measured) / measured, %", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def analysis(sweep: Sweep, rows: list[Row], ablation: dict[str, list[Row]]) -> list[str]:
    """What the numbers above say about the remaining error, in words (computed, not written by hand)."""
    def errors(name: str, metric: MetricKey) -> list[float]:
        return [r.error for r in ablation.get(name, rows if name == "twin" else []) if r.metric == metric
                and r.load <= GOAL_MAX_LOAD + 1e-9 and not math.isnan(r.error)]

    def span(values: list[float]) -> str:
        return f"{min(values):+.1%} to {max(values):+.1%}" if values else "n/a"

    out = ["### Causes of the remaining error", ""]
    for metric in (P50, P99):
        out.append(f"- `{metric}` at loads <= {GOAL_MAX_LOAD:g}: prediction {span(errors('twin', metric))}; "
                   f"the diagnostic twin given each run's own mean service times {span(errors('in-run', metric))}. "
                   "The difference is the error of predicting in-run service times from the probe runs (the host's "
                   "background load drifts between the probes and each run); what the diagnostic still misses is "
                   "queueing the model does not reproduce (next points).")
    front = sweep.layout.side_stages("front")
    heavy = max(range(len(front)), key=lambda i: sweep.conditions.high.get(front[i].name, 0) *
                (front[i].cost.mean(1) if hasattr(front[i].cost, "mean") else 0)) if front else None
    if heavy is not None:
        pairs = [(p.load, cold_warm(p, sweep)[heavy]) for p in sweep.points]
        out.append(f"- **Service depends on whether the process slept.** Measured `{front[heavy].name}` service, idle "
                   "front vs. queued: " + ", ".join(f"load {x:g}: {a:.2f} vs {b:.2f} ms" for x, (a, b) in pairs)
                   + ". A request that wakes the process runs slower (cold caches and clock after the idle vCPU ran "
                   "other work); one that waited runs on a warm core. The simulator's service time cannot depend on "
                   "the server's recent idleness, so the twin uses the mean at each load: too slow inside busy "
                   "periods, which is where queues and the p99 form, too fast for a request that arrives to an idle "
                   "process. This over-predicts queueing as the load grows.")
    out.append("- **The harness notices arrivals only between batches.** Its loop issues due requests and takes "
               "messages off the rings after each batch, once the job it just ran has been passed to its next stage; "
               "so that job goes ahead of requests that arrived during the batch. The simulator queues a request "
               "when it arrives. The two orders give different waits for the same work (the same FIFO policy object "
               "decides in both; it is the moment a job reaches it that differs).")
    half = [r.measured.half_width / r.measured.mean for r in rows if r.metric == P99
            and not math.isnan(r.measured.low) and r.measured.mean]
    if half:
        out.append(f"- **Noise.** The measured p99's 95% CI half-width is {min(half):.0%} to {max(half):.0%} of its "
                   "value over the replications: other sessions share the 2 cores, so a measured p99 moves by more "
                   "than the 10% goal between runs of the same load.")
    out.append("- Throughput in `server` mode is the offered load whenever the pipeline keeps up, so its error mostly "
               "reflects the requests still in flight at the end of the window; the capacity row above is the "
               "test of throughput prediction.")
    return out
