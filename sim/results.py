"""The results folder: what ``dgsim run`` and ``dgsim hil run`` leave behind.

    OUT/summary.json                every variant's metrics: mean, 95% CI, per-replication values
    OUT/requests/<variant>.parquet  one row per request (docs/results-format.md, sim.metrics.records)
    OUT/resolved/<variant>.yaml     the scenario as run, defaults filled in

``summary.json`` is written with sorted keys and no timestamps, so the same
scenario and seed give the same bytes. NaN (a metric with no data) is
written as null. ``read_summary`` reads it back for checks and reports and
turns anything malformed into one ``ResultsError`` line.

The folder is replaced as a whole: everything is written into a temporary
folder beside OUT, which is then renamed into place; the old folder is
kept until that rename succeeded. A failed write (full disk, read-only
folder) leaves the previous results intact and says why. Only the entries
above belong to the format: other entries of an existing OUT (the
harness's stream/ and failures.json, a validation's twin folders) are
carried into the new folder, while requests/ and resolved/ are replaced
entirely, so no variant of an earlier run is left behind.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sim.experiment import ExperimentResult
from sim.metrics import records
from sim.metrics.summary import Estimate
from sim.plan import Plan, compile_plan
from sim.scenario.schema import Scenario
from sim.units import format_bandwidth, format_duration

FORMAT = "dgsim-summary/2"  # 2: metric names from sim.contract.metric_keys (pools and links in own namespaces)
OWNED = ("summary.json", "requests", "resolved", "timeseries")  # what the format consists of
HARNESS = ("stream", "failures.json")  # what the harness writes beside it (also before any summary)


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else value


def summary_document(result: ExperimentResult, kept: str = "all") -> dict[str, Any]:
    """``kept``: which per-request rows requests/ holds (``all``, ``sample:N``, ``none``)."""
    from sim.capacity import overload_warnings

    variants = {}
    for name, variant in result.variants.items():
        run = variant.scenario.run
        variants[name] = {
            "replications": len(variant.runs),
            "duration": run.duration,
            "warmup": run.warmup,
            "overload": overload_warnings(variant.plan) if variant.plan is not None else [],
            "metrics": {
                metric: {
                    "mean": _number(e.mean),
                    "ci95": [_number(e.low), _number(e.high)],
                    "values": [_number(v) for v in e.values],
                }
                for metric, e in variant.estimates.items()
            },
        }
    document = {"format": FORMAT, "records": records.FORMAT, "scenario": result.scenario, "source": result.source,
                "seed": result.seed, "variants": variants}
    if kept != "all":  # absent when every row is kept, so earlier summaries keep their bytes
        document["records_kept"] = kept
    return document


def resolved_document(scenario: Scenario, base_dir: Path = Path("."), plan: Optional[Plan] = None) -> dict[str, Any]:
    """The scenario as run: every value a profile supplied is written out, so the file alone
    says what was simulated (and loads back as an equivalent scenario). ``plan``: the scenario
    compiled (compiled here when not given); ``base_dir``: the scenario file's folder, which its
    calibration and trace files are relative to."""
    document = scenario.model_dump(mode="json", by_alias=True, exclude={"variants"})
    plan = plan if plan is not None else compile_plan(scenario, base_dir=base_dir)
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
    _absolute_host_costs(document, base_dir)
    return document


def _absolute_host_costs(node: Any, base_dir: Path) -> None:
    """A calibrated ``send_cost`` / ``receive_cost`` anywhere (hardware or topology links): its file from anywhere."""
    if isinstance(node, list):
        for item in node:
            _absolute_host_costs(item, base_dir)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("send_cost", "receive_cost") and isinstance(value, dict) and value.get("kind") == "calibrated":
                node[key] = {"kind": "calibrated", "file": str((base_dir / value["file"]).resolve()),
                             "entry": value["entry"]}
            else:
                _absolute_host_costs(value, base_dir)


class ResultsError(ValueError):
    """A results folder that cannot be read, or cannot be written where asked (one line)."""


def is_results_folder(path: Path) -> bool:
    """Whether ``path`` holds dgsim results: a summary.json whose ``format`` is a dgsim summary's."""
    try:
        document = json.loads((path / "summary.json").read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and str(document.get("format", "")).startswith("dgsim-summary/")


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that results cannot replace (before any work is done): ResultsError."""
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out}: is a file, not a folder; give a folder for the results")
    if out.is_dir() and any(e.name not in OWNED + HARNESS for e in out.iterdir()) and not is_results_folder(out):
        raise ResultsError(f"--out {out}: holds files that are not dgsim results (no summary.json of format "
                           f"dgsim-summary); choose a new or empty folder")


def write_results(result: ExperimentResult, out: Path, base_dir: Path = Path("."), keep: str = "all") -> Path:
    """Write the results folder atomically; return the path of summary.json.

    ``keep`` (``sim.metrics.sink.RecordsChoice`` text): every request's row, a uniform sample of N per
    variant (chosen from the run's seed, so the same run keeps the same rows), or none.

    Raises ResultsError (one line: why, and where the previous and new results are) on failure.
    """
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out}: is a file, not a folder; no results written")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = _fresh(out, "new")
    except OSError as error:
        raise ResultsError(f"--out {out}: cannot write beside it ({_why(error)}); no results written") from None
    try:
        _write_into(result, staging, base_dir, keep)
    except BaseException as error:  # also an interruption: no half-written folder is left behind
        shutil.rmtree(staging, ignore_errors=True)
        if not isinstance(error, OSError):
            raise
        kept = f"; the previous results in {out}/ are intact" if out.exists() else ""
        raise ResultsError(f"--out {out}: cannot write results ({_why(error)}); none written{kept}") from None
    try:
        _swap(staging, out)
    except OSError as error:
        raise ResultsError(f"--out {out}: cannot move the new results into place ({_why(error)}); they are in "
                           f"{staging}/ and the previous results in {out}/ are intact") from None
    return out / "summary.json"


def _write_into(result: ExperimentResult, folder: Path, base_dir: Path, keep: str) -> None:
    from sim.metrics.sink import RecordsChoice
    from sim.model.timeseries import write_timeseries

    choice = RecordsChoice.parse(keep)
    (folder / "requests").mkdir()
    (folder / "resolved").mkdir()
    for name, variant in result.variants.items():
        target = folder / "requests" / f"{name}.parquet"
        if variant.record_files:
            _merge_records(variant.record_files, target, choice, result.seed)
        else:
            frame = variant.frame
            frame = frame.assign(variant=_variant_column(name, len(frame)))[["variant"] + [c for c in frame.columns
                                                                                       if c != "variant"]]
            if choice.kind != "none":
                records.write_parquet(_sample(frame, choice, result.seed), target)
        if variant.timeseries is not None:
            write_timeseries(folder, name, variant.timeseries)
        resolved = resolved_document(variant.scenario, base_dir, variant.plan)
        (folder / "resolved" / f"{name}.yaml").write_bytes(yaml.safe_dump(resolved, sort_keys=False).encode())
    text = json.dumps(summary_document(result, str(choice)), sort_keys=True, indent=1, allow_nan=False)
    (folder / "summary.json").write_bytes((text + "\n").encode())


def _sample(frame, choice, seed: int):
    """The rows ``choice`` keeps of ``frame``: all, or N chosen uniformly from the run's seed."""
    if choice.kind == "sample" and len(frame) > choice.n:
        rows = np.random.default_rng([seed, 0x5A3]).choice(len(frame), size=choice.n, replace=False)
        return frame.iloc[np.sort(rows)]
    return frame


def _merge_records(files, target: Path, choice, seed: int) -> None:
    """One variant's streamed per-replication files as ``requests/<variant>.parquet``.

    Every row: one file is linked as it is; several are copied a row group at a time (memory stays at
    one row group).
    A sample: each replication kept a uniform reservoir of N; N of those are chosen as above."""
    import pandas as pd
    import pyarrow.parquet as pq

    present = [f for f in files if Path(f).exists()]
    if choice.kind == "none" or not present:
        return
    if choice.kind == "sample":
        frame = pd.concat([pd.read_parquet(f) for f in present], ignore_index=True)
        frame = frame.sort_values(["replication", "id"], kind="stable").reset_index(drop=True)
        records.write_parquet(_sample(frame, choice, seed), target)
        return
    if len(present) == 1:  # one replication's file is the variant's table as it is: linked, not rewritten
        _place(Path(present[0]), target)
        return
    writer = None
    try:
        for file in present:
            source = pq.ParquetFile(file)
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                if writer is None:
                    writer = pq.ParquetWriter(target, table.schema, **records.parquet_options(table.schema))
                writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _place(file: Path, target: Path) -> None:
    """``file``'s bytes at ``target``: a hard link where the file system allows one, else a copy."""
    try:
        os.link(file, target)
    except OSError:
        shutil.copyfile(file, target)


def _variant_column(name: str, n: int):
    import pandas as pd

    return pd.Categorical([name] * n, categories=[name])


def _swap(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; entries of an old ``out`` outside the format move along."""
    if not out.exists():
        os.rename(staging, out)
        return
    moved = []
    try:
        for entry in sorted(out.iterdir()):
            if entry.name not in OWNED:
                os.rename(entry, staging / entry.name)
                moved.append(entry.name)
        old = _fresh(out, "old")
        os.rename(out, old / out.name)
    except OSError:
        for name in moved:
            os.rename(staging / name, out / name)
        raise
    try:
        os.rename(staging, out)
    except OSError:
        os.rename(old / out.name, out)
        for name in moved:
            os.rename(staging / name, out / name)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fresh(out: Path, what: str) -> Path:
    """An empty folder beside ``out`` for this process (same file system, so renames are atomic)."""
    folder = out.parent / f".{out.name}.{what}-{os.getpid()}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    return folder


def _why(error: OSError) -> str:
    return error.strerror or str(error)


@dataclass(frozen=True)
class SummaryFile:
    """summary.json as read back: estimates per variant and metric."""

    path: Path
    scenario: str
    source: str
    seed: int
    variants: dict[str, dict[str, Estimate]]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _Metric(_Strict):
    mean: Optional[float]
    ci95: list[Optional[float]] = Field(min_length=2, max_length=2)
    values: list[Optional[float]]


class _Variant(_Strict):
    metrics: dict[str, _Metric]


class _Summary(_Strict):
    format: str
    scenario: str
    source: str
    seed: int
    variants: dict[str, _Variant]


def read_summary(path: Path) -> SummaryFile:
    """summary.json of a results folder (or the file itself); ResultsError with one line otherwise."""
    path = path / "summary.json" if path.is_dir() else path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ResultsError(f"{path}: no summary.json here (run 'dgsim run' or 'dgsim hil run' first)") from None
    except OSError as error:
        raise ResultsError(f"{path}: cannot read ({_why(error)})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ResultsError(f"{path}: not a summary.json (not UTF-8 text: byte {error.start})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:
        raise ResultsError(f"{path}: not a summary.json (nested too deeply)") from None
    found = document.get("format") if isinstance(document, dict) else None
    if found == "dgsim-summary/1":
        raise ResultsError(f"{path}: format: 'dgsim-summary/1' was written by an older dgsim whose metric names "
                           f"differ (utilisation.<pool> is now utilisation.pool.<pool>); expected '{FORMAT}': "
                           f"run it again with this dgsim")
    if found != FORMAT:
        got = repr(found) if isinstance(document, dict) else f"a JSON {type(document).__name__}"
        raise ResultsError(f"{path}: format: expected '{FORMAT}', got {got}")
    try:
        summary = _Summary.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
        raise ResultsError(f"{path}: {where}: {first['msg'].lower()}, got {first['input']!r:.60}{more}") from None
    nan = math.nan

    def value(v: Optional[float]) -> float:
        return nan if v is None else float(v)

    variants = {
        name: {
            metric: Estimate(value(m.mean), value(m.ci95[0]), value(m.ci95[1]), tuple(value(v) for v in m.values))
            for metric, m in body.metrics.items()
        }
        for name, body in summary.variants.items()
    }
    return SummaryFile(path, summary.scenario, summary.source, summary.seed, variants)
