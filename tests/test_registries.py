"""Extension points: every kind a scenario may name is registered once, and nothing else is accepted."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from hil.runner.load import SCALERS
from sim.policies.admission import ADMISSION
from sim.policies.batching import BATCHING
from sim.policies.channel import CHANNELS
from sim.policies.placement import STRATEGIES
from sim.policies.queueing import DISCIPLINES
from sim.policies.routing import ROUTING
from sim.registry import Registry, UnknownKind
from sim.scenario.schema import (
    AdmissionSpec,
    BatchingSpec,
    ChannelSelectionSpec,
    PlacementSpec,
    Policies,
    QueueSpec,
    RoutingSpec,
    Source,
)


def test_every_registered_policy_kind_builds_from_its_scenario_section() -> None:
    rng = np.random.default_rng(0)
    for kind in BATCHING:
        spec = BatchingSpec(kind=kind, max_batch=4, max_delay="1 ms")
        policy = BATCHING[kind](spec, lambda n: 0.001 * n)
        assert hasattr(policy, "decide") and policy.max_batch >= 1
    for kind in DISCIPLINES:
        assert hasattr(DISCIPLINES[QueueSpec(kind=kind).kind](), "key")
    for kind in ADMISSION:
        assert hasattr(ADMISSION[kind](AdmissionSpec(kind=kind)), "admit")
    for kind in ROUTING:
        assert hasattr(ROUTING[kind](RoutingSpec(kind=kind), rng), "choose")
    for kind in CHANNELS:
        spec = ChannelSelectionSpec(kind=kind, use="tcp" if kind == "fixed" else None)
        assert CHANNELS[kind](spec).choose(1e3, ["tcp", "rdma"]) in ("tcp", "rdma")
    for strategy in STRATEGIES:
        assert PlacementSpec(strategy=strategy).strategy == strategy


@pytest.mark.parametrize("section,field,registry", [
    ("queue", "kind", DISCIPLINES), ("admission", "kind", ADMISSION), ("routing", "kind", ROUTING),
    ("channel", "kind", CHANNELS), ("placement", "strategy", STRATEGIES),
])
def test_an_unknown_kind_is_refused_at_load_time_naming_the_known_ones(section, field, registry) -> None:
    with pytest.raises(ValueError) as error:
        Policies.model_validate({section: {field: "no-such-kind"}})
    message = str(error.value)
    assert "no-such-kind" in message and all(kind in message for kind in registry.kinds)


def test_an_unknown_batching_kind_is_refused_not_turned_into_deadline_batching() -> None:
    with pytest.raises(ValueError, match="unknown batching policy 'greedy'; expected one of: none, fixed"):
        Policies.model_validate({"batching": {"infer": {"kind": "greedy"}}})
    with pytest.raises(UnknownKind, match="expected one of"):
        BATCHING["greedy"]


def test_the_harness_scales_every_workload_source_kind_and_no_other() -> None:
    union = typing.get_args(typing.get_args(Source)[0])
    schema_kinds = {typing.get_args(model.model_fields["kind"].annotation)[0] for model in union}
    assert set(SCALERS.kinds) == schema_kinds
    with pytest.raises(UnknownKind):
        SCALERS["replay-from-kafka"]


def test_a_kind_cannot_be_registered_twice() -> None:
    registry: Registry = Registry("thing")
    registry.register("a")(object)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(object)
