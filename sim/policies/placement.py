"""Which device pools run each pipeline stage.

One pipeline, several designs: the seed design's CPU path and DPU offload
are two placements of the same stages.

- ``cpu-path``: stages with a GPU cost go to the GPU pools, everything else
  to the host CPU pools.
- ``dpu-offload``: stages with a GPU cost go to the GPU pools, stages with a
  DPU cost to the DPU pools, the rest to the host CPU.
- ``explicit``: only the map decides.

An explicit ``map`` entry overrides any strategy for its stage: a pool name,
a list of pools in order of preference (for local-first routing), or
``skip`` to leave the stage out of this design. A strategy places a stage
on every pool of the chosen kind, in the scenario's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from sim.registry import Registry

SKIP = "skip"

STRATEGIES: Registry[tuple[str, ...]] = Registry("placement strategy")
"""Each strategy's device kinds in order of preference for a stage's costs."""
STRATEGIES.register("cpu-path")(("gpu", "cpu"))
STRATEGIES.register("dpu-offload")(("gpu", "dpu", "cpu"))
STRATEGIES.register("explicit")(())


class PlacementError(ValueError):
    """A stage that no pool can run under the chosen placement."""


@dataclass(frozen=True)
class Placement:
    strategy: str
    overrides: Mapping[str, tuple[str, ...]]

    def place(
        self,
        stage: str,
        cost_kinds: Sequence[str],
        pool_kinds: Mapping[str, str],
    ) -> tuple[str, ...]:
        """Pools for ``stage`` in order of preference; empty means skipped.

        ``cost_kinds`` are the device kinds the stage has a cost for;
        ``pool_kinds`` maps each pool name to its device kind, in the
        scenario's order.
        """
        if stage in self.overrides:
            pools = self.overrides[stage]
            return () if pools == (SKIP,) else pools
        for kind in STRATEGIES[self.strategy]:
            if kind in cost_kinds:
                pools = tuple(name for name, k in pool_kinds.items() if k == kind)
                if pools:
                    return pools
        if self.strategy == "explicit":
            raise PlacementError(f"stage '{stage}' is not in the explicit placement map")
        raise PlacementError(
            f"stage '{stage}' has costs for {sorted(cost_kinds)} but the {self.strategy} placement "
            f"found no pool of those kinds among {sorted(set(pool_kinds.values()))}"
        )
