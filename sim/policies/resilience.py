"""What a request does when a stage attempt fails: retry, fall back, or give up.

A stage *attempt* fails when its device or link is down (``FAILED``),
when no healthy instance is left to route to (``UNHEALTHY``), when the
stage's timeout passes first (``TIMED_OUT``), or when the stage's circuit
breaker is open and refuses to try (``BREAKER_OPEN``). Three plain
policies (no SimPy, no clock: the caller says what time it is) decide
what follows, and the simulator and the hardware harness ask the very same
objects:

- a ``RetryPolicy`` says whether to try the stage again, after how long,
  and on the same instance or another one (``RETRY``: ``none``,
  ``fixed``, ``exponential``);
- a ``CircuitBreaker`` watches a stage's attempts and, after ``failures``
  failures in a row (an attempt slower than ``latency`` counts as one),
  opens for ``open_for`` seconds: attempts are refused at once; then it is
  half-open and lets ``probes`` attempts through: if they all succeed it
  closes, if one fails it opens again (``BREAKERS``: ``none``,
  ``consecutive``);
- ``Reactions`` combines them with the stage's fallback (another pool, or
  a smaller model elsewhere, marked degraded) into one ``Reaction``:
  retry while attempts are left and the breaker allows, then the
  fallback if there is one, else the request ends ``failed`` (or
  ``timed_out`` when the last attempt timed out).

``HealthAware`` wraps any router so that it never picks an instance whose
``healthy`` is false (``InstanceView`` instances that lack the attribute
count as healthy).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence, Union

from sim.contract.outcomes import Outcome
from sim.policies.views import InstanceView, JobView
from sim.registry import Registry


class Reason(enum.IntEnum):
    """Why a stage attempt did not succeed (0: it did)."""

    NONE = 0
    FAILED = 1  # the device or link carrying it failed, or refused it as down
    UNHEALTHY = 2  # every instance the stage could use is down
    TIMED_OUT = 3  # the stage's timeout passed first
    BREAKER_OPEN = 4  # the stage's circuit breaker refused the attempt

    @property
    def label(self) -> str:
        return self.name.lower()


REASONS: tuple[Reason, ...] = tuple(r for r in Reason if r is not Reason.NONE)


# --- retry ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retry:
    """Try the stage again after ``delay`` seconds; ``other``: on another instance than the failed one."""

    delay: float
    other: bool


class RetryPolicy(Protocol):
    def retry(self, failures: int, reason: Reason) -> Optional[Retry]:
        """After the ``failures``-th failed attempt of a stage (1, 2, ...): try again, or None."""


@dataclass(frozen=True)
class NoRetry:
    def retry(self, failures: int, reason: Reason) -> Optional[Retry]:
        return None


@dataclass(frozen=True)
class FixedBackoff:
    """Up to ``attempts`` retries, each ``backoff`` seconds after the failure."""

    attempts: int
    backoff: float
    other: bool = True

    def retry(self, failures: int, reason: Reason) -> Optional[Retry]:
        return Retry(self.backoff, self.other) if failures <= self.attempts else None


@dataclass(frozen=True)
class ExponentialBackoff:
    """Up to ``attempts`` retries; the k-th waits ``backoff * multiplier**(k-1)``, at most ``cap``."""

    attempts: int
    backoff: float
    multiplier: float = 2.0
    cap: float = math.inf
    other: bool = True

    def retry(self, failures: int, reason: Reason) -> Optional[Retry]:
        if failures > self.attempts:
            return None
        return Retry(min(self.cap, self.backoff * self.multiplier ** (failures - 1)), self.other)


class RetrySettings(Protocol):
    """The scenario's retry section (``sim.scenario.schema.RetrySpec``)."""

    kind: str
    attempts: int
    backoff: float
    multiplier: float
    cap: Optional[float]
    target: str


def _cap(spec: RetrySettings) -> float:
    return math.inf if spec.cap is None else spec.cap


RETRY: Registry[Callable[[RetrySettings], RetryPolicy]] = Registry("retry policy")
RETRY.register("none")(lambda spec: NoRetry())
RETRY.register("fixed")(lambda spec: FixedBackoff(spec.attempts, spec.backoff, spec.target == "other"))
RETRY.register("exponential")(
    lambda spec: ExponentialBackoff(spec.attempts, spec.backoff, spec.multiplier, _cap(spec), spec.target == "other"))


# --- circuit breaker --------------------------------------------------------


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker(Protocol):
    def allow(self, now: float) -> bool:
        """May an attempt start now? (An allowed attempt must be reported with ``record``.)"""

    def record(self, now: float, ok: bool, latency: float) -> None:
        """An allowed attempt ended: ``ok`` or not, after ``latency`` seconds."""


@dataclass
class NoBreaker:
    def allow(self, now: float) -> bool:
        return True

    def record(self, now: float, ok: bool, latency: float) -> None:
        pass


@dataclass
class ConsecutiveFailures:
    """Opens after ``failures`` failed attempts in a row (slower than ``latency`` counts as failed)."""

    failures: int
    open_for: float
    probes: int = 1
    latency: float = math.inf
    state: BreakerState = BreakerState.CLOSED
    opened_at: float = -math.inf
    opens: int = 0  # how many times it opened
    _streak: int = 0
    _probes_out: int = 0
    _probes_ok: int = 0

    def allow(self, now: float) -> bool:
        if self.state is BreakerState.OPEN:
            if now < self.opened_at + self.open_for:
                return False
            self.state, self._probes_out, self._probes_ok = BreakerState.HALF_OPEN, 0, 0
        if self.state is BreakerState.HALF_OPEN:
            if self._probes_out >= self.probes:
                return False
            self._probes_out += 1
        return True

    def record(self, now: float, ok: bool, latency: float) -> None:
        ok = ok and latency <= self.latency
        if self.state is BreakerState.HALF_OPEN:
            if not ok:
                self._open(now)
                return
            self._probes_ok += 1
            if self._probes_ok >= self.probes:
                self.state, self._streak = BreakerState.CLOSED, 0
            return
        if self.state is BreakerState.OPEN:  # an attempt let through before it opened
            return
        self._streak = 0 if ok else self._streak + 1
        if self._streak >= self.failures:
            self._open(now)

    def _open(self, now: float) -> None:
        self.state, self.opened_at, self._streak = BreakerState.OPEN, now, 0
        self.opens += 1


class BreakerSettings(Protocol):
    """The scenario's breaker section (``sim.scenario.schema.BreakerSpec``)."""

    kind: str
    failures: int
    open_for: float
    probes: int
    latency: Optional[float]


BREAKERS: Registry[Callable[[BreakerSettings], CircuitBreaker]] = Registry("circuit breaker")
BREAKERS.register("none")(lambda spec: NoBreaker())
BREAKERS.register("consecutive")(lambda spec: ConsecutiveFailures(
    spec.failures, spec.open_for, spec.probes, math.inf if spec.latency is None else spec.latency))


# --- the reaction -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fallback:
    """Run the stage's fallback instead (``reason``: why)."""

    reason: Reason


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The request ends with ``outcome``."""

    outcome: Outcome


Reaction = Union[Retry, Fallback, GiveUp]


@dataclass
class Reactions:
    """One stage's reactions to failed attempts: its retry policy, breaker and whether it has a fallback."""

    retry: RetryPolicy = field(default_factory=NoRetry)
    breaker: CircuitBreaker = field(default_factory=NoBreaker)
    has_fallback: bool = False

    def admit(self, now: float) -> bool:
        """Before an attempt of the stage's main path: does the breaker let it through?"""
        return self.breaker.allow(now)

    def succeeded(self, now: float, latency: float) -> None:
        self.breaker.record(now, True, latency)

    def failed(self, now: float, failures: int, reason: Reason, latency: float = 0.0,
               in_fallback: bool = False) -> Reaction:
        """The ``failures``-th attempt of the stage failed (or was refused) for ``reason``: what now?"""
        if in_fallback:  # the fallback itself failed: nothing else to try
            return GiveUp(_ending(reason))
        if reason is not Reason.BREAKER_OPEN:
            self.breaker.record(now, False, latency)
            again = self.retry.retry(failures, reason)
            if again is not None:  # the breaker is asked again when the retry starts
                return again
        if self.has_fallback:
            return Fallback(reason)
        return GiveUp(_ending(reason))


class StageReactionSettings(Protocol):
    """One stage's resolved reactions (``sim.plan.StageReactionPlan``)."""

    retry: RetrySettings
    breaker: BreakerSettings
    fallback: Optional[object]


def build_reactions(stages: Sequence[StageReactionSettings]) -> list[Reactions]:
    """Each stage's ``Reactions`` from the plan: the one way both the simulator and the harness build them."""
    return [Reactions(RETRY[s.retry.kind](s.retry), BREAKERS[s.breaker.kind](s.breaker), s.fallback is not None)
            for s in stages]


def _ending(reason: Reason) -> Outcome:
    return Outcome.TIMED_OUT if reason is Reason.TIMED_OUT else Outcome.FAILED


# --- health-aware routing ---------------------------------------------------


class Router(Protocol):
    def choose(self, candidates: Sequence[InstanceView], job: JobView) -> int: ...


@dataclass
class HealthAware:
    """Route among healthy instances only (and never to ``exclude``); -1 when none is left."""

    router: Router

    def choose(self, candidates: Sequence[InstanceView], job: JobView, exclude: int = -1) -> int:
        alive = [i for i, c in enumerate(candidates) if getattr(c, "healthy", True) and i != exclude]
        if len(alive) == len(candidates):
            return self.router.choose(candidates, job)
        if not alive:
            return -1
        if len(alive) == 1:
            return alive[0]
        return alive[self.router.choose([candidates[i] for i in alive], job)]
