"""Fewer garbage collections while a simulation runs.

A run allocates a few dozen short-lived objects per request (jobs, events,
callbacks) and, at width, keeps thousands of requests in flight. CPython's
cyclic collector runs every 700 net allocations (generation 0) and, every
100 of those, walks every object the process holds (generation 2: the
imported modules, the scenario, the plan, the devices), although the model
makes no reference cycles per request: reference counting frees it all.
Measured on the city scenario (scenarios/city-10k.yaml, 4,000 cameras) the
collector took 15-20% of the simulation's CPU time, and its share grows with
the number of devices (reports/streamed-records.md, "city scale").

``fewer_collections()`` brackets a run: it moves every object that exists
when the run starts out of the collector's sight (``gc.freeze()``: they are
the process's and the run's long-lived state) and collects generation 0
every ``YOUNG`` allocations instead of 700. Cycles are still collected, only
less often. Both settings are put back when the block ends, also on an
exception, so nothing leaks to the caller; a caller that already froze
objects or raised the threshold (a run inside a run, or beside one in
another thread) is left as it is. Results do not depend on it: the model
has no finalizers and never looks at object identities' order.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

YOUNG = 100_000
"""Allocations between collections of the youngest generation while a run goes (CPython's default: 700)."""


@contextmanager
def fewer_collections(young: int = YOUNG) -> Iterator[None]:
    """Within the block: the objects that exist at its start are frozen, and generation 0 is
    collected every ``young`` allocations; both are undone at its end."""
    threshold = gc.get_threshold()
    raise_threshold = 0 < threshold[0] < young  # 0: automatic collection is off; leave it off
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    if raise_threshold:
        gc.set_threshold(young, *threshold[1:])
    try:
        yield
    finally:
        if raise_threshold:
            gc.set_threshold(*threshold)
        if freeze:
            gc.unfreeze()
