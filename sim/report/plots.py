"""Plotting primitives shared by every report: each returns a matplotlib Figure.

- ``cdf``: empirical CDFs of several samples;
- ``curves``: y against x per series, with optional confidence bands and
  horizontal reference lines (budgets);
- ``stacked_bars``: one bar per category, stacked by component;
- ``pareto_scatter``: designs as points, the Pareto front highlighted;
- ``data_uri`` / ``save_png``: a figure as an embeddable PNG (``data:``
  URI, so an HTML page needs no network and no side files) or a file.

Figures are drawn with the Agg backend and closed by ``data_uri`` and
``save_png``; nothing here keeps global state between calls.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure


@dataclass(frozen=True)
class Curve:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    low: Optional[Sequence[float]] = None  # confidence band, same length as y
    high: Optional[Sequence[float]] = None
    linestyle: str = "-"
    color: Optional[str] = None


def _figure(title: str, size=(7.0, 4.2)) -> tuple[Figure, object]:
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    return figure, axes


def cdf(samples: Mapping[str, Sequence[float]], xlabel: str, title: str = "", logx: bool = False) -> Figure:
    figure, axes = _figure(title)
    for label, values in samples.items():
        data = np.sort(np.asarray([v for v in values if not math.isnan(v)], dtype=float))
        if len(data):
            axes.step(data, np.arange(1, len(data) + 1) / len(data), where="post", label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("fraction at or below")
    if logx:
        axes.set_xscale("log")
    if samples:
        axes.legend(fontsize="small")
    return figure


def curves(series: Sequence[Curve], xlabel: str, ylabel: str, title: str = "",
           lines: Mapping[str, float] = {}, logy: bool = False) -> Figure:
    figure, axes = _figure(title)
    for curve in series:
        x = np.asarray(curve.x, dtype=float)
        order = np.argsort(x, kind="stable")
        x, y = x[order], np.asarray(curve.y, dtype=float)[order]
        drawn = axes.plot(x, y, curve.linestyle, marker="o", markersize=3, label=curve.label, color=curve.color)
        if curve.low is not None and curve.high is not None:
            low = np.asarray(curve.low, dtype=float)[order]
            high = np.asarray(curve.high, dtype=float)[order]
            axes.fill_between(x, low, high, alpha=0.2, color=drawn[0].get_color(), linewidth=0)
    for label, value in lines.items():
        axes.axhline(value, color="red", linestyle=":", linewidth=1.2)
        axes.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), color="red", fontsize="small",
                      va="bottom")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    if logy:
        axes.set_yscale("log")
    if series:
        axes.legend(fontsize="small")
    return figure


def stacked_bars(categories: Sequence[str], stacks: Mapping[str, Sequence[float]], ylabel: str,
                 title: str = "") -> Figure:
    figure, axes = _figure(title)
    bottom = np.zeros(len(categories))
    for label, values in stacks.items():
        values = np.nan_to_num(np.asarray(values, dtype=float))
        axes.bar(list(categories), values, bottom=bottom, label=label)
        bottom += values
    axes.set_ylabel(ylabel)
    if stacks:
        axes.legend(fontsize="small")
    return figure


def pareto_scatter(labels: Sequence[str], x: Sequence[float], y: Sequence[float], front: Sequence[bool],
                   xlabel: str, ylabel: str, title: str = "") -> Figure:
    figure, axes = _figure(title)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    on = np.asarray(front, dtype=bool)
    axes.scatter(x[~on], y[~on], color="0.6", label="dominated")
    axes.scatter(x[on], y[on], color="C3", label="Pareto front", zorder=3)
    if on.any():
        order = np.argsort(x[on])
        axes.plot(x[on][order], y[on][order], color="C3", linewidth=1, drawstyle="steps-post")
    for label, a, b in zip(labels, x, y):
        if not (math.isnan(a) or math.isnan(b)):
            axes.annotate(label, (a, b), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.legend(fontsize="small")
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # no version stamp: same figure, same bytes
    return buffer.getvalue()


def data_uri(figure: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI for an <img> tag."""
    return "data:image/png;base64," + base64.b64encode(_png(figure)).decode("ascii")


def save_png(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png(figure))
    return path
