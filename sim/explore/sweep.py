"""Sweeps: every variant at every grid point, replicated, cached, in a fixed order.

A cell is one variant at one point: the scenario file with the point's
overrides, resolved for the variant. Its result is the metrics of each of
its ``run.replications`` replications, cached in ``OUT/points/<key>.json``
where the key is a hash of the resolved scenario and of the contents of the
files it refers to (``grid.scenario_key``):
a rerun finds finished cells there and simulates only the rest, and two
cells that resolve to the same scenario are simulated once. A cell that
fails keeps its error; the others are kept and cached.

The table (``sweep.parquet``) has one row per variant x point, in grid
order then variant order, whatever order the cells finished in and on
however many workers: the point's parameters as columns (as typed), the
offered load in the workload's units, cost per hour, and every metric's
mean with its 95% interval (``m``, ``m.low``, ``m.high``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd

from sim.contract.metric_keys import ALL, Kind, MetricKey
from sim.explore.cost import design_cost
from sim.explore.executors import Executor
from sim.explore.grid import Axis, GridError, Point, points, scenario_key
from sim.explore.load import load_axis
from sim.explore.pareto import pareto_front
from sim.metrics.summary import combine
from sim.plan import compile_plan
from sim.scenario.errors import ScenarioError
from sim.scenario.load import ScenarioFile, load_scenario_file
from sim.scenario.schema import Scenario


THROUGHPUT = MetricKey(Kind.THROUGHPUT).name
P99 = MetricKey(Kind.LATENCY, ALL, "p99").name


@dataclass(frozen=True)
class Cell:
    point: Point
    variant: str
    scenario_file: ScenarioFile
    scenario: Scenario
    key: str


@dataclass(frozen=True)
class CellResult:
    runs: tuple[dict, ...] = ()
    error: Optional[str] = None
    cached: bool = False


def plan_cells(path: Path, overrides: Sequence[str], variants: Sequence[str], axes: Sequence[Axis],
               zipped: bool) -> list[Cell]:
    """Every cell, each point validated for every variant; GridError listing every problem."""
    problems = []
    for axis in axes:  # each value alone first, so that a problem names the --grid value that caused it
        found: dict[str, list[tuple[str, str]]] = {}
        for value in axis.values:
            try:
                load_scenario_file(path, [*overrides, f"{axis.path}={value}"])
            except ScenarioError as error:
                found[value] = [(p.path, p.message) for p in error.problems]
        shared = set.intersection(*(set(v) for v in found.values())) if len(found) == len(axis.values) else set()
        problems += [f"--grid {axis.path}: {where}: {message}" for where, message in sorted(shared)]
        problems += [f"--grid {axis.path}={value}: {where}: {message}"
                     for value, listed in found.items() for where, message in listed if (where, message) not in shared]
    if problems:
        raise GridError(list(dict.fromkeys(problems)))
    cells, digests = [], {}
    for point in points(axes, zipped):
        try:
            scenario_file = load_scenario_file(path, [*overrides, *point.overrides])
            for variant in variants:
                scenario = scenario_file.resolve(variant)
                cells.append(Cell(point, variant, scenario_file, scenario, scenario_key(scenario, path.parent, digests)))
        except ScenarioError as error:
            problems += [str(p) for p in error.problems]
    if problems:
        raise GridError(list(dict.fromkeys(problems)))
    return cells


def simulate_cell(task: tuple[ScenarioFile, str]) -> list[dict]:
    """Every replication's metrics of one cell (runs in a worker)."""
    from sim.experiment import run_variant

    scenario_file, variant = task
    return list(run_variant(scenario_file, variant).runs)


def run_cells(cells: Sequence[Cell], executor: Executor, cache: Path,
              finished: Optional[Callable[[int], None]] = None) -> list[CellResult]:
    """Results of every cell: from the cache, else simulated (and cached when they succeed)."""
    cache.mkdir(parents=True, exist_ok=True)
    by_key: dict[str, CellResult] = {}
    todo: list[Cell] = []
    for cell in cells:
        if cell.key in by_key or any(c.key == cell.key for c in todo):
            continue
        file = cache / f"{cell.key}.json"
        if file.exists():
            try:
                by_key[cell.key] = CellResult(tuple(json.loads(file.read_text())["runs"]), cached=True)
                continue
            except (OSError, ValueError, KeyError):
                pass  # unreadable: simulate it again
        todo.append(cell)
    count = {key: sum(c.key == key for c in cells) for key in {c.key for c in cells}}
    if finished:
        for key in by_key:
            for _ in range(count[key]):
                finished(-1)

    def done(index: int) -> None:
        if finished:
            for _ in range(count[todo[index].key]):
                finished(index)

    outcomes = executor.run(simulate_cell, [(c.scenario_file, c.variant) for c in todo], done)
    for cell, outcome in zip(todo, outcomes):
        if outcome.error:
            by_key[cell.key] = CellResult(error=outcome.error)
            continue
        by_key[cell.key] = CellResult(tuple(outcome.value))
        _write_atomic(cache / f"{cell.key}.json",
                      json.dumps({"runs": outcome.value, "variant": cell.variant,
                                  "settings": dict(cell.point.settings)}, sort_keys=True))
    return [by_key[c.key] for c in cells]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def sweep_table(cells: Sequence[Cell], results: Sequence[CellResult], axes: Sequence[Axis],
                pareto: bool = False) -> pd.DataFrame:
    """One row per cell, in cell order (see the module docstring for the columns)."""
    rows, metrics = [], set()
    estimates = []
    for cell, result in zip(cells, results):
        e = combine(result.runs) if result.runs else {}
        estimates.append(e)
        metrics |= set(e)
    for cell, result, e in zip(cells, results, estimates):
        row = {"point": cell.point.index, "variant": cell.variant}
        row.update({a.path: value for a, (_, value) in zip(axes, cell.point.settings)})
        try:
            axis = load_axis(cell.scenario, "")
            row.update(load=axis.base, load_unit=axis.unit, arrival_rate=axis.arrival_rate(axis.base))
        except ScenarioError:
            row.update(load=math.nan, load_unit="", arrival_rate=math.nan)
        cost = design_cost(compile_plan(cell.scenario, base_dir=cell.scenario_file.path.parent)).usd_per_hour
        row.update(status="failed" if result.error else "ok", error=result.error or "",
                   replications=len(result.runs), cost_per_hour=cost)
        for name in sorted(metrics):
            estimate = e.get(name)
            row[name] = estimate.mean if estimate else math.nan
            row[f"{name}.low"] = estimate.low if estimate else math.nan
            row[f"{name}.high"] = estimate.high if estimate else math.nan
        throughput = row.get(THROUGHPUT, math.nan)
        row["throughput_per_cost"] = throughput / cost if cost and not math.isnan(cost) else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    if pareto:
        table["pareto"] = pareto_flags(table)
    return table


def pareto_flags(table: pd.DataFrame) -> list[bool]:
    """Rows on the front of cost per hour vs p99 latency (both lower is better) among rows at the same load."""
    flags = [False] * len(table)
    p99 = table[P99] if P99 in table else pd.Series([math.nan] * len(table))
    groups = table["arrival_rate"].round(6).fillna(-1)
    for _, index in table.groupby(groups, sort=True).groups.items():
        index = list(index)
        ok = [i for i in index if table.at[i, "status"] == "ok"]
        front = pareto_front([(table.at[i, "cost_per_hour"], p99[i]) for i in ok], maximise=[False, False])
        for i, on in zip(ok, front):
            flags[i] = on
    return flags


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Parquet, written the same way every time (no index, no timestamps): same table, same bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path, compression="zstd")
