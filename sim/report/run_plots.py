"""The numbers and pictures of one run's report: where each request's time went.

Numbers first, from the per-request table (``sim.report.columns``), for
the requests that arrived in the measurement window and were served:

- ``stage_components``: per stage, each request's input transfer (from
  the end of the predecessor that finished last, or its arrival, to its
  enqueue), queue wait (enqueue to start) and service (start to end); the
  reply is a last "stage" made of its transfer only;
- ``latency_shares``: the fraction of all served requests' latency spent
  waiting in queues, in service and in transfers (including joins and the
  reply);
- ``batch_sizes``: per stage, the size of every batch launched;
- ``occupancy``: busy slots and queued jobs per pool over time, from the
  time series the simulator recorded, or rebuilt from the table (batches
  in service, requests between enqueue and start) for measured runs.

Then one picture each, returned as a PNG data URI (``sim.report.plots``,
shared with the sweep and capacity pages: the CDF and stacked-bar
primitives and the embedding) so the page needs no other file and no
network. Figures are matplotlib ``Figure`` objects, never pyplot state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from matplotlib.figure import Figure

from sim.report import plots
from sim.report.columns import StageColumns, StageGraph, pool_of, stage_columns

SERVED = ("completed", "deadline_missed")
COMPONENTS = ("transfer", "wait", "service")
COLOURS = {"transfer": "#4c78a8", "wait": "#f58518", "service": "#54a24b"}
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d")


def served_in_window(frame: pd.DataFrame, window: Optional[tuple[float, float]]) -> pd.DataFrame:
    rows = frame[frame["outcome"].astype(str).isin(SERVED)]
    if window is not None:
        rows = rows[(rows["arrival"] >= window[0]) & (rows["arrival"] < window[1])]
    return rows


def latencies(frame: pd.DataFrame, window: Optional[tuple[float, float]]) -> np.ndarray:
    return np.sort(served_in_window(frame, window)["latency"].to_numpy(dtype=float))


@dataclass(frozen=True)
class StageTimes:
    name: str
    transfer: np.ndarray  # per request that reached the stage, seconds
    wait: np.ndarray
    service: np.ndarray


def stage_components(rows: pd.DataFrame, graph: StageGraph) -> list[StageTimes]:
    """Transfer, wait and service per stage (and the reply) for the requests in ``rows``."""
    stages = stage_columns(rows)
    by_name = {s.name: s for s in stages}
    arrival = rows["arrival"].to_numpy(dtype=float)
    out = []
    for s in stages:
        reached = ~np.isnan(s.start) & ~np.isnan(s.end)
        enqueued = np.where(np.isnan(s.enqueued), s.start, s.enqueued)
        preds = [by_name[p] for p in graph.preds.get(s.name, ()) if p in by_name]
        ready = _latest_end(preds, len(rows)) if preds else arrival
        out.append(StageTimes(s.name, (enqueued - ready)[reached], (s.start - enqueued)[reached],
                              (s.end - s.start)[reached]))
    done = rows["done"].to_numpy(dtype=float)
    last = _latest_end(stages, len(rows))
    ok = ~np.isnan(last) & ~np.isnan(done)
    empty = np.zeros(int(ok.sum()))
    out.append(StageTimes("reply", (done - last)[ok], empty, empty))
    return out


def _latest_end(stages: Sequence[StageColumns], n: int) -> np.ndarray:
    if not stages:
        return np.full(n, np.nan)
    ends = np.vstack([s.end for s in stages])
    with np.errstate(all="ignore"):
        return np.where(np.all(np.isnan(ends), axis=0), np.nan, np.nanmax(np.where(np.isnan(ends), -np.inf, ends), axis=0))


def percentiles(times: Sequence[StageTimes], q: float) -> dict[str, dict[str, float]]:
    """Per stage and component, the q-th percentile (NaN where no request reached the stage)."""
    return {t.name: {c: float(np.percentile(getattr(t, c), q)) if len(getattr(t, c)) else math.nan
                     for c in COMPONENTS} for t in times}


def latency_shares(rows: pd.DataFrame, times: Sequence[StageTimes]) -> dict[str, float]:
    """Fractions of the served requests' total latency in queues, service and transfers (the rest)."""
    total = float(np.nansum(rows["latency"].to_numpy(dtype=float)))
    if not total > 0:
        return {c: math.nan for c in ("wait", "service", "transfer")}
    wait = sum(float(np.nansum(t.wait)) for t in times)
    service = sum(float(np.nansum(t.service)) for t in times)
    return {"wait": wait / total, "service": service / total, "transfer": max(0.0, 1 - (wait + service) / total)}


def batch_sizes(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per stage, the size of each batch: from the batch ids where recorded, else requests sharing a
    device and identical start and end times."""
    out = {}
    for s in stage_columns(frame):
        reached = ~np.isnan(s.start)
        if not reached.any():
            continue
        replication = frame["replication"].to_numpy()[reached]
        if s.batch is not None and not np.all(np.isnan(s.batch[reached])):
            keys = pd.DataFrame({"r": replication, "b": s.batch[reached]})
        else:
            keys = pd.DataFrame({"r": replication, "d": s.device[reached].astype(str), "s": s.start[reached],
                                 "e": s.end[reached]})
        out[s.name] = keys.value_counts(sort=False).to_numpy()
    return out


def occupancy_from_table(frame: pd.DataFrame, replication: int, step: float) -> pd.DataFrame:
    """Busy batch slots and waiting jobs per pool over time, rebuilt from one replication's table.

    Same columns as the recorded time series (``sim.model.timeseries``) for pools; capacity is
    unknown here (0) and ``busy`` counts batches in service.
    """
    rows = frame[frame["replication"] == replication]
    stages = stage_columns(rows)
    if not stages or not len(rows):
        return pd.DataFrame()
    end_time = float(np.nanmax([np.nanmax(s.end) for s in stages if np.any(~np.isnan(s.end))] or [0.0]))
    grid = np.arange(0.0, end_time + step, step)
    intervals: dict[str, dict[str, list]] = {}
    for s in stages:
        reached = ~np.isnan(s.start) & ~np.isnan(s.end)
        pools = np.array([pool_of(d) or "?" for d in s.device[reached]], dtype=object)
        starts, ends = s.start[reached], s.end[reached]
        enq = np.where(np.isnan(s.enqueued[reached]), starts, s.enqueued[reached])
        batch = pd.DataFrame({"p": pools, "d": s.device[reached].astype(str), "s": starts, "e": ends}).drop_duplicates()
        for pool in np.unique(pools):
            slot = intervals.setdefault(pool, {"busy": [], "queue": []})
            mine = batch[batch["p"] == pool]
            slot["busy"].append((mine["s"].to_numpy(), mine["e"].to_numpy()))
            slot["queue"].append((enq[pools == pool], starts[pools == pool]))
    parts = []
    for pool, kinds in sorted(intervals.items()):
        counts = {k: _count(grid, np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]))
                  for k, v in kinds.items()}
        parts.append(pd.DataFrame({"replication": replication, "time": grid, "kind": "pool", "resource": pool,
                                   "busy": counts["busy"], "capacity": 0, "queue": counts["queue"],
                                   "in_flight": 0, "bytes": 0.0}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _count(grid: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many [start, end) intervals contain each grid time."""
    starts, ends = np.sort(starts), np.sort(ends)
    return np.searchsorted(starts, grid, side="right") - np.searchsorted(ends, grid, side="right")


# --- figures -----------------------------------------------------------------

def data_uri(figure: Figure) -> str:
    return plots.data_uri(figure)


def cdf_figure(series: Mapping[str, np.ndarray], budgets: Mapping[str, float], title: str) -> str:
    """Latency CDFs (ms) with a line per latency budget (``{"p99": 0.1}``) at its quantile."""
    figure = plots.cdf({f"{name} (n={len(values)})": values * 1e3 for name, values in series.items()},
                       "latency (ms)", title)
    figure.set_size_inches(7.0, 3.6)
    axes = figure.axes[0]
    quantiles = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}
    for key, bound in budgets.items():
        axes.axvline(bound * 1e3, color="#d62728", linestyle="--", linewidth=1)
        if key in quantiles:
            axes.axhline(quantiles[key], color="#d62728", linestyle=":", linewidth=0.8)
        axes.annotate(f"budget {key} <= {bound * 1e3:g} ms", (bound * 1e3, 0.05), rotation=90, color="#d62728",
                      fontsize=8, ha="right", va="bottom")
    axes.set_ylim(0, 1.01)
    axes.set_ylabel("fraction of served requests")
    return data_uri(figure)


def breakdown_figure(p50: Mapping[str, Mapping[str, float]], p99: Mapping[str, Mapping[str, float]], title: str) -> str:
    """Per stage, two stacked bars (p50, p99) of transfer, wait and service."""
    names = list(p50)
    fig = Figure(figsize=(7.0, 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(names))
    width = 0.38
    for offset, values, hatch in ((-width / 2, p50, ""), (width / 2, p99, "//")):
        bottom = np.zeros(len(names))
        for component in COMPONENTS:
            heights = np.nan_to_num([values[n][component] * 1e3 for n in names])
            ax.bar(x + offset, heights, width, bottom=bottom, color=COLOURS[component], hatch=hatch,
                   edgecolor="white", linewidth=0.5, label=component if offset < 0 else None)
            bottom += heights
    ax.set_xticks(x, [f"{n}\np50 | p99" for n in names], fontsize=8)
    ax.set_ylabel("ms (each component's percentile)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return data_uri(fig)


def shares_figure(shares: Mapping[str, Mapping[str, float]]) -> str:
    """One 100% bar per variant: queues, service, transfers."""
    labels = {"wait": "in queues", "service": "in service", "transfer": "in transfers and joins"}
    figure = plots.stacked_bars(list(shares), {labels[c]: [shares[n][c] * 100 for n in shares] for c in labels},
                                "% of served requests' total latency", "where latency goes")
    figure.set_size_inches(7.0, 3.2)
    figure.axes[0].set_ylim(0, 100)
    return data_uri(figure)


def batch_figure(sizes: Mapping[str, np.ndarray], title: str) -> str:
    names = list(sizes)
    fig = Figure(figsize=(max(3.0, 2.6 * len(names)), 2.8), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names):
        values = sizes[name]
        top = int(values.max()) if len(values) else 1
        ax.hist(values, bins=np.arange(0.5, top + 1.5), color=PALETTE[0], rwidth=0.85)
        ax.set_title(f"{name} (mean {values.mean():.2f})" if len(values) else name, fontsize=9)
        ax.set_xlabel("batch size", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("batches", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return data_uri(fig)


def occupancy_figure(series: pd.DataFrame, window: Optional[tuple[float, float]], title: str, smooth: int = 5) -> str:
    """Utilisation and queue per pool, busy share and in-flight messages per link, over time (one replication)."""
    pools = series[series["kind"].astype(str) == "pool"]
    links = series[series["kind"].astype(str) == "link"]
    rows = 2 if len(links) else 1
    fig = Figure(figsize=(9.0, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False, sharex=True)

    def draw(ax, frame: pd.DataFrame, value, label: str) -> None:
        for k, (name, part) in enumerate(frame.groupby(frame["resource"].astype(str), sort=True)):
            y = pd.Series(value(part)).rolling(smooth, min_periods=1).mean().to_numpy()
            ax.plot(part["time"].to_numpy(), y, color=PALETTE[k % len(PALETTE)], label=name, linewidth=1)
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if window is not None:
            ax.axvspan(window[0], window[1], color="#999999", alpha=0.08)
        if len(frame):
            ax.legend(fontsize=7, loc="upper right")

    recorded = bool(len(pools)) and pools["capacity"].max() > 0
    if recorded:
        draw(axes[0][0], pools, lambda p: (p["busy"] / p["capacity"].clip(lower=1) * 100).to_numpy(),
             "utilisation %")
    else:
        draw(axes[0][0], pools, lambda p: p["busy"].to_numpy(dtype=float), "batches in service")
    draw(axes[0][1], pools, lambda p: p["queue"].to_numpy(dtype=float), "jobs queued")
    if rows == 2:
        draw(axes[1][0], links, lambda p: (p["busy"] / p["capacity"].clip(lower=1) * 100).to_numpy(),
             "link channels busy %")
        draw(axes[1][1], links, lambda p: p["in_flight"].to_numpy(dtype=float), "messages in flight")
    for ax in axes[-1]:
        ax.set_xlabel("simulated time (s)" if recorded else "time (s)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return data_uri(fig)
