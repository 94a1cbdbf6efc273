"""How a request ends: exactly one ``Outcome`` per arrival.

The simulator keeps the outcome as this enum on each request, the harness
sends and logs it, the per-request table stores its ``label`` and the
summary counts each label. ``PENDING`` is the only state that is not an
ending: a request still ``PENDING`` when a run stops becomes
``UNFINISHED``.

Failures add two endings. ``TIMED_OUT``: the client's request timeout (or
a stage's, with nothing left to try) passed before an answer came.
``DEGRADED``: a fallback answered instead of the designed path (e.g. a
small model on the DPU while the GPU is down). A degraded answer is an
*answer* (it counts towards availability) but it is not *served*: latency
percentiles, the miss rate and throughput describe full answers only, and
degraded answers get their own latency (``sim.metrics.resilience``).
"""

from __future__ import annotations

from enum import IntEnum


class Outcome(IntEnum):
    PENDING = -1
    COMPLETED = 0
    DEADLINE_MISSED = 1
    FILTERED = 2
    DROPPED = 3
    UNFINISHED = 4
    FAILED = 5
    TIMED_OUT = 6
    DEGRADED = 7

    @property
    def label(self) -> str:
        """The name written in results: ``completed``, ``deadline_missed``, ..."""
        return self.name.lower()

    @property
    def served(self) -> bool:
        """Whether the client got an answer (on time or late)."""
        return self in (Outcome.COMPLETED, Outcome.DEADLINE_MISSED)

    @property
    def answered(self) -> bool:
        """Whether the client got any answer: served, degraded, or filtered out as "nothing here"."""
        return self in (Outcome.COMPLETED, Outcome.DEADLINE_MISSED, Outcome.DEGRADED, Outcome.FILTERED)

    @classmethod
    def from_label(cls, label: str) -> "Outcome":
        """The outcome a result file names; ``ValueError`` naming the known labels otherwise."""
        try:
            outcome = cls[label.upper()]
        except KeyError:
            outcome = None
        if outcome is None or outcome is cls.PENDING:
            raise ValueError(f"unknown outcome '{label}'; expected one of: {', '.join(LABELS)}")
        return outcome


ENDINGS: tuple[Outcome, ...] = tuple(o for o in Outcome if o is not Outcome.PENDING)
LABELS: tuple[str, ...] = tuple(o.label for o in ENDINGS)
SERVED_LABELS: tuple[str, ...] = tuple(o.label for o in ENDINGS if o.served)
ANSWERED_LABELS: tuple[str, ...] = tuple(o.label for o in ENDINGS if o.answered)
