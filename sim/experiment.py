"""An experiment: every variant of a scenario, over several replications.

Replication ``r`` of every variant uses the same seed material, so designs
are compared on common random numbers: the same arrivals, the same
prefilter decisions and, where stages match, the same service-time streams.
Same scenario and seed give the same numbers, byte for byte.

Each variant's ``Plan`` is compiled once (``sim.session``) and is what
travels: worker processes receive the plan, not the scenario file. When
the run is interrupted (an exception, Ctrl-C, SIGTERM turned into an
exception by the command), pending replications are cancelled and the
worker processes are terminated before the exception goes on, so no
process outlives the command.
"""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import pandas as pd

from sim.metrics.summary import Estimate, combine, summarise
from sim.model import timeseries
from sim.metrics.sink import RecordsChoice, RequestSink, TableNames
from sim.model.collect import collect, usage_of
from sim.model.system import System
from sim.plan import Plan
from sim.scenario.load import ScenarioFile
from sim.scenario.schema import Scenario
from sim.workload import generate_arrivals

Progress = Callable[[str, int, float], None]


@dataclass(frozen=True)
class VariantResult:
    name: str
    scenario: Scenario
    frame: pd.DataFrame  # all replications, column ``replication``
    runs: tuple[dict[str, float], ...]
    estimates: dict[str, Estimate]
    plan: Optional[Plan] = None  # the compiled design that ran (None: the writer compiles it)
    timeseries: Optional[pd.DataFrame] = None  # utilisation and queues over time, all replications
    record_files: tuple[Path, ...] = ()  # streamed per-request rows, one file per replication (then ``frame`` is empty)


@dataclass(frozen=True)
class ExperimentResult:
    scenario: str
    source: str  # "simulation" or "measurement"
    seed: int
    variants: dict[str, VariantResult]


@dataclass(frozen=True)
class Replication:
    """One simulated replication: its request table, its metrics and (when sampled) its time series.

    With streamed records ``frame`` is empty (its columns only: nothing per request stays in memory)
    and the rows kept are in ``records`` (a Parquet file)."""

    frame: pd.DataFrame
    metrics: dict[str, float]
    timeseries: Optional[pd.DataFrame] = None
    records: Optional[Path] = None


@dataclass(frozen=True)
class RecordsTarget:
    """Stream per-request rows while replications run: which rows (``choice``), and where."""

    choice: RecordsChoice
    folder: Path

    def path(self, variant: str, replication: int) -> Path:
        return self.folder / variant / f"r{replication}.parquet"


def simulate_replication(plan: Plan, replication: int, progress: Optional[Callable[[float], None]] = None,
                         sample_every: Optional[float] = None, records: Optional[RecordsTarget] = None,
                         variant: str = "") -> Replication:
    """Simulate replication ``replication`` of a plan (``sample_every``: time-series interval, s).

    With ``records`` each request is handed to a ``RequestSink`` when it ends, so memory holds only
    the requests in flight and compact summary columns, whatever the simulated duration."""
    run = plan.scenario.run
    arrivals = generate_arrivals(plan.scenario.workload, run.duration, run.seed, replication, plan.base_dir)
    sink = None
    if records is not None:
        sink = RequestSink(TableNames.of(plan, arrivals), arrivals, replication, variant, records.choice,
                           records.path(variant, replication), seed=run.seed)
    try:
        output = System(plan, arrivals, run.seed, replication, sample_every, sink).run(progress)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    if sink is None:
        frame, usage = collect(output, replication)
        return Replication(frame, summarise(frame, usage, run.warmup, run.duration), output.timeseries)
    kept = sink.close()
    metrics = summarise(kept.columns, usage_of(output), run.warmup, run.duration)
    return Replication(kept.columns.rows(slice(0, 0)).frame(replication), metrics, output.timeseries, kept.path)


def run_replication(plan: Plan, replication: int, progress: Optional[Callable[[float], None]] = None
                    ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Simulate replication ``replication`` of a plan: its request table and metrics."""
    done = simulate_replication(plan, replication, progress)
    return done.frame, done.metrics


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent, which cancels and terminates them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _replication_task(plan: Plan, replication: int, sample_every: Optional[float],
                      records: Optional[RecordsTarget], variant: str) -> Replication:
    return simulate_replication(plan, replication, None, sample_every, records, variant)


def run_plans(
    plans: Mapping[str, Plan],
    replications: Optional[range] = None,
    progress: Optional[Progress] = None,
    jobs: int = 1,
    sample_every: Optional[float] = None,
    records: Optional[RecordsTarget] = None,
    executor=None,
) -> dict[str, VariantResult]:
    """Simulate each variant's plan over ``replications`` (default: each one's run.replications).

    With ``jobs`` > 1 the replications run in that many worker processes;
    the results are identical to a sequential run, only sooner.
    ``sample_every``: record utilisation and queue time series at this interval (s);
    ``records``: stream per-request rows to files instead of keeping them (bounded memory);
    ``executor``: a ``sim.explore.executors`` executor (e.g. a Dask cluster) to run the replications on
    instead (records then travel back in memory: remote workers cannot write this machine's files).
    """
    tasks = [(v, r) for v, plan in plans.items()
             for r in (replications if replications is not None else range(plan.scenario.run.replications))]
    outputs: dict[tuple[str, int], Replication] = {}
    if executor is not None:
        outputs = _run_on(executor, plans, tasks, progress, sample_every)
    elif jobs > 1 and len(tasks) > 1:
        outputs = _run_parallel(plans, tasks, min(jobs, len(tasks)), progress, sample_every, records)
    else:
        for variant, replication in tasks:
            report = (lambda f, v=variant, r=replication: progress(v, r, f)) if progress else None
            outputs[variant, replication] = simulate_replication(plans[variant], replication, report, sample_every,
                                                                 records, variant)
    results = {}
    for variant, plan in plans.items():
        done = [outputs[task] for task in tasks if task[0] == variant]
        runs = tuple(d.metrics for d in done)
        frame = pd.concat([d.frame for d in done], ignore_index=True)
        frame["variant"] = pd.Categorical([variant] * len(frame), categories=[variant])
        series = [d.timeseries for d in done if d.timeseries is not None]
        results[variant] = VariantResult(variant, plan.scenario, frame, runs, combine(runs), plan,
                                         timeseries.combine_tables(series) if series else None,
                                         tuple(d.records for d in done if d.records is not None))
    return results


class ReplicationFailed(RuntimeError):
    """A replication that raised on a remote worker; the message names it and the error."""


def _replication_item(item: tuple) -> Replication:
    plan, replication, sample_every, variant = item
    return simulate_replication(plan, replication, None, sample_every, None, variant)


def _run_on(executor, plans: Mapping[str, Plan], tasks: list[tuple[str, int]], progress: Optional[Progress],
            sample_every: Optional[float]) -> dict[tuple[str, int], Replication]:
    items = [(plans[v], r, sample_every, v) for v, r in tasks]
    done = executor.run(_replication_item, items,
                        (lambda i: progress(*tasks[i], 1.0)) if progress else None)
    failed = [f"{v} replication {r}: {d.error}" for (v, r), d in zip(tasks, done) if d.error is not None]
    if failed:
        raise ReplicationFailed("; ".join(failed))
    return {task: d.value for task, d in zip(tasks, done)}


def _run_parallel(plans: Mapping[str, Plan], tasks: list[tuple[str, int]], workers: int,
                  progress: Optional[Progress], sample_every: Optional[float],
                  records: Optional[RecordsTarget]) -> dict[tuple[str, int], Replication]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["sim.experiment"])
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init)
    outputs = {}
    try:
        futures: dict[Future, tuple[str, int]] = {pool.submit(_replication_task, plans[v], r, sample_every, records, v): (v, r)
                                                  for v, r in tasks}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                outputs[futures[future]] = future.result()
                if progress:
                    progress(*futures[future], 1.0)
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)
    return outputs


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and terminate the workers now (not after their replication)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    manager = getattr(pool, "_executor_manager_thread", None)  # (shutdown forgets it)
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    # The pool's manager thread sees its workers gone and closes its wake-up pipe; joined here, it cannot
    # do so while Python's exit hook writes to that pipe (a race that prints "Bad file descriptor" with
    # a traceback at exit: CPython issues 84176 and 132969)
    if manager is not None and manager.is_alive():
        manager.join(timeout=5)


def run_variants(
    scenario_file: ScenarioFile,
    variants: Sequence[str],
    replications: Optional[range] = None,
    progress: Optional[Progress] = None,
    jobs: int = 1,
) -> dict[str, VariantResult]:
    """``run_plans`` for variants of a loaded file (each plan compiled once per file)."""
    return run_plans({v: scenario_file.plan(v) for v in variants}, replications, progress, jobs)


def run_variant(scenario_file: ScenarioFile, variant: str, progress: Optional[Progress] = None,
                replications: Optional[range] = None, jobs: int = 1) -> VariantResult:
    """Simulate one variant over ``replications`` (default: the scenario's run.replications)."""
    return run_variants(scenario_file, [variant], replications, progress, jobs)[variant]


def simulate_plans(plans: Mapping[str, Plan], progress: Optional[Progress] = None, jobs: int = 1,
                   records: Optional[RecordsTarget] = None, executor=None) -> ExperimentResult:
    """Every plan over its own run.replications: the result ``dgsim run`` reports and writes
    (with time series of utilisation and queues every ``timeseries.DEFAULT_INTERVAL``)."""
    results = run_plans(plans, None, progress, jobs, timeseries.DEFAULT_INTERVAL,
                        records if executor is None else None, executor)
    first = next(iter(results.values())).scenario
    return ExperimentResult(first.name, "simulation", first.run.seed, results)


def simulate(
    scenario_file: ScenarioFile,
    variants: Optional[Sequence[str]] = None,
    progress: Optional[Progress] = None,
    jobs: int = 1,
) -> ExperimentResult:
    names = list(variants) if variants else scenario_file.variant_names
    return simulate_plans({v: scenario_file.plan(v) for v in names}, progress, jobs)
