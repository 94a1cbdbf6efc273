"""Budgets: the scenario's ``slo`` section as a flat list of checks.

An SLO says "p99 latency at most 30 ms, throughput at least 500/s, at most
1 % dropped, the GPU at most 90 % busy", for the whole workload and per
request class. Each such sentence becomes one ``Budget``: the metric it
constrains (a ``MetricKey``), the bound, and whether the bound is a ceiling
(``max``) or a floor (``min``). One budget is one test case in CI. A
``utilisation_max`` target is a pool or a link: the hardware says which.

Devices are shared by every class, so a class's ``utilisation_max`` is
checked on the device's overall utilisation. A regression check against a
baseline is a budget too: its bound is the baseline's mean moved by the
tolerance, and it carries the baseline estimate (``reference``) so that
the baseline's own noise is accounted for (see ``verdict.against``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from sim.contract.metric_keys import ALL, Kind, MetricKey, Namespace, Subject
from sim.metrics.summary import Estimate
from sim.scenario.schema import Budgets, Hardware, Slo

MAX, MIN = "max", "min"
HIGHER_IS_BETTER = (Kind.THROUGHPUT, Kind.GOODPUT, Kind.REPLIES, Kind.AVAILABILITY)
_RATE_WORDS = {"drop": "drop rate", "miss": "miss rate", "filter": "filter rate", "unfinished": "unfinished rate",
               "fail": "fail rate"}
_LIMITS = (("throughput_min", MetricKey(Kind.THROUGHPUT)), ("drop_rate_max", MetricKey(Kind.RATE, ALL, "drop")),
           ("miss_rate_max", MetricKey(Kind.RATE, ALL, "miss")), ("filter_rate_max", MetricKey(Kind.RATE, ALL, "filter")),
           ("availability_min", MetricKey(Kind.AVAILABILITY)), ("degraded_rate_max", MetricKey(Kind.DEGRADED_RATE)),
           ("timeout_rate_max", MetricKey(Kind.TIMEOUT_RATE)))  # the last three: issue 13 (failures)


@dataclass(frozen=True)
class Budget:
    key: MetricKey
    bound: float
    direction: str  # MAX: metric <= bound; MIN: metric >= bound
    label: str
    reference: Optional[Estimate] = None  # regression checks: the baseline's estimate
    factor: float = 1.0  # regression checks: bound = factor * reference.mean
    paired: bool = False  # regression checks: compare replication r with the reference's r

    @property
    def metric(self) -> str:
        """The metric's name, as estimates are keyed."""
        return self.key.name

    @property
    def text(self) -> str:
        return f"{'<=' if self.direction == MAX else '>='} {show(self.key, self.bound)}"


def label(key: MetricKey) -> str:
    """How people call a metric: 'latency p99.9', 'class video drop rate', 'utilisation gpu'."""
    if key.kind is Kind.RATE:
        body = _RATE_WORDS[key.statistic]
    elif key.subject.namespace in (Namespace.STAGE, Namespace.POOL, Namespace.LINK):
        body = f"{key.kind.word} {key.subject.name}"
    else:
        body = key.kind.word if key.statistic is None else f"{key.kind.word} {key.statistic.replace('p999', 'p99.9')}"
    return f"class {key.subject.name} {body}" if key.subject.namespace is Namespace.CLASS else body


def budget(key: MetricKey, bound: float) -> Budget:
    """A budget on ``key``, its direction and label read from the key."""
    return Budget(key, bound, MIN if key.kind in HIGHER_IS_BETTER else MAX, label(key))


def budgets_of(slo: Slo, hardware: Optional[Hardware] = None) -> list[Budget]:
    """Every budget an SLO sets: overall first, then per class, in schema order.

    ``utilisation_max`` names a pool or a link; ``hardware`` says which (a
    name that is both gets a budget on each). Without ``hardware`` the
    utilisation budgets cannot be keyed and are left out: pass it wherever
    the budgets are checked.
    """
    out = _of(slo, ALL, hardware)
    for name, budgets in slo.classes.items():
        out += _of(budgets, Subject.of_class(name), hardware)
    return out


def _of(budgets: Budgets, subject: Subject, hardware: Optional[Hardware]) -> list[Budget]:
    latency = {key: getattr(budgets.latency, key) for key in type(budgets.latency).model_fields}
    out = [budget(MetricKey(Kind.LATENCY, subject, key), value) for key, value in latency.items() if value is not None]
    for field, key in _LIMITS:
        value = getattr(budgets, field)
        if value is not None:
            out.append(budget(key.with_subject(subject), value))
    if hardware is None:
        return out
    links = {link.name for link in hardware.links}
    for target, value in budgets.utilisation_max.items():
        where = [Subject.pool(target)] * (target in hardware.pools) + [Subject.link(target)] * (target in links)
        for resource in where:
            name = f"{resource.namespace.value} {target}" if len(where) > 1 else target
            text = f"utilisation {name}"
            out.append(Budget(MetricKey(Kind.UTILISATION, resource), value, MAX,
                              f"class {subject.name} {text}" if subject.namespace is Namespace.CLASS else text))
    return out


def show(key: MetricKey, value: float, signed: bool = False) -> str:
    """A metric's value in the unit people read it in: ms, %, /s."""
    if value is None or math.isnan(value):
        return "-"
    sign = "+" if signed else ""
    unit = key.unit
    if unit.symbol == "ms":
        return f"{value * unit.scale:{sign}.3f} ms"
    if unit.symbol == "%":
        return f"{value * unit.scale:{sign}.2f} %"
    if unit.symbol == "/s":
        return f"{value:{sign}.1f}/s"
    return f"{value * unit.scale:{sign}.4g}" + ("" if unit.symbol in ("jobs", "requests") else f" {unit.symbol}")
