"""The reaction policies on their own: retry, circuit breaker, fallback order, health-aware routing."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from sim.contract.outcomes import Outcome
from sim.policies.resilience import (BREAKERS, RETRY, BreakerState, ConsecutiveFailures, ExponentialBackoff,
                                     Fallback, FixedBackoff, GiveUp, HealthAware, NoRetry, Reactions, Reason,
                                     Retry)
from sim.policies.routing import RoundRobin
from sim.scenario.schema import BreakerSpec, RetrySpec


def test_fixed_backoff_retries_the_given_number_of_times_then_stops():
    policy = FixedBackoff(attempts=2, backoff=0.01, other=True)
    assert policy.retry(1, Reason.FAILED) == Retry(0.01, True)
    assert policy.retry(2, Reason.FAILED) == Retry(0.01, True)
    assert policy.retry(3, Reason.FAILED) is None


def test_exponential_backoff_grows_and_is_capped():
    policy = ExponentialBackoff(attempts=4, backoff=0.01, multiplier=3.0, cap=0.05, other=False)
    delays = [policy.retry(k, Reason.TIMED_OUT).delay for k in (1, 2, 3, 4)]
    assert delays == pytest.approx([0.01, 0.03, 0.05, 0.05])
    assert policy.retry(5, Reason.TIMED_OUT) is None
    assert policy.retry(1, Reason.FAILED).other is False


def test_registries_build_from_the_scenario_sections():
    retry = RETRY["exponential"](RetrySpec(kind="exponential", attempts=1, backoff="5 ms", target="same"))
    assert retry.retry(1, Reason.FAILED) == Retry(0.005, False)
    assert isinstance(RETRY["none"](RetrySpec()), NoRetry)
    breaker = BREAKERS["consecutive"](BreakerSpec(kind="consecutive", failures=2, open_for="1 s", latency="10 ms"))
    assert breaker.latency == pytest.approx(0.010)
    with pytest.raises(ValueError, match="expected one of: none, fixed, exponential"):
        RetrySpec(kind="forever")


def test_breaker_opens_after_consecutive_failures_and_probes_when_half_open():
    breaker = ConsecutiveFailures(failures=3, open_for=1.0, probes=2)
    for t in (0.0, 0.1):
        assert breaker.allow(t)
        breaker.record(t, False, 0.0)
    assert breaker.allow(0.15)
    breaker.record(0.15, True, 0.0)  # a success resets the streak
    for t in (0.2, 0.3, 0.4):
        assert breaker.allow(t)
        breaker.record(t, False, 0.0)
    assert breaker.state is BreakerState.OPEN and breaker.opens == 1
    assert not breaker.allow(1.39)  # still open
    assert breaker.allow(1.41) and breaker.allow(1.42)  # half-open: two probes
    assert not breaker.allow(1.43)  # no third while the probes are out
    breaker.record(1.5, True, 0.0)
    breaker.record(1.5, True, 0.0)
    assert breaker.state is BreakerState.CLOSED and breaker.allow(1.6)


def test_a_failed_probe_opens_the_breaker_again():
    breaker = ConsecutiveFailures(failures=1, open_for=0.5)
    breaker.allow(0.0)
    breaker.record(0.0, False, 0.0)
    assert breaker.allow(0.6)
    breaker.record(0.6, False, 0.0)
    assert breaker.state is BreakerState.OPEN and breaker.opens == 2
    assert not breaker.allow(1.0) and breaker.allow(1.2)


def test_a_slow_attempt_counts_as_a_failure():
    breaker = ConsecutiveFailures(failures=2, open_for=1.0, latency=0.05)
    breaker.record(0.0, True, 0.06)
    breaker.record(0.1, True, 0.07)
    assert breaker.state is BreakerState.OPEN


def test_reactions_retry_then_fall_back_then_give_up():
    reactions = Reactions(FixedBackoff(1, 0.0), has_fallback=True)
    assert isinstance(reactions.failed(0.0, 1, Reason.FAILED), Retry)
    assert reactions.failed(0.0, 2, Reason.FAILED) == Fallback(Reason.FAILED)
    assert reactions.failed(0.0, 3, Reason.FAILED, in_fallback=True) == GiveUp(Outcome.FAILED)
    no_fallback = Reactions(NoRetry())
    assert no_fallback.failed(0.0, 1, Reason.TIMED_OUT) == GiveUp(Outcome.TIMED_OUT)
    assert no_fallback.failed(0.0, 1, Reason.UNHEALTHY) == GiveUp(Outcome.FAILED)


def test_an_open_breaker_skips_the_retries():
    reactions = Reactions(FixedBackoff(5, 0.0), ConsecutiveFailures(failures=1, open_for=10.0), has_fallback=True)
    assert reactions.admit(0.0)
    assert isinstance(reactions.failed(0.0, 1, Reason.FAILED), Retry)  # opens the breaker, retry still planned
    assert not reactions.admit(0.01)  # the retry's attempt is refused...
    assert reactions.failed(0.01, 1, Reason.BREAKER_OPEN) == Fallback(Reason.BREAKER_OPEN)  # ...and falls back


@dataclass
class Instance:
    healthy: bool
    queue_length: int = 0
    busy: int = 0
    servers: int = 1
    tier: int = 0


def test_health_aware_routing_never_picks_a_down_instance():
    router = HealthAware(RoundRobin())
    candidates = [Instance(True), Instance(False), Instance(True)]
    picks = [router.choose(candidates, None) for _ in range(6)]
    assert set(picks) == {0, 2}
    assert router.choose(candidates, None, exclude=0) == 2
    assert router.choose([Instance(False), Instance(False)], None) == -1
    assert HealthAware(RoundRobin()).choose([Instance(True), Instance(True)], None) == 0


def test_outcomes_degraded_is_answered_but_not_served():
    assert Outcome.DEGRADED.answered and not Outcome.DEGRADED.served
    assert Outcome.FILTERED.answered and not Outcome.TIMED_OUT.answered
    assert Outcome.from_label("timed_out") is Outcome.TIMED_OUT
    assert math.isinf(ConsecutiveFailures(1, 1.0).latency)
