"""Plots and one self-contained HTML page per capacity or sweep run (images embedded, no network)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from sim.contract.metric_keys import ALL, Kind, MetricKey
from sim.explore.capacity import resource_of
from sim.report.plots import Curve, curves, data_uri, pareto_scatter, save_png

_STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
          "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
          "th{background:#f3f3f3}img{max-width:100%}")


def _page(title: str, blocks: Sequence[str]) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(blocks)}</body></html>\n")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _text(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def _figures(folder: Path, figures: Mapping[str, object]) -> list[str]:
    blocks = []
    for name, figure in figures.items():
        save_png(figure, folder / "plots" / f"{name}.png")
        blocks.append(f"<h2>{html.escape(name.replace('-', ' '))}</h2><img alt='{html.escape(name)}' "
                      f"src='{data_uri(figure)}'>")
    return blocks


def _ms(values) -> list[float]:
    return [v * 1e3 if v is not None else math.nan for v in values]


def _budget_lines(budgets: Mapping[str, float]) -> dict[str, float]:
    """Latency budgets (metric name -> seconds) as labelled lines in ms."""
    return {f"budget {MetricKey.parse(m).statistic} {v * 1e3:g} ms": v * 1e3 for m, v in budgets.items()}


def _latency(statistic: str) -> str:
    return MetricKey(Kind.LATENCY, ALL, statistic).name


def _utilisation_of(resource: str) -> str:
    """capacity.json's 'pool.gpu' -> the metric 'utilisation.pool.gpu'."""
    return MetricKey(Kind.UTILISATION, resource_of(resource)).name


def _metric(column: str):
    """The metric a sweep table's column holds, or None (grid paths, .low/.high bounds, other columns)."""
    try:
        return MetricKey.parse(column)
    except ValueError:
        return None


def capacity_page(folder: Path, document: dict, budgets: Mapping[str, float]) -> Path:
    variants = document["variants"]
    unit = next(iter(variants.values()))["capacity"]["unit"] if variants else ""
    latency, busy = [], []
    for name, v in variants.items():
        probes = [p for p in v["probes"] if p["metrics"]]
        x = [p["value"] for p in probes]
        for q, style in (("p50", "--"), ("p99", "-")):
            m = [p["metrics"].get(_latency(q), {}) for p in probes]
            latency.append(Curve(f"{name} {q}", x, _ms(e.get("mean") for e in m), _ms(e.get("low") for e in m),
                                 _ms(e.get("high") for e in m), style))
        for resource in v["utilisation"]:
            m = [p["metrics"].get(_utilisation_of(resource), {}) for p in probes]
            busy.append(Curve(f"{name}: {resource.replace('.', ' ', 1)}", x, [e.get("mean", math.nan) for e in m]))
    names = list(variants)
    figures = {
        "latency-vs-load": curves(latency, f"load ({unit})", "latency (ms)", "Latency at each probe (95% CI)",
                                  _budget_lines(budgets)),
        "utilisation-vs-load": curves(busy, f"load ({unit})", "utilisation", "Utilisation at each probe"),
        "cost-vs-capacity": pareto_scatter(
            names, [variants[n]["capacity"]["value"] for n in names],
            [variants[n]["cost_per_hour"] if variants[n]["cost_per_hour"] is not None else math.nan for n in names],
            [variants[n]["pareto"] for n in names], f"capacity ({unit})", "cost (USD per hour)",
            "Cost vs capacity"),
    }
    rows = [(n, v["capacity"]["value"], v["capacity"]["low"], v["capacity"]["high"], v["capacity"]["high_verdict"],
             (v["binding_budget"] or {}).get("label"), (v["bottleneck"] or {}).get("resource"), v["cost_per_hour"],
             v["cost_per_unit"], v["pareto"]) for n, v in variants.items()]
    table = _table(["variant", f"capacity ({unit})", "passes at", "not at", "verdict there", "binding budget",
                    "bottleneck", "USD/h", f"USD/h per {unit}", "Pareto"], rows)
    intro = (f"<p>Scenario <b>{html.escape(document['scenario'])}</b>, seed {document['seed']}, relative tolerance "
             f"{document['tolerance']:.1%}. A probe passes only when every budget PASSes; INCONCLUSIVE counts as "
             f"not shown to pass.</p>")
    path = folder / "capacity.html"
    path.write_text(_page(f"Capacity: {document['scenario']}", [intro, table, *_figures(folder, figures)]))
    return path


def _x_axis(table: pd.DataFrame, axes) -> tuple[str, list[float]]:
    """What to plot against: the offered load when it varies, else the first numeric grid axis, else the point."""
    if table["arrival_rate"].nunique(dropna=True) > 1:
        unit = table["load_unit"].iloc[0] if table["load_unit"].nunique() == 1 else "requests/s"
        column = "load" if table["load_unit"].nunique() == 1 else "arrival_rate"
        return f"offered load ({unit})", list(table[column])
    for axis in axes:
        numbers = pd.to_numeric(table[axis.path], errors="coerce")
        if numbers.notna().all():
            return axis.path, list(numbers)
    return "grid point", list(table["point"].astype(float))


def sweep_page(folder: Path, table: pd.DataFrame, axes, budgets: Mapping[str, float], pareto: bool) -> Path:
    ok = table[table["status"] == "ok"].reset_index(drop=True)
    xlabel, x = _x_axis(ok, axes) if len(ok) else ("grid point", [])
    ok = ok.assign(_x=x)
    paths = [a.path for a in axes]
    others = [p for p in paths if p != xlabel]
    latency, busy = [], []
    for key, group in ok.groupby(["variant", *others], sort=False) if len(ok) else []:
        key = key if isinstance(key, tuple) else (key,)
        label = " ".join(str(k) for k in key)
        for q, style in (("p50", "--"), ("p99", "-")):
            column = _latency(q)
            if column in group:
                latency.append(Curve(f"{label} {q}", group["_x"], group[column] * 1e3, group[f"{column}.low"] * 1e3,
                                     group[f"{column}.high"] * 1e3, style))
        for column in group.columns:
            key = _metric(column)
            if key is not None and key.kind is Kind.UTILISATION:
                busy.append(Curve(f"{label}: {key.subject.namespace.value} {key.subject.name}", group["_x"],
                                  group[column]))
    figures = {
        "latency-vs-load": curves(latency, xlabel, "latency (ms)", "Latency (95% CI bands)", _budget_lines(budgets)),
        "utilisation-vs-load": curves(busy, xlabel, "utilisation", "Utilisation"),
    }
    p99 = _latency("p99")
    if pareto and p99 in ok:
        labels = [f"{r.variant} #{r.point}" for r in ok.itertuples()]
        figures["pareto-cost-vs-p99"] = pareto_scatter(labels, ok["cost_per_hour"], ok[p99] * 1e3,
                                                       ok["pareto"], "cost (USD per hour)", "p99 latency (ms)",
                                                       "Cost vs p99 at each load")
    shown = ["point", "variant", *paths, "load", "status", _latency("p50"), p99, MetricKey(Kind.THROUGHPUT).name,
             "cost_per_hour",
             *(["pareto"] if pareto else []), "error"]
    shown = [c for c in shown if c in table]
    rows = [[_cell(c, r[c]) for c in shown] for _, r in table.iterrows()]
    path = folder / "sweep.html"
    intro = f"<p>{len(table)} rows: every variant at every grid point; latencies in ms.</p>"
    path.write_text(_page("Sweep", [intro, _table(shown, rows), *_figures(folder, figures)]))
    return path


def _cell(column: str, value):
    key = _metric(column)
    if key is not None and key.kind is Kind.LATENCY and isinstance(value, float):
        return value * 1e3
    return value
