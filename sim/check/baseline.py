"""The baseline: accepted results, to catch a change that makes things worse.

``dgsim check --write-baseline FILE`` records every metric of every
scenario and variant checked (mean, 95 % interval and the per-replication
values), with the seed and source they came from, in a versioned JSON file
with sorted keys and no timestamps: the same run writes the same bytes, and
the file reviews well in a diff (one line per metric).

``dgsim check --baseline FILE --max-regression 5%`` then adds, per variant,
one regression check for each budgeted metric and for the headline metrics
(mean and p99 latency, throughput). With tolerance ``tol``:

- lower is better (latency, rates, utilisation): regressed when the
  current mean is significantly above ``baseline mean x (1 + tol)``;
- higher is better (throughput): regressed when it is significantly below
  ``baseline mean x (1 - tol)``.

"Significantly" is a one-sided t-test at 2.5 % that counts the noise of
both runs (``verdict.against``). When the baseline was simulated with the
same seed, replication ``r`` of both runs saw the same random numbers, and
the test is paired replication by replication (much more sensitive);
otherwise (another seed, measured data) it is Welch's test. A check whose
interval straddles the threshold is INCONCLUSIVE, like any budget. A zero
baseline (no drops) regresses on any significant increase.

Scenarios are keyed by name and variants by name. A scenario, variant or
metric absent from the baseline (a new one) is not compared.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from sim.check.budgets import MAX, Budget, budget
from sim.contract.metric_keys import ALL, Kind, MetricKey
from sim.metrics.summary import Estimate

FORMAT = "dgsim-baseline/2"  # 2: pool and link metrics in their own namespaces (sim.contract.metric_keys)
HEADLINE = (MetricKey(Kind.LATENCY, ALL, "mean"), MetricKey(Kind.LATENCY, ALL, "p99"), MetricKey(Kind.THROUGHPUT))


@dataclass(frozen=True)
class Recorded:
    """One variant's results as the baseline holds them."""

    source: str  # "simulation" or "measurement"
    seed: int
    metrics: Mapping[str, Estimate]


Baseline = dict[str, dict[str, Recorded]]  # scenario name -> variant -> results


class BaselineError(ValueError):
    """A baseline file or tolerance that cannot be used."""


def parse_tolerance(text: str) -> float:
    """'5%' or '0.05' -> 0.05; from 0 up to (not including) 100 %."""
    body = text.strip()
    try:
        value = float(body[:-1]) / 100 if body.endswith("%") else float(body)
    except ValueError:
        raise BaselineError(f"--max-regression: expected a percentage such as '5%', got {text!r}") from None
    if not 0 <= value < 1:
        raise BaselineError(f"--max-regression: must be at least 0% and below 100%, got {text!r}")
    return value


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def write_baseline(path: Path, baseline: Baseline) -> None:
    document = {"format": FORMAT, "scenarios": {
        scenario: {variant: {"source": r.source, "seed": r.seed, "metrics": {
            metric: {"mean": _number(e.mean), "ci95": [_number(e.low), _number(e.high)],
                     "values": [_number(v) for v in e.values]}
            for metric, e in r.metrics.items()}}
            for variant, r in variants.items()}
        for scenario, variants in baseline.items()}}
    text = json.dumps(document, sort_keys=True, indent=1, allow_nan=False)
    text = re.sub(r"\{\s+(\"ci95\": \[[^]]*\],\s+\"mean\": [^,]+,\s+\"values\": \[[^]]*\])\s+\}",
                  lambda m: "{" + " ".join(m.group(1).split()).replace("[ ", "[").replace(" ]", "]") + "}", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def read_baseline(path: Path) -> Baseline:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise BaselineError(f"{path}: baseline not found (write one with --write-baseline)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BaselineError(f"{path}: cannot read baseline ({error})") from None
    except json.JSONDecodeError as error:
        raise BaselineError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise BaselineError(f"{path}: expected format '{FORMAT}', got {found!r}")

    def value(v) -> float:
        return math.nan if v is None else float(v)

    try:
        return {scenario: {variant: Recorded(str(r["source"]), int(r["seed"]), {
            metric: Estimate(value(m["mean"]), value(m["ci95"][0]), value(m["ci95"][1]),
                             tuple(value(v) for v in m["values"]))
            for metric, m in r["metrics"].items()})
            for variant, r in variants.items()}
            for scenario, variants in document["scenarios"].items()}
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as error:
        raise BaselineError(f"{path}: malformed baseline ({type(error).__name__}: {error})") from None


def regression_budgets(budgets: list[Budget], recorded: Recorded, tolerance: float, paired: bool) -> list[Budget]:
    """One regression check per budgeted or headline metric that the baseline has."""
    out = []
    for key in dict.fromkeys([b.key for b in budgets] + list(HEADLINE)):
        base = recorded.metrics.get(key.name)
        if base is None or math.isnan(base.mean):
            continue
        plain = budget(key, 0.0)
        factor = 1 + tolerance if plain.direction == MAX else 1 - tolerance
        sign = "+" if plain.direction == MAX else "-"
        out.append(Budget(key, factor * base.mean, plain.direction,
                          f"{plain.label} vs baseline {sign}{tolerance * 100:g}%", reference=base, factor=factor,
                          paired=paired))
    return out
