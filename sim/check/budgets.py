"""Budgets: the scenario's ``slo`` section as a flat list of checks.

An SLO says "p99 latency at most 30 ms, throughput at least 500/s, at most
1 % dropped, the GPU at most 90 % busy", for the whole workload and per
request class. Each such sentence becomes one ``Budget``: the metric it
constrains (a name from ``sim.metrics.summary``), the bound, and whether the
bound is a ceiling (``max``) or a floor (``min``). One budget is one test
case in CI.

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

from sim.metrics.summary import Estimate
from sim.scenario.schema import Budgets, Slo

MAX, MIN = "max", "min"
HIGHER_IS_BETTER = ("throughput", "goodput")
_NAMES = {"rate.drop": "drop rate", "rate.miss": "miss rate", "rate.filter": "filter rate"}


@dataclass(frozen=True)
class Budget:
    metric: str
    bound: float
    direction: str  # MAX: metric <= bound; MIN: metric >= bound
    label: str
    reference: Optional[Estimate] = None  # regression checks: the baseline's estimate
    factor: float = 1.0  # regression checks: bound = factor * reference.mean
    paired: bool = False  # regression checks: compare replication r with the reference's r

    @property
    def text(self) -> str:
        return f"{'<=' if self.direction == MAX else '>='} {show(self.metric, self.bound)}"


def budget(metric: str, bound: float) -> Budget:
    """A budget on ``metric``, its direction and label read from the name."""
    rest, klass = metric, ""
    if metric.startswith("class."):
        _, klass, rest = metric.split(".", 2)
    label = _NAMES.get(rest) or rest.replace(".", " ").replace("p999", "p99.9")
    direction = MIN if rest in HIGHER_IS_BETTER else MAX
    return Budget(metric, bound, direction, f"class {klass} {label}" if klass else label)


def budgets_of(slo: Slo) -> list[Budget]:
    """Every budget an SLO sets: overall first, then per class, in schema order."""
    out = _of(slo, "")
    for name, budgets in slo.classes.items():
        out += _of(budgets, name)
    return out


def _of(budgets: Budgets, klass: str) -> list[Budget]:
    prefix = f"class.{klass}." if klass else ""
    latency = {key: getattr(budgets.latency, key) for key in type(budgets.latency).model_fields}
    out = [budget(f"{prefix}latency.{key}", value) for key, value in latency.items() if value is not None]
    for field, metric in (("throughput_min", "throughput"), ("drop_rate_max", "rate.drop"),
                          ("miss_rate_max", "rate.miss"), ("filter_rate_max", "rate.filter")):
        value = getattr(budgets, field)
        if value is not None:
            out.append(budget(prefix + metric, value))
    for target, value in budgets.utilisation_max.items():
        label = f"class {klass} utilisation {target}" if klass else f"utilisation {target}"
        out.append(Budget(f"utilisation.{target}", value, MAX, label))
    return out


def show(metric: str, value: float, signed: bool = False) -> str:
    """A metric's value in the unit people read it in: ms, %, /s."""
    if value is None or math.isnan(value):
        return "-"
    sign = "+" if signed else ""
    if ".latency." in f".{metric}" or metric.endswith((".wait", ".service")):
        return f"{value * 1e3:{sign}.3f} ms"
    if metric.startswith(("rate.", "utilisation.")) or ".rate." in metric:
        return f"{value * 100:{sign}.2f} %"
    if metric.endswith(("throughput", "goodput")):
        return f"{value:{sign}.1f}/s"
    return f"{value:{sign}.4g}"
