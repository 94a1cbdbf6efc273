"""The results folder: what ``dgsim run`` and ``dgsim hil run`` leave behind.

    OUT/summary.json              every variant's metrics: mean, 95% CI, per-replication values
    OUT/requests/<variant>.parquet  one row per request (see sim.metrics.records)
    OUT/resolved/<variant>.yaml   the scenario as run, defaults filled in

``summary.json`` is written with sorted keys and no timestamps, so the same
scenario and seed give the same bytes. NaN (a metric with no data) is
written as null. ``read_summary`` reads it back for checks and reports.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sim.experiment import ExperimentResult
from sim.metrics.summary import Estimate
from sim.plan import compile_plan
from sim.scenario.schema import Scenario
from sim.units import format_bandwidth, format_duration

FORMAT = "dgsim-summary/1"


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def summary_document(result: ExperimentResult) -> dict[str, Any]:
    variants = {}
    for name, variant in result.variants.items():
        run = variant.scenario.run
        variants[name] = {
            "replications": len(variant.runs),
            "duration": run.duration,
            "warmup": run.warmup,
            "metrics": {
                metric: {
                    "mean": _number(e.mean),
                    "ci95": [_number(e.low), _number(e.high)],
                    "values": [_number(v) for v in e.values],
                }
                for metric, e in variant.estimates.items()
            },
        }
    return {"format": FORMAT, "scenario": result.scenario, "source": result.source, "seed": result.seed,
            "variants": variants}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def resolved_document(scenario: Scenario, base_dir: Path = Path(".")) -> dict[str, Any]:
    """The scenario as run: every value a profile supplied is written out, so the file alone
    says what was simulated (and loads back as an equivalent scenario). ``base_dir``: the
    scenario file's folder, which its calibration and trace files are relative to."""
    document = scenario.model_dump(mode="json", by_alias=True, exclude={"variants"})
    plan = compile_plan(scenario, base_dir=base_dir)
    for name, pool in document["hardware"]["pools"].items():
        resolved = plan.pools[name]
        pool.update(servers=resolved.servers, speed=resolved.speed)
    for link in document["hardware"]["links"]:
        resolved = next(p for p in plan.links if p.name == link["name"])
        link.update(
            kind=resolved.kind,
            bandwidth=format_bandwidth(resolved.bandwidth),
            latency=resolved.latency.model_dump(mode="json", by_alias=True),
            overhead=format_duration(resolved.overhead),
            contention=resolved.contention,
        )
    return document


def write_results(result: ExperimentResult, out: Path, base_dir: Path = Path(".")) -> Path:
    """Write the results folder; return the path of summary.json."""
    for name, variant in result.variants.items():
        requests = out / "requests" / f"{name}.parquet"
        requests.parent.mkdir(parents=True, exist_ok=True)
        variant.frame.to_parquet(requests.with_name(requests.name + ".tmp"), index=False)
        os.replace(requests.with_name(requests.name + ".tmp"), requests)
        resolved = resolved_document(variant.scenario, base_dir)
        _atomic_write(out / "resolved" / f"{name}.yaml", yaml.safe_dump(resolved, sort_keys=False).encode())
    summary = out / "summary.json"
    text = json.dumps(summary_document(result), sort_keys=True, indent=1, allow_nan=False)
    _atomic_write(summary, (text + "\n").encode())
    return summary


@dataclass(frozen=True)
class SummaryFile:
    """summary.json as read back: estimates per variant and metric."""

    path: Path
    scenario: str
    source: str
    seed: int
    variants: dict[str, dict[str, Estimate]]


class ResultsError(ValueError):
    """A results folder that cannot be read."""


def read_summary(path: Path) -> SummaryFile:
    path = path / "summary.json" if path.is_dir() else path
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path}: no summary.json here (run 'dgsim run' or 'dgsim hil run' first)") from None
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ResultsError(f"{path}: expected format '{FORMAT}', got {document.get('format') if isinstance(document, dict) else document!r}")
    nan = math.nan

    def value(v):
        return nan if v is None else float(v)

    try:
        variants = {
            name: {
                metric: Estimate(value(m["mean"]), value(m["ci95"][0]), value(m["ci95"][1]),
                                 tuple(value(v) for v in m["values"]))
                for metric, m in body["metrics"].items()
            }
            for name, body in document["variants"].items()
        }
    except (KeyError, TypeError, IndexError) as error:
        raise ResultsError(f"{path}: malformed summary ({error!r})") from None
    return SummaryFile(path, document["scenario"], document["source"], document["seed"], variants)
