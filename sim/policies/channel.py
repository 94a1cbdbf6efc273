"""Which kind of link carries a message, by its size.

Small messages pay mostly fixed per-message costs, large ones mostly
bandwidth, so the best channel depends on size. ``BySize`` walks a list of
size bands and picks the first band's link kind that the message fits
under; the seed design's bands are: below 512 KB RPC over TCP, 512 KB to
4 MB shared memory, above that RDMA. When the preferred kind is not among
the links available between the two endpoints, the first available one in
the caller's order is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence


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

    def preferred(self, size_bytes: float) -> str:
        for band in self.bands:
            if size_bytes < band.below:
                return band.use
        return self.bands[-1].use

    def choose(self, size_bytes: float, available: Sequence[str]) -> str:
        wanted = self.preferred(size_bytes)
        return wanted if wanted in available else available[0]


@dataclass(frozen=True)
class FixedChannel:
    kind: str

    def choose(self, size_bytes: float, available: Sequence[str]) -> str:
        return self.kind if self.kind in available else available[0]
