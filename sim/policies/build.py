"""Policy objects from a scenario's policy section.

The simulator and the harness both build their policies here, so the same
scenario gives the same objects in both.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from sim.policies import admission, batching, channel, queueing, routing
from sim.scenario.schema import AdmissionSpec, BatchingSpec, ChannelSelectionSpec, QueueSpec, RoutingSpec


def batching_policy(spec: BatchingSpec, service_time: Callable[[int], float]) -> batching.BatchingPolicy:
    """``service_time(n)``: estimated time from launching a batch of n to the reply."""
    if spec.kind == "none":
        return batching.NoBatching()
    if spec.kind == "fixed":
        return batching.FixedBatch(spec.max_batch, spec.timeout if spec.timeout is not None else math.inf)
    if spec.kind == "dynamic":
        return batching.DynamicBatch(spec.max_batch, spec.max_delay)
    return batching.DeadlineAwareBatch(spec.max_batch, spec.max_delay, service_time)


def routing_policy(spec: RoutingSpec, rng: np.random.Generator) -> routing.RoutingPolicy:
    return {
        "round-robin": lambda: routing.RoundRobin(),
        "shortest-queue": lambda: routing.JoinShortestQueue(),
        "power-of-two": lambda: routing.PowerOfTwoChoices(rng),
        "random": lambda: routing.RandomRouting(rng),
        "local-first": lambda: routing.LocalFirst(spec.spill_at),
    }[spec.kind]()


def queue_discipline(spec: QueueSpec) -> queueing.QueueDiscipline:
    return {"fifo": queueing.Fifo, "priority": queueing.Priority, "edf": queueing.EarliestDeadlineFirst}[spec.kind]()


def admission_policy(spec: AdmissionSpec) -> admission.AdmissionPolicy:
    if spec.kind == "queue-cap":
        return admission.QueueCap(spec.cap)
    if spec.kind == "deadline":
        return admission.DeadlineFeasible()
    return admission.AdmitAll()


def channel_policy(spec: ChannelSelectionSpec) -> channel.ChannelPolicy:
    if spec.kind == "fixed" and spec.use:
        return channel.FixedChannel(spec.use)
    bands = tuple(channel.SizeBand(b.below if b.below is not None else math.inf, b.use) for b in spec.bands)
    return channel.BySize(bands)
