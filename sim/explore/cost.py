"""What a design costs per hour, from the device profiles' cited prices or the scenario's own.

A pool costs ``count`` devices (``count x servers`` cores for a pool of a
per-core part such as the host CPU) at an hourly price: the scenario's
``cost.per_hour`` for the pool when given, else the profile's cloud price,
else its list price spread over ``cost.amortisation_hours`` (three years of
use by default). Only the pools a design places stages on are counted: a
pool the design leaves idle is hardware it would not buy for this job.
A pool with no price makes the total unknown (NaN), and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.plan import Plan
from sim.profiles import PRICES

DEFAULT_AMORTISATION_HOURS = 3 * 8760.0


@dataclass(frozen=True)
class PoolCost:
    pool: str
    usd_per_hour: float  # NaN when no price is known
    basis: str  # where the price came from


@dataclass(frozen=True)
class DesignCost:
    pools: tuple[PoolCost, ...]

    @property
    def usd_per_hour(self) -> float:
        return sum(p.usd_per_hour for p in self.pools) if self.pools else math.nan

    @property
    def unpriced(self) -> list[str]:
        return [p.pool for p in self.pools if math.isnan(p.usd_per_hour)]


def design_cost(plan: Plan) -> DesignCost:
    override = plan.scenario.cost
    hours = override.amortisation_hours if override else DEFAULT_AMORTISATION_HOURS
    given = override.per_hour if override else {}
    used = dict.fromkeys(pool for stage in plan.stages for pool in stage.pools)
    out = []
    for name in used:
        pool = plan.pools[name]
        price = PRICES.get(pool.profile)
        units = pool.count * (pool.servers if price is not None and price.per == "core" else 1)
        if name in given:
            out.append(PoolCost(name, pool.count * given[name], "scenario cost.per_hour"))
        elif price is not None and price.cloud_usd_per_hour is not None:
            out.append(PoolCost(name, units * price.cloud_usd_per_hour, f"cloud: {price.cloud_source}"))
        elif price is not None and price.list_usd is not None:
            out.append(PoolCost(name, units * price.list_usd / hours,
                                f"list over {hours:g} h: {price.list_source}"))
        else:
            out.append(PoolCost(name, math.nan, f"no price for profile '{pool.profile}'; set cost.per_hour.{name}"))
    return DesignCost(tuple(out))
