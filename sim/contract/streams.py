"""Named random streams: what pairs a simulated draw with a measured one.

Every random choice in a run draws from its own stream, keyed by the seed,
the replication and the name of the model component that draws. Two
designs in one scenario therefore see the same arrivals, service draws and
prefilter verdicts (common random numbers), and the hardware harness
replays exactly what the simulator drew. The names are built here and
nowhere else.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream_rng(seed: int, replication: int, name: str) -> np.random.Generator:
    """The random stream called ``name`` in one replication of one seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, replication, zlib.crc32(name.encode())]))


def arrivals(source: str) -> str:
    """Arrival times (and sizes, rates, phases) of a workload source."""
    return f"source:{source}"


def service(stage: str, pool: str) -> str:
    """Service-time draws of ``stage`` on the devices of ``pool``."""
    return f"service:{stage}:{pool}"


def passes(stage: str) -> str:
    """Prefilter verdicts of ``stage``: one uniform draw per request."""
    return f"pass:{stage}"


def routing(stage: str) -> str:
    """Random routing choices for ``stage``."""
    return f"routing:{stage}"


def latency(link: str) -> str:
    """Propagation-latency draws of ``link``."""
    return f"latency:{link}"


def failure(target: str) -> str:
    """Up and down times of a randomly failing device, pool or link."""
    return f"failure:{target}"


def background(device: str) -> str:
    """Arrivals and lengths of the background work on ``device`` (a pool's ``background`` load)."""
    return f"background:{device}"


def branches(stage: str) -> str:
    """Branch signals of ``stage`` (a stage that chooses its next stage): one uniform draw per request."""
    return f"branch:{stage}"
