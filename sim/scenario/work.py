"""What a run will cost, judged before it starts.

A scenario can be valid and still ask for more than a machine can give:
``rate: 1e7/s`` for a day, a million cameras, ten thousand replications.
Each is physical on its own (the schema bounds only what is not), but the
product decides how long the simulation runs and how much memory it holds.
``estimate_work`` computes that product from the scenario alone, without
drawing a single arrival:

    work = expected arrivals per replication x stages x replications

in request-stages (one request passing one stage is a handful of simulator
events), and a rough peak memory: the arrival arrays and per-request
records of one replication. The run command compares ``work`` with a limit
and refuses above it, printing ``WorkEstimate.describe()`` and the flag that
overrides the limit.

Expected arrivals per source: periodic, streams x mean rate x duration (plus
one frame per stream for the phase); poisson and gamma, rate x duration;
mmpp, the dwell-weighted mean rate x duration; trace, the rows that fall
within the duration (the file is read). These are expectations: a random
run draws about as many, within a few standard deviations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sim.scenario.schema import GammaSource, MmppSource, PeriodicSource, PoissonSource, Scenario, TraceSource

# Measured (whole runs on the project's shared 2-core machine, reports/streamed-records.md): an
# hour of video-analytics-64 dpu-offload (6.3e6 arrivals x 5 stages = 3.2e7 request-stages) cost
# ~1,000 CPU seconds in session 3 (~3e4 request-stages per CPU second) and 240 in session 6
# (~1.3e5; that VM ran faster, and the model's path per request is 0.7x as long). The city
# (scenarios/city-10k.yaml) costs ~1.7x more per request-stage. The shipped scenarios ask for
# 3e5-6e5 request-stages per run; the limit lets an hour of the shipped video pipeline through
# and stops what would take more than a quarter of an hour to an hour, depending on the machine.
DEFAULT_WORK_LIMIT = 50_000_000  # request-stages: ~6 CPU minutes (session 6) to ~28 (session 3)
# Memory that grows with the run when records stream (`dgsim run`; reports/streamed-records.md,
# "session 4"): arrivals as time + source (10 B), prefilter verdicts (1 B per filtering stage), the
# summary's columns (id, outcome, latency: 9 B + 1 B per stage, and a stage's wait and service,
# 16 B, for each request that started it; sim.metrics.columns). These constants give the upper
# end (every stage started, a filtering stage). A fixed ~0.4 GB (interpreter, libraries, the
# Parquet writer's buffers) comes on top.
BYTES_PER_ARRIVAL = 20
BYTES_PER_REQUEST_STAGE = 17


@dataclass(frozen=True)
class WorkEstimate:
    """The expected size of a run (one variant, every replication)."""

    arrivals: float  # expected per replication
    stages: int
    replications: int

    @property
    def work(self) -> float:
        """Request-stages over every replication: what the limit is compared with."""
        return self.arrivals * self.stages * self.replications

    @property
    def bytes(self) -> float:
        """Rough memory that one replication adds as it runs, records streamed (parallel replications each add this)."""
        return self.arrivals * (BYTES_PER_ARRIVAL + BYTES_PER_REQUEST_STAGE * self.stages)

    def exceeds(self, limit: float = DEFAULT_WORK_LIMIT) -> bool:
        return self.work > limit

    def describe(self) -> str:
        """One line: the estimate and where it comes from."""
        return (f"about {self.work:.3g} request-stages ({self.arrivals:.3g} arrivals x {self.stages} stages x "
                f"{self.replications} replications) and about {_bytes(self.bytes)} of memory per replication")


def total(estimates: Iterable[WorkEstimate]) -> float:
    """The work of several variants run together."""
    return sum(e.work for e in estimates)


def estimate_work(scenario: Scenario, base_dir: Path = Path(".")) -> WorkEstimate:
    """The expected work of ``scenario`` (a resolved variant); ``base_dir`` holds its trace files."""
    duration = scenario.run.duration
    arrivals = sum(expected_arrivals(source, duration, base_dir) for source in scenario.workload.sources)
    return WorkEstimate(arrivals, len(scenario.pipeline.stages), scenario.run.replications)


def expected_arrivals(source, duration: float, base_dir: Path = Path(".")) -> float:
    """Expected arrivals of one source in ``duration`` seconds, computed, not drawn."""
    if isinstance(source, PeriodicSource):
        low, high = source.rate if isinstance(source.rate, tuple) else (source.rate, source.rate)
        return source.streams * ((low + high) / 2 * duration + 1)
    if isinstance(source, (PoissonSource, GammaSource)):
        return source.rate * duration
    if isinstance(source, MmppSource):
        pairs = list(zip(source.rates, source.dwell))
        weight = sum(d for _, d in pairs)
        return sum(r * d for r, d in pairs) / weight * duration if weight > 0 else 0.0
    if isinstance(source, TraceSource):
        from sim.workload import TraceError, read_trace

        try:
            times, _ = read_trace(source, base_dir / source.file)
        except TraceError:
            return 0.0  # the plan reports the file; nothing will be drawn from it
        return float((times < duration).sum())
    raise TypeError(f"unknown source {source!r}")


def _bytes(size: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size:.0f} B"
