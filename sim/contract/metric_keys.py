"""How a metric is named: a typed key, one formatter, one parser.

A metric is a *kind* of measurement (latency, utilisation, ...) about a
*subject* (every request, one request class, one pipeline stage, one device
pool or one link), with a *statistic* where the kind has several (``p99``,
``completed``, ``drop``). The kind fixes the unit. ``str(key)`` is the name
written in ``summary.json``, baselines and reports; ``MetricKey.parse``
reads a name back and is the only place that takes one apart:

    [class.<c>.]latency.<mean|p50|p90|p95|p99|p999|max>   seconds
    [class.<c>.]throughput | goodput | replies             requests per second
    [class.<c>.]requests.<arrived|outcome>                 requests (counts)
    [class.<c>.]rate.<filter|drop|unfinished|fail|miss>    fraction
    stage.<s>.wait | stage.<s>.service                     seconds
    stage.<s>.batch                                        jobs per launched batch
    utilisation.pool.<p> | utilisation.link.<l>            fraction of time busy
    queue.pool.<p>                                         jobs waiting
    bytes_per_s.link.<l>                                   bytes per second
    [class.<c>.]availability | degraded_rate | timeout_rate fraction (runs with failures/reactions)
    [class.<c>.]retries_per_request                        retries per request
    [class.<c>.]fallbacks.<reason>                         requests (counts)
    [class.<c>.]degraded_latency.<statistic>               seconds
    recovery_time                                          seconds

Pools and links are separate namespaces, so a pool and a link of the same
name never share a key. Names of classes, stages, pools and links may hold
dots: the parser reads the fixed parts from both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Mapping, Optional

from sim.contract.outcomes import LABELS, Outcome
from sim.policies.resilience import REASONS


class Unit(Enum):
    """What a metric is counted in, and how people read it (value x ``scale``, then ``symbol``)."""

    SECONDS = ("s", 1e3, "ms")
    PER_SECOND = ("1/s", 1.0, "/s")
    FRACTION = ("fraction", 100.0, "%")
    REQUESTS = ("requests", 1.0, "requests")
    JOBS = ("jobs", 1.0, "jobs")
    BYTES_PER_SECOND = ("bytes/s", 1e-6, "MB/s")
    PER_REQUEST = ("1/request", 1.0, "/request")

    def __init__(self, si: str, scale: float, symbol: str):
        self.si = si
        self.scale = scale
        self.symbol = symbol


class Namespace(Enum):
    """What a metric is about."""

    ALL = "all"  # every request of the workload
    CLASS = "class"  # the requests of one class
    STAGE = "stage"  # one pipeline stage
    POOL = "pool"  # one device pool
    LINK = "link"  # one link


@dataclass(frozen=True)
class Subject:
    namespace: Namespace
    name: str = ""

    @classmethod
    def of_class(cls, name: str) -> "Subject":
        return cls(Namespace.CLASS, name)

    @classmethod
    def stage(cls, name: str) -> "Subject":
        return cls(Namespace.STAGE, name)

    @classmethod
    def pool(cls, name: str) -> "Subject":
        return cls(Namespace.POOL, name)

    @classmethod
    def link(cls, name: str) -> "Subject":
        return cls(Namespace.LINK, name)


ALL = Subject(Namespace.ALL)

# Latency statistics: the percent given to numpy.percentile for each percentile (None: not a percentile).
LATENCY_STATISTICS: Mapping[str, Optional[float]] = {
    "mean": None, "p50": 50, "p90": 90, "p95": 95, "p99": 99, "p999": 99.9, "max": None}
# Rates: the outcome each counts. ``miss`` is a fraction of served requests, the others of arrived ones.
RATES: Mapping[str, Outcome] = {"filter": Outcome.FILTERED, "drop": Outcome.DROPPED,
                                "unfinished": Outcome.UNFINISHED, "fail": Outcome.FAILED,
                                "miss": Outcome.DEADLINE_MISSED}
ARRIVED = "arrived"

_REQUEST = (Namespace.ALL, Namespace.CLASS)


class Kind(Enum):
    """What is measured: its unit, the subjects it can be about and its statistics (none: one value)."""

    LATENCY = ("latency", Unit.SECONDS, _REQUEST, tuple(LATENCY_STATISTICS))
    THROUGHPUT = ("throughput", Unit.PER_SECOND, _REQUEST, ())
    GOODPUT = ("goodput", Unit.PER_SECOND, _REQUEST, ())
    REPLIES = ("replies", Unit.PER_SECOND, _REQUEST, ())
    REQUESTS = ("requests", Unit.REQUESTS, _REQUEST, (ARRIVED, *LABELS))
    RATE = ("rate", Unit.FRACTION, _REQUEST, tuple(RATES))
    WAIT = ("wait", Unit.SECONDS, (Namespace.STAGE,), ())
    SERVICE = ("service", Unit.SECONDS, (Namespace.STAGE,), ())
    BATCH = ("batch", Unit.JOBS, (Namespace.STAGE,), ())
    UTILISATION = ("utilisation", Unit.FRACTION, (Namespace.POOL, Namespace.LINK), ())
    QUEUE = ("queue", Unit.JOBS, (Namespace.POOL,), ())
    BYTES_PER_S = ("bytes_per_s", Unit.BYTES_PER_SECOND, (Namespace.LINK,), ())
    # failures and reactions (sim.metrics.resilience; only in runs that declare them)
    AVAILABILITY = ("availability", Unit.FRACTION, _REQUEST, ())
    DEGRADED_RATE = ("degraded_rate", Unit.FRACTION, _REQUEST, ())
    TIMEOUT_RATE = ("timeout_rate", Unit.FRACTION, _REQUEST, ())
    RETRIES = ("retries_per_request", Unit.PER_REQUEST, _REQUEST, ())
    FALLBACKS = ("fallbacks", Unit.REQUESTS, _REQUEST, tuple(r.label for r in REASONS))
    DEGRADED_LATENCY = ("degraded_latency", Unit.SECONDS, _REQUEST, tuple(LATENCY_STATISTICS))
    RECOVERY = ("recovery_time", Unit.SECONDS, (Namespace.ALL,), ())

    def __init__(self, word: str, unit: Unit, namespaces: tuple[Namespace, ...], statistics: tuple[str, ...]):
        self.word = word
        self.unit = unit
        self.namespaces = namespaces
        self.statistics = statistics


_BY_WORD = {k.word: k for k in Kind}
_RESOURCES = {n.value: n for n in (Namespace.POOL, Namespace.LINK)}


@dataclass(frozen=True)
class MetricKey:
    """One metric: ``kind`` about ``subject``, with ``statistic`` where the kind has several."""

    kind: Kind
    subject: Subject = ALL
    statistic: Optional[str] = None

    def __post_init__(self) -> None:
        if self.subject.namespace not in self.kind.namespaces:
            allowed = " or ".join(n.value for n in self.kind.namespaces)
            raise ValueError(f"a {self.kind.word} metric is about {allowed}, not {self.subject.namespace.value}")
        if (self.subject.namespace is Namespace.ALL) != (self.subject.name == ""):
            raise ValueError(f"a {self.subject.namespace.value} subject needs a name" if not self.subject.name
                             else "the whole workload has no name")
        if self.kind.statistics and self.statistic not in self.kind.statistics:
            raise ValueError(f"{self.kind.word}: unknown statistic {self.statistic!r}; "
                             f"expected one of: {', '.join(self.kind.statistics)}")
        if not self.kind.statistics and self.statistic is not None:
            raise ValueError(f"{self.kind.word} has no statistics, got {self.statistic!r}")

    @property
    def unit(self) -> Unit:
        return self.kind.unit

    @property
    def percent(self) -> Optional[float]:
        """For a latency percentile, its percent (99 for ``p99``); None otherwise."""
        return LATENCY_STATISTICS[self.statistic] if self.kind is Kind.LATENCY else None

    @property
    def name(self) -> str:
        """The metric's name: the formatter (see the module's docstring)."""
        kind, subject = self.kind.word, self.subject
        if subject.namespace is Namespace.STAGE:
            return f"stage.{subject.name}.{kind}"
        if subject.namespace in (Namespace.POOL, Namespace.LINK):
            return f"{kind}.{subject.namespace.value}.{subject.name}"
        body = kind if self.statistic is None else f"{kind}.{self.statistic}"
        return f"class.{subject.name}.{body}" if subject.namespace is Namespace.CLASS else body

    def __str__(self) -> str:
        return self.name

    def with_subject(self, subject: Subject) -> "MetricKey":
        return MetricKey(self.kind, subject, self.statistic)

    @classmethod
    def parse(cls, text: str) -> "MetricKey":
        """The key ``text`` names; ``ValueError`` saying what is wrong and what was expected."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"metric name must be a non-empty string, got {text!r}")
        key = _parse(text)
        if key is None or key.name != text:
            raise ValueError(f"unknown metric name {text!r}; {_renamed(text) or _GRAMMAR}")
        return key


_GRAMMAR = ("expected [class.<c>.]latency.<mean|p50|p90|p95|p99|p999|max>, [class.<c>.]throughput|goodput|replies, "
            "[class.<c>.]requests.<arrived|outcome>, [class.<c>.]rate.<filter|drop|unfinished|fail|miss>, "
            "stage.<s>.wait|service|batch, utilisation.pool|link.<name>, queue.pool.<name>, "
            "bytes_per_s.link.<name>, [class.<c>.]availability|degraded_rate|timeout_rate|retries_per_request, "
            "[class.<c>.]fallbacks.<reason>, [class.<c>.]degraded_latency.<statistic> or recovery_time")


def _renamed(text: str) -> Optional[str]:
    """What a name from before pools and links had namespaces is called now."""
    head, _, name = text.partition(".")
    if head in ("utilisation", "queue") and name and not name.startswith(("pool.", "link.")):
        return f"pools and links have their own namespaces: {head}.pool.{name}" + (
            f" or {head}.link.{name}" if head == "utilisation" else "")
    if head == "link_bytes_per_s" and name:
        return f"now bytes_per_s.link.{name}"
    if head == "batch" and name:
        return f"now stage.{name}.batch"
    return None


def _parse(text: str) -> Optional[MetricKey]:
    head, _, rest = text.partition(".")
    kind = _BY_WORD.get(head)
    if head == "stage":
        name, _, word = rest.rpartition(".")
        return _key(_BY_WORD.get(word), Subject.stage(name))
    if kind is not None and set(kind.namespaces) <= set(_RESOURCES.values()):
        space, _, name = rest.partition(".")
        return _key(kind, Subject(_RESOURCES[space], name)) if space in _RESOURCES else None
    if head == "class":
        parts = rest.split(".")
        for n in (2, 1):  # a request metric is one or two parts long: try both
            if len(parts) > n:
                key = _request(".".join(parts[-n:]), Subject.of_class(".".join(parts[:-n])))
                if key is not None:
                    return key
        return None
    return _request(text, ALL)


def _request(body: str, subject: Subject) -> Optional[MetricKey]:
    word, _, statistic = body.partition(".")
    return _key(_BY_WORD.get(word), subject, statistic or None)


def _key(kind: Optional[Kind], subject: Subject, statistic: Optional[str] = None) -> Optional[MetricKey]:
    """The key, or None where these parts make none."""
    if kind is None:
        return None
    try:
        return MetricKey(kind, subject, statistic)
    except ValueError:
        return None
