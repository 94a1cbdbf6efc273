"""Which kind of link carries a message, by its size.

Small messages pay mostly fixed per-message costs, large ones mostly
bandwidth, so the best channel depends on size. ``BySize`` walks a list of
size bands and picks the first band's link kind that the message fits
under; the seed design's bands are: below 512 KB RPC over TCP, 512 KB to
4 MB shared memory, above that RDMA. When the preferred kind is not among
the links available between the two endpoints, the kinds of the larger
bands are tried in order, then those of the smaller bands, then the first
available link (a message too big for its favourite channel is better
served by a bulkier one than by a chattier one).

``CHANNELS`` maps each scenario kind (``by-size``, ``fixed``) to the
factory that builds its policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol, Sequence

from sim.registry import Registry


class ChannelPolicy(Protocol):
    def choose(self, size_bytes: float, available: Sequence[str]) -> str: ...


@dataclass(frozen=True)
class SizeBand:
    below: float
    use: str


SEED_BANDS = (
    SizeBand(below=512e3, use="tcp"),
    SizeBand(below=4e6, use="shm"),
    SizeBand(below=math.inf, use="rdma"),
)


@dataclass(frozen=True)
class BySize:
    bands: tuple[SizeBand, ...] = SEED_BANDS

    def choose(self, size_bytes: float, available: Sequence[str]) -> str:
        band = next((i for i, b in enumerate(self.bands) if size_bytes < b.below), len(self.bands) - 1)
        order = [b.use for b in self.bands[band:]] + [b.use for b in reversed(self.bands[:band])]
        return next((kind for kind in order if kind in available), available[0])


@dataclass(frozen=True)
class FixedChannel:
    kind: str

    def choose(self, size_bytes: float, available: Sequence[str]) -> str:
        return self.kind if self.kind in available else available[0]


class BandSettings(Protocol):
    below: Optional[float]
    use: str


class ChannelSettings(Protocol):
    """The scenario's channel section (``sim.scenario.schema.ChannelSelectionSpec``)."""

    kind: str
    bands: Sequence[BandSettings]
    use: Optional[str]


CHANNELS: Registry[Callable[[ChannelSettings], ChannelPolicy]] = Registry("channel policy")


@CHANNELS.register("by-size")
def _by_size(spec: ChannelSettings) -> ChannelPolicy:
    return BySize(tuple(SizeBand(b.below if b.below is not None else math.inf, b.use) for b in spec.bands))


@CHANNELS.register("fixed")
def _fixed(spec: ChannelSettings) -> ChannelPolicy:
    return FixedChannel(spec.use)
