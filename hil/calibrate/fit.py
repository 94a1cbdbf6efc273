"""From measurements to calibration entries: an affine fit, or a distribution.

``fit_affine`` fits time = a + b * x to the mean latency at each measured
x by least squares weighted for *relative* error: each mean counts with
weight n / mean^2 (n its samples). Unweighted least squares would let the
largest x decide everything, and a transport measured from 64 bytes to
16 MB would get an intercept that is pure noise, even negative; weighting
by the data (not by the fit, which heavy-tailed samples would pull
upwards) fits a 20 us message as carefully as a 20 ms one.

The line is the model of the *mean* latency against x. How well it fits
is R^2 (1 - residual sum of squares / total sum of squares) and MAPE (mean
|measured - fitted| / measured), both over the mean at each measured x.
Sample-to-sample spread is not a fit error: it is kept as quantiles at
``LEVELS`` of each sample divided by the mean of its x, a ratio of mean 1
pooled over every x, which the simulator multiplies the line by (so its
mean at x is the line). On a busy host a few preempted samples dominate
the mean; a per-sample MAPE would mostly measure them.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from hil.calibrate.measure import Measurement
from sim.calibration import AffineEntry, DistributionEntry, Point, Quantiles

LEVELS = (0.0, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 1.0)
DIGITS = 6  # significant digits kept in the file


def _round(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def fit_affine(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """a, b of mean(y | x) ~ a + b * x, least squares weighted by n / mean^2 per distinct x."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.any(y <= 0):
        raise ValueError("latencies must be positive")
    xs, index, counts = np.unique(x, return_inverse=True, return_counts=True)
    if len(xs) < 2:
        raise ValueError("an affine fit needs samples at two or more distinct x")
    means = np.bincount(index, weights=y) / counts
    root = np.sqrt(counts) / means  # square root of the weights
    (a, b), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(xs), xs]) * root[:, None], means * root, rcond=None)
    return float(a), float(b)


def r_squared(y: np.ndarray, fitted: np.ndarray) -> float:
    total = float(np.sum((y - np.mean(y)) ** 2))
    residual = float(np.sum((y - fitted) ** 2))
    return 1.0 - residual / total if total > 0 else (1.0 if residual == 0 else 0.0)


def mape(y: np.ndarray, fitted: np.ndarray) -> float:
    return float(np.mean(np.abs(y - fitted) / y))


def quantiles(values: np.ndarray) -> Quantiles:
    """``values`` summarised at ``LEVELS`` (numpy's linear interpolation between order statistics)."""
    q = np.quantile(np.asarray(values, dtype=float), LEVELS)
    return Quantiles(levels=list(LEVELS), values=[_round(v) for v in np.maximum.accumulate(q)])


def affine_entry(points: Sequence[tuple[float, Measurement]], x_kind: Literal["batch", "bytes"],
                 measured: str) -> AffineEntry:
    """Fit the samples of every (x, measurement) point into an affine calibration entry."""
    x = np.concatenate([np.full(len(m.samples), float(xi)) for xi, m in points])
    y = np.concatenate([m.samples for _, m in points])
    a, b = fit_affine(x, y)
    if np.any(a + b * x <= 0):
        raise ValueError(f"the fit a={a:g}, b={b:g} is not positive over the measured x")
    xs = np.array([float(xi) for xi, _ in points])
    means = np.array([m.mean for _, m in points])
    spread = np.concatenate([m.samples / m.mean for _, m in points])
    return AffineEntry(
        kind="affine", x=x_kind, a=_round(a), b=_round(b), residual=quantiles(spread),
        r2=_round(r_squared(means, a + b * xs)), mape=_round(mape(means, a + b * xs)), n=len(y),
        stable=all(m.stable for _, m in points), windows=sum(m.windows for _, m in points), measured=measured,
        points=[Point(x=float(xi), n=len(m.samples), mean=_round(m.mean), p50=_round(float(np.median(m.samples))),
                      stable=m.stable, windows=m.windows)
                for xi, m in points],
    )


def distribution_entry(measurement: Measurement, measured: str) -> DistributionEntry:
    """A latency measurement as a distribution entry."""
    return DistributionEntry(
        kind="distribution", quantiles=quantiles(measurement.samples), sample_mean=_round(measurement.mean),
        n=len(measurement.samples), stable=measurement.stable, windows=measurement.windows, measured=measured,
    )
