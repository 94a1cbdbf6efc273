"""The load axis: what "more load" means for a scenario, in the workload's own units.

Capacity is stated the way a planner counts load: camera streams for a
periodic source, requests per second for a Poisson, gamma or MMPP source.
A ``LoadAxis`` turns a value on that axis into ``--set`` overrides of the
workload, so a probe is an ordinary scenario (the same validation, the same
random streams) and a sweep point could have been typed on the command line:

- one periodic source: its ``streams`` (whole numbers);
- one Poisson or gamma source: its ``rate``;
- one MMPP source: its mean rate, every state's rate scaled together;
- several sources: a factor of the scenario's load, applied to each source
  (streams rounded, at least one);
- a trace replay cannot be scaled here: its timestamps are the load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.scenario.errors import Problem, ScenarioError
from sim.scenario.schema import GammaSource, MmppSource, PeriodicSource, PoissonSource, Scenario, TraceSource

STREAMS, PER_SECOND, FACTOR = "streams", "requests/s", "x scenario load"


@dataclass(frozen=True)
class LoadAxis:
    """Load in ``unit``; ``base`` is the scenario's own load on this axis."""

    unit: str
    base: float
    whole: bool  # only whole numbers are loads (camera streams)
    sources: tuple  # the scenario's source specs, in order

    def factor(self, value: float) -> float:
        return value / self.base

    def snap(self, value: float, up: bool = False) -> float:
        """The nearest load that exists on this axis (whole streams, at least one)."""
        if not self.whole:
            return value
        return float(max(1, math.ceil(value - 1e-9) if up else math.floor(value + 1e-9)))

    def overrides(self, value: float) -> list[str]:
        """``dotted.path=value`` overrides that set the workload to ``value``."""
        f = self.factor(value)
        out = []
        for source in self.sources:
            path = f"workload.sources.{source.name}"
            if isinstance(source, PeriodicSource):
                streams = int(value) if self.unit == STREAMS else max(1, round(source.streams * f))
                out.append(f"{path}.streams={streams}")
            elif isinstance(source, (PoissonSource, GammaSource)):
                out.append(f"{path}.rate={source.rate * f!r}/s")
            elif isinstance(source, MmppSource):
                out.append(f"{path}.rates=[{', '.join(f'{r * f!r}/s' for r in source.rates)}]")
        return out

    def arrival_rate(self, value: float) -> float:
        """Mean requests per second offered at ``value``."""
        f = self.factor(value)
        total = 0.0
        for source in self.sources:
            if isinstance(source, PeriodicSource):
                streams = int(value) if self.unit == STREAMS else max(1, round(source.streams * f))
                total += streams * _mean_rate(source)
            else:
                total += _mean_rate(source) * f
        return total


def load_axis(scenario: Scenario, label: str) -> LoadAxis:
    """The load axis of a resolved scenario; ScenarioError when it cannot be scaled."""
    sources = tuple(scenario.workload.sources)
    for i, source in enumerate(sources):
        if isinstance(source, TraceSource):
            raise ScenarioError([Problem(
                label, f"workload.sources[{i}]",
                f"trace replay '{source.name}' cannot be scaled by dgsim: its timestamps are the load; "
                f"sweep its speedup instead (dgsim sweep ... --grid workload.sources.{source.name}.speedup=1,2,4)")])
    if len(sources) == 1:
        (source,) = sources
        if isinstance(source, PeriodicSource):
            return LoadAxis(STREAMS, float(source.streams), True, sources)
        return LoadAxis(PER_SECOND, _mean_rate(source), False, sources)
    return LoadAxis(FACTOR, 1.0, False, sources)


def _mean_rate(source) -> float:
    if isinstance(source, PeriodicSource):
        low, high = source.rate if isinstance(source.rate, tuple) else (source.rate, source.rate)
        return (low + high) / 2
    if isinstance(source, MmppSource):
        return sum(r * d for r, d in zip(source.rates, source.dwell)) / sum(source.dwell)
    return source.rate
