"""The scenario file: what is simulated, as a typed schema.

A scenario declares the hardware (device pools and the links between
them), the workload (request sources), the pipeline (a DAG of stages with
their costs per device kind), the policies, the service-level objectives,
how to run it, and named variants that override any of the above. Unknown
keys are errors; quantities carry units ("2.5 ms", "25 Gbit/s", "1.2 MB",
"30 fps"). Cross-references (stages, pools, profiles) are checked in
``sim.plan`` so that every problem names its field.

The full format, with an annotated example, is in docs/scenario-format.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (AfterValidator, AliasChoices, BaseModel, ConfigDict, Discriminator, Field, StrictFloat, StrictInt,
                      Tag, field_validator, model_serializer, model_validator)

from sim import profiles
from sim.costs import Calibrated, CostSpec
from sim.model.link import CONTENTION
from sim.policies.admission import ADMISSION
from sim.policies.batching import BATCHING
from sim.policies.branching import BRANCHING
from sim.policies.channel import CHANNELS
from sim.policies.placement import STRATEGIES
from sim.policies.queueing import DISCIPLINES
from sim.policies.resilience import BREAKERS, RETRY
from sim.policies.routing import ROUTING
from sim.registry import Registry


def kind_of(registry: Registry) -> Any:
    """A ``str`` field whose value must be one of ``registry``'s kinds (the error lists them)."""
    return Annotated[str, AfterValidator(registry.check)]

from sim.units import Bandwidth, Duration, Rate, Size

# Numbers are strict: ``true`` is not 1 and ``"3"`` is not 3 (YAML reads
# ``yes``, ``on`` and ``true`` as booleans, an easy slip). Floats accept
# integers. Upper bounds are physical limits, far above any real design;
# the cost of a run as a whole is judged by ``sim.scenario.work``.
PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
Fraction = Annotated[StrictFloat, Field(ge=0.0, le=1.0)]
CLIENT = "client"

MAX_DEVICES = 100_000  # devices in one pool
MAX_SERVERS = 4096  # cores or execution streams of one device
MAX_STREAMS = 1_000_000  # cameras (periodic streams) of one source
MAX_RATE = 1e8  # requests per second from one source (or one stream)
MAX_REPLICATIONS = 10_000
MAX_DURATION = 30 * 86400.0  # simulated seconds (30 days)
MAX_BATCH = 65_536


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


# --- hardware ---------------------------------------------------------------


class BackgroundSpec(Strict):
    """Other work on every device of a pool (host interference): Poisson arrivals of jobs with
    exponential durations, keeping ``load`` of the device's servers busy on average."""

    load: Annotated[StrictFloat, Field(gt=0.0, lt=1.0)] = Field(description="fraction of the servers busy with it")
    job: Duration = Field(1e-3, gt=0, description="mean duration of one piece of it")


class PoolSpec(Strict):
    """``count`` identical devices of one profile."""

    profile: str
    count: PositiveInt = Field(1, le=MAX_DEVICES)
    servers: Optional[PositiveInt] = Field(
        None,
        le=MAX_SERVERS,
        validation_alias=AliasChoices("servers", "cores", "streams"),
        description="cores (cpu, dpu) or execution streams (gpu) per device; default from profile",
    )
    speed: Optional[StrictFloat] = Field(None, gt=0, le=1000, description="relative to the kind's reference part")
    background: Optional[BackgroundSpec] = Field(None, description="other work competing for the servers")

    @model_serializer(mode="wrap")
    def _without_absent_background(self, handler):
        """A pool without background load dumps as it did before there was any."""
        data = handler(self)
        if isinstance(data, dict) and data.get("background", 0) is None:
            data.pop("background")
        return data


class HostCostSpec(Strict):
    """CPU time a message costs the device at one end of a link, taken from that device's servers.

    ``per_message + copies * bytes / copy_rate``: the system calls, interrupts and
    protocol work of one message, plus every pass over its bytes (a kernel TCP
    receive copies once into the socket buffer and once to user space; a
    pageable cudaMemcpy stages through a pinned buffer). Zero-copy RDMA costs
    nothing: leave the cost out.
    """

    per_message: Duration = Field(0.0, ge=0, description="CPU time per message")
    copy_rate: Optional[Bandwidth] = Field(None, gt=0, description="bytes one core moves per second; none: no per-byte cost")
    copies: NonNegativeInt = Field(1, le=64, description="passes over the bytes (each at copy_rate)")


def _host_cost_form(value: Any) -> str:
    """``{kind: calibrated, ...}`` names a calibration entry; anything else is written out."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "calibrated" if kind is not None else "given"


HostCost = Annotated[
    Union[Annotated[HostCostSpec, Tag("given")], Annotated[Calibrated, Tag("calibrated")]],
    Discriminator(_host_cost_form),
]


class LinkSpec(Strict):
    """A link between two endpoints (pools, or ``client`` for the network side)."""

    name: str
    between: tuple[str, str]
    profile: Optional[str] = None
    kind: Optional[Literal["pcie", "rdma", "tcp", "shm", "nvlink", "wan"]] = None
    bandwidth: Optional[Bandwidth] = Field(None, gt=0)
    latency: Optional[CostSpec] = None
    overhead: Optional[Duration] = Field(None, ge=0)

    @field_validator("latency")
    @classmethod
    def _not_measured_on_a_device(cls, latency):
        if latency is not None and getattr(latency, "on", None) is not None:
            raise ValueError("'on' names the device profile a stage cost was measured on; "
                             "a link latency is not scaled by device speed: remove it")
        return latency
    contention: Optional[kind_of(CONTENTION)] = Field(
        None, description="fifo: one message at a time per direction; shared: fair share of bandwidth"
    )
    sharing: Literal["per-pair", "per-port", "shared"] = Field(
        "per-pair", description="per-pair: one link per pair of device instances; per-port: one per "
                                "sending instance (its port); shared: one for all"
    )
    host_cost: Optional[str] = Field(None, description="a transport's host costs at both ends, by name "
                                                       "(sim.profiles.HOST_COSTS: kernel-tcp, grpc, user-copy, "
                                                       "pinned-staging, pageable-staging, zero-copy)")
    send_cost: Optional[HostCost] = Field(None, description="CPU time on the sending device per message (replaces "
                                          "host_cost's sending end); or a calibration file's host_cost entry")
    receive_cost: Optional[HostCost] = Field(None, description="CPU time on the receiving device per message "
                                             "(replaces host_cost's receiving end); or a calibration file's "
                                             "host_cost entry")

    @model_serializer(mode="wrap")
    def _without_absent_costs(self, handler):
        """A link without host costs dumps as it did before there were any."""
        data = handler(self)
        if isinstance(data, dict):
            for key in ("host_cost", "send_cost", "receive_cost"):
                if data.get(key, 0) is None:
                    data.pop(key)
        return data


class Hardware(Strict):
    pools: dict[str, PoolSpec] = Field(default_factory=dict, description="at least one here or in topology")
    links: list[LinkSpec] = Field(default_factory=list)


# --- topology (optional): servers and sites, replicated ----------------------

NETWORK = "network"  # in a node's or a site's links: the site's network fabric
TOPOLOGY_ENDPOINTS = (CLIENT, NETWORK)


class NodeSpec(Strict):
    """A server, declared once and replicated ``count`` times (see sim.topology).

    ``pools``: its devices by role (``dpu``, ``gpu``, ``cpu``); ``points``:
    places inside it that are not devices but that transfers cross (a PCIe
    switch); ``links``: between its roles and points, ``network`` (the
    site's fabric) or ``client``.
    """

    count: PositiveInt = Field(1, le=MAX_DEVICES)
    pools: dict[str, PoolSpec] = Field(min_length=1)
    points: list[str] = Field(default_factory=list, description="non-device endpoints inside the node (a PCIe switch)")
    links: list[LinkSpec] = Field(default_factory=list)


class SiteSpec(Strict):
    """A group of nodes (a data-centre row, an edge box's premises), replicated ``count`` times.

    ``links`` join the site's ``network`` point to ``client`` or to a pool of
    ``hardware.pools`` (a WAN to a cloud pool declared outside the topology).
    """

    count: PositiveInt = Field(1, le=MAX_DEVICES)
    nodes: dict[str, NodeSpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)


class TopologySpec(Strict):
    """Sites of nodes; ``wan`` links join two sites' networks (``between`` names two sites)."""

    sites: dict[str, SiteSpec] = Field(min_length=1)
    wan: list[LinkSpec] = Field(default_factory=list)
    locality: Literal["node", "site", "any"] = Field(
        "node", description="where a request may go when it changes pool: its node's devices of the "
        "stage's role first (node), any node of its site (site), or anywhere (any)")


# --- workload ---------------------------------------------------------------


class _Source(Strict):
    name: str
    class_: str = Field("default", alias="class")
    priority: StrictInt = 0
    deadline: Optional[Duration] = Field(None, gt=0)
    payload: Size = Field(ge=0)
    enters: Optional[str] = Field(None, description="topology: the site (as declared) whose instances this "
                                                    "source's requests enter: request i (in arrival order) the "
                                                    "instance i mod count (cameras wired to each site)")

    @model_serializer(mode="wrap")
    def _without_absent_enters(self, handler):
        """A source without ``enters`` dumps as it did before there was one."""
        data = handler(self)
        if isinstance(data, dict) and "enters" in data and data["enters"] is None:
            data.pop("enters")
        return data


class PeriodicSource(_Source):
    """``streams`` cameras, each sending at ``rate`` with random phase and jitter."""

    kind: Literal["periodic"]
    streams: PositiveInt = Field(1, le=MAX_STREAMS)
    rate: Union[Rate, tuple[Rate, Rate]] = Field(description="one rate, or [low, high] drawn per stream")
    jitter: Duration = Field(0.0, ge=0, description="standard deviation of each frame's offset")

    @field_validator("rate")
    @classmethod
    def _positive(cls, rate):
        rates = rate if isinstance(rate, tuple) else (rate,)
        if any(r <= 0 for r in rates):
            raise ValueError("rate must be positive")
        if any(r > MAX_RATE for r in rates):
            raise ValueError(f"rate must be at most {MAX_RATE:g}/s per stream")
        if isinstance(rate, tuple) and rate[0] > rate[1]:
            raise ValueError("rate range must be [low, high] with low <= high")
        return rate


class PoissonSource(_Source):
    kind: Literal["poisson"]
    rate: Rate = Field(gt=0, le=MAX_RATE)


class GammaSource(_Source):
    """Renewal arrivals with gamma gaps; ``cv`` > 1 is burstier than Poisson."""

    kind: Literal["gamma"]
    rate: Rate = Field(gt=0, le=MAX_RATE)
    cv: StrictFloat = Field(gt=0, le=100)


class MmppSource(_Source):
    """Markov-modulated Poisson: the rate switches between states."""

    kind: Literal["mmpp"]
    rates: list[Rate] = Field(min_length=2)
    dwell: list[Duration] = Field(min_length=2, description="mean time spent in each state")

    @field_validator("dwell")
    @classmethod
    def _positive_dwell(cls, dwell):
        if any(d <= 0 for d in dwell):
            raise ValueError("every mean dwell time must be positive")
        return dwell

    @field_validator("rates")
    @classmethod
    def _non_negative(cls, rates):
        if any(r < 0 for r in rates) or not any(r > 0 for r in rates):
            raise ValueError("rates must be >= 0 with at least one positive")
        if any(r > MAX_RATE for r in rates):
            raise ValueError(f"every rate must be at most {MAX_RATE:g}/s")
        return rates


class TraceSource(_Source):
    """Replay of a CSV trace: one row per request."""

    kind: Literal["trace"]
    file: str
    time_column: str = "timestamp"
    time_unit: Literal["s", "ms", "us", "ns"] = "s"
    size_column: Optional[str] = None
    speedup: StrictFloat = Field(1.0, gt=0, le=1e9)
    payload: Size = Field(0.0, ge=0)


Source = Annotated[
    Union[PeriodicSource, PoissonSource, GammaSource, MmppSource, TraceSource],
    Field(discriminator="kind"),
]


class Workload(Strict):
    sources: list[Source] = Field(min_length=1)


# --- pipeline ---------------------------------------------------------------


class StageHilScore(Strict):
    """Which model output is a prefilter's score: element ``index`` of output ``output``, per item."""

    output: str
    index: NonNegativeInt = 0


class StageHil(Strict):
    """How ``dgsim hil run`` runs a stage for real; the simulator ignores it."""

    op: Optional[Literal["parse", "preprocess", "prefilter", "detect", "postprocess", "emulate", "model"]] = Field(
        None, description="default by stage name: parse, preprocess, prefilter, infer/detect -> detect, "
        "postprocess; any other stage is emulated (busy-spin on its cost model)"
    )
    model: Optional[str] = Field(None, description="your own ONNX file for prefilter/detect, relative to the scenario file")
    threshold: Fraction = Field(0.5, description="prefilter: forward a frame when its object probability >= this")
    shapes: dict[str, list[PositiveInt]] = Field(
        default_factory=dict, description="fixed shapes of the model's inputs with dynamic dimensions, by input name")
    inputs: dict[str, str] = Field(
        default_factory=dict, description="generator per model input: random, image, image:raw, audio, tokens:HIGH, "
        "const:VALUE, zeros, npy:PATH, carry:OUTPUT (see docs/partition.md)")
    score: Optional[StageHilScore] = Field(None, description="prefilter with your own model: the score output")


def reference_profile(kind: str) -> str:
    """The device profile a ``kind``'s costs are relative to by default: the one of speed 1."""
    return next((name for name, p in profiles.DEVICES.items() if p.kind == kind and p.speed == 1.0), "")


class BranchTargetSpec(Strict):
    """One branch: the next stage, the share of requests that take it in the simulator, and (by-class) the
    classes of the stage's model output that send a request this way in the harness."""

    stage: str
    probability: Fraction
    classes: list[NonNegativeInt] = Field(default_factory=list, description="by-class: the classes it takes")


class BranchSpec(Strict):
    """The stage sends each request to exactly one of ``to`` (sim.policies.branching)."""

    kind: kind_of(BRANCHING) = Field("by-score", description="by-score: a score in [0, 1] picks the band; "
                                                              "by-class: a class index picks the branch listing it")
    to: list[BranchTargetSpec] = Field(min_length=2, description="the branches, in order; probabilities sum to 1")

    @model_validator(mode="after")
    def _consistent(self):
        total = sum(b.probability for b in self.to)
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"the branches' probabilities must sum to 1, got {total:g}")
        names = [b.stage for b in self.to]
        if len(set(names)) < len(names):
            raise ValueError(f"a stage is listed twice among the branches: {', '.join(names)}")
        if self.kind == "by-class":
            if any(not b.classes for b in self.to[:-1]):
                raise ValueError("by-class: every branch but the last must list its classes (the last takes the rest)")
            listed = [c for b in self.to for c in b.classes]
            if len(set(listed)) < len(listed):
                raise ValueError("by-class: a class is listed by two branches")
        elif any(b.classes for b in self.to):
            raise ValueError("classes are for kind by-class; by-score branches take bands of the score")
        return self


class StageSpec(Strict):
    """A stage of the pipeline; each cost is per device kind, as measured on one device profile.

    A cost's ``on`` names the profile it was measured on (``on: l4``);
    without it the cost is relative to the kind's reference profile
    (``reference_profile``), which is then written into the cost so the
    resolved scenario says which it was. ``sim.plan`` scales each cost to
    the profile of the pool that runs it.
    """

    name: str
    after: Optional[list[str]] = Field(
        None, description="stages this one waits for; default: the previous stage in the list"
    )
    costs: dict[Literal["cpu", "dpu", "gpu"], CostSpec] = Field(min_length=1)
    output: Optional[Size] = Field(None, ge=0, description="bytes sent downstream; default: bytes received")
    pass_probability: Fraction = Field(1.0, description="< 1 for a prefilter: the rest exit early")
    branch: Optional[BranchSpec] = Field(None, description="send each request to one of the successors")
    hil: Optional[StageHil] = None

    @model_serializer(mode="wrap")
    def _without_absent_branch(self, handler):
        """A stage without a branch dumps as it did before there were any."""
        data = handler(self)
        if isinstance(data, dict) and data.get("branch", 0) is None:
            data.pop("branch")
        return data

    @field_validator("costs", mode="before")
    @classmethod
    def _name_the_reference(cls, costs):
        if not isinstance(costs, dict):
            return costs
        out = {}
        for kind, cost in costs.items():
            if isinstance(cost, (str, int, float)) and not isinstance(cost, bool):
                cost = {"kind": "deterministic", "value": cost}
            if isinstance(cost, dict) and cost.get("on") is None and reference_profile(kind):
                cost = {**cost, "on": reference_profile(kind)}
            out[kind] = cost
        return out


class Pipeline(Strict):
    stages: list[StageSpec] = Field(min_length=1)
    reply: Optional[Size] = Field(None, ge=0, description="bytes of the reply; default: the last output")
    entries: dict[str, list[str]] = Field(
        default_factory=dict, description="per request class, the stages its requests enter at; "
        "default: every class enters at every root")

    @model_serializer(mode="wrap")
    def _without_absent_entries(self, handler):
        """A pipeline without per-class entries dumps as it did before there were any."""
        data = handler(self)
        if isinstance(data, dict) and not data.get("entries", 1):
            data.pop("entries")
        return data


# --- policies ---------------------------------------------------------------


class PlacementSpec(Strict):
    strategy: kind_of(STRATEGIES) = "dpu-offload"
    map: dict[str, Union[str, list[str]]] = Field(default_factory=dict)


class RoutingSpec(Strict):
    kind: kind_of(ROUTING) = "round-robin"
    spill_at: PositiveInt = Field(4, description="local-first: jobs per server before spilling to the next tier")


class BatchingSpec(Strict):
    kind: kind_of(BATCHING) = "none"
    max_batch: PositiveInt = Field(1, le=MAX_BATCH)
    max_delay: Duration = Field(0.0, ge=0, description="dynamic/deadline: longest wait of the oldest job")
    timeout: Optional[Duration] = Field(None, gt=0, description="fixed: flush a partial batch after this")


class QueueSpec(Strict):
    kind: kind_of(DISCIPLINES) = "fifo"


class AdmissionSpec(Strict):
    kind: kind_of(ADMISSION) = "none"
    cap: PositiveInt = 64


class SizeBandSpec(Strict):
    below: Optional[Size] = Field(None, gt=0, description="omit for the last band")
    use: Literal["pcie", "rdma", "tcp", "shm", "nvlink", "wan"]


class ChannelSelectionSpec(Strict):
    kind: kind_of(CHANNELS) = "by-size"
    bands: list[SizeBandSpec] = Field(
        default_factory=lambda: [
            SizeBandSpec(below="512 KB", use="tcp"),
            SizeBandSpec(below="4 MB", use="shm"),
            SizeBandSpec(use="rdma"),
        ],
        description="default thresholds (assumed): < 512 KB RPC/TCP, 512 KB - 4 MB shared memory, above RDMA",
    )
    use: Optional[Literal["pcie", "rdma", "tcp", "shm", "nvlink", "wan"]] = Field(None, description="fixed: the kind")
    merge: bool = Field(False, description="messages one device sends to another at the same instant (the jobs of "
                                           "one batch) travel as one message")

    @model_serializer(mode="wrap")
    def _without_default_merge(self, handler):
        """Without ``merge`` the section dumps as it did before there was one."""
        data = handler(self)
        if isinstance(data, dict) and data.get("merge") is False:
            data.pop("merge")
        return data

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "fixed" and self.use is None:
            raise ValueError("a fixed channel needs 'use': the link kind every message takes")
        if any(band.below is None for band in self.bands[:-1]):
            raise ValueError("only the last size band may omit 'below' (the bands after it could never be used)")
        return self


class Policies(Strict):
    placement: PlacementSpec = PlacementSpec()
    routing: RoutingSpec = RoutingSpec()
    batching: dict[str, BatchingSpec] = Field(default_factory=dict, description="per stage; default none")
    queue: QueueSpec = QueueSpec()
    admission: AdmissionSpec = AdmissionSpec()
    channel: ChannelSelectionSpec = ChannelSelectionSpec()



# --- failures and reactions -------------------------------------------------


class FailureSpec(Strict):
    """A device, a pool or a link that fails and recovers (see sim.model.failures).

    Scheduled: down at ``at`` for ``for``. Random: up for a draw of mean
    ``mtbf``, down for a draw of mean ``mttr``, again and again.
    """

    target: str = Field(description="a pool (all its devices), one device 'pool[i]', or a link name")
    at: Optional[Duration] = Field(None, ge=0, le=MAX_DURATION, description="scheduled: when it fails")
    for_: Optional[Duration] = Field(None, gt=0, le=MAX_DURATION, alias="for", description="scheduled: how long it stays down")
    mtbf: Optional[Duration] = Field(None, gt=0, le=MAX_DURATION, description="random: mean time between failures (up time)")
    mttr: Optional[Duration] = Field(None, gt=0, le=MAX_DURATION, description="random: mean time to repair (down time)")
    distribution: Literal["exponential", "fixed"] = Field("exponential", description="random: of up and down times")
    each: bool = Field(True, description="random failures of a pool: each device on its own (true) or all at once")
    in_flight: Literal["fail", "requeue"] = Field(
        "fail", description="fail: every job on the device fails; requeue: waiting jobs go to other devices")

    @model_validator(mode="after")
    def _one_way(self):
        scheduled = self.at is not None or self.for_ is not None
        random = self.mtbf is not None or self.mttr is not None
        if scheduled == random:
            raise ValueError("give either 'at' and 'for' (scheduled) or 'mtbf' and 'mttr' (random)")
        if scheduled and (self.at is None or self.for_ is None):
            raise ValueError("a scheduled failure needs both 'at' and 'for'")
        if random and (self.mtbf is None or self.mttr is None):
            raise ValueError("a random failure needs both 'mtbf' and 'mttr'")
        return self


class RetrySpec(Strict):
    kind: kind_of(RETRY) = "none"
    attempts: NonNegativeInt = Field(1, le=100, description="retries after the first attempt")
    backoff: Duration = Field(0.0, ge=0, description="wait before the first retry")
    multiplier: StrictFloat = Field(2.0, ge=1, le=100, description="exponential: each wait this times the last")
    cap: Optional[Duration] = Field(None, gt=0, description="exponential: longest wait")
    target: Literal["same", "other"] = Field("other", description="retry on the same instance or another one")


class BreakerSpec(Strict):
    kind: kind_of(BREAKERS) = "none"
    failures: PositiveInt = Field(5, le=1_000_000, description="failed attempts in a row that open it")
    open_for: Duration = Field(1.0, gt=0, description="how long it stays open before half-open probes")
    probes: PositiveInt = Field(1, le=1_000_000, description="half-open: attempts let through to test")
    latency: Optional[Duration] = Field(None, gt=0, description="an attempt slower than this counts as failed")


class FallbackSpec(Strict):
    """Where a stage runs when its main path fails: another pool (failover) or a smaller model (degraded)."""

    pools: list[str] = Field(min_length=1, description="pools that run the fallback, in order of preference")
    costs: dict[Literal["cpu", "dpu", "gpu"], CostSpec] = Field(
        default_factory=dict, description="the fallback's cost per device kind; default: the stage's own")
    output: Optional[Size] = Field(None, ge=0, description="bytes sent downstream; default: the stage's")
    degraded: bool = Field(True, description="answers through the fallback end 'degraded' (false: plain failover)")


class StageResilience(Strict):
    timeout: Optional[Duration] = Field(None, gt=0, description="from entering the stage to its end")
    retry: Optional[RetrySpec] = Field(None, description="default: resilience.retry")
    breaker: Optional[BreakerSpec] = Field(None, description="default: resilience.breaker")
    fallback: Optional[FallbackSpec] = None


class ResilienceSpec(Strict):
    timeout: Optional[Duration] = Field(None, gt=0, description="the client gives up after this (outcome timed_out)")
    health_aware: bool = Field(True, description="routers skip devices that are down")
    retry: RetrySpec = RetrySpec()
    breaker: BreakerSpec = BreakerSpec()
    stages: dict[str, StageResilience] = Field(default_factory=dict, description="per stage: timeout, retry, breaker, fallback")


# --- objectives and run -----------------------------------------------------


class LatencyBudget(Strict):
    mean: Optional[Duration] = Field(None, gt=0)
    p50: Optional[Duration] = Field(None, gt=0)
    p90: Optional[Duration] = Field(None, gt=0)
    p95: Optional[Duration] = Field(None, gt=0)
    p99: Optional[Duration] = Field(None, gt=0)
    p999: Optional[Duration] = Field(None, gt=0, alias="p99.9")


class Budgets(Strict):
    latency: LatencyBudget = LatencyBudget()
    throughput_min: Optional[Rate] = Field(None, gt=0)
    drop_rate_max: Optional[Fraction] = None
    miss_rate_max: Optional[Fraction] = None
    filter_rate_max: Optional[Fraction] = None
    utilisation_max: dict[str, Fraction] = Field(default_factory=dict, description="per pool or link name")
    availability_min: Optional[Fraction] = Field(None, description="answered (served, degraded or filtered) / arrived")
    degraded_rate_max: Optional[Fraction] = Field(None, description="degraded answers / arrived")
    timeout_rate_max: Optional[Fraction] = Field(None, description="timed-out requests / arrived")


class Slo(Budgets):
    classes: dict[str, Budgets] = Field(default_factory=dict, description="budgets per request class")


class RunSpec(Strict):
    duration: Duration = Field(10.0, gt=0, le=MAX_DURATION, description="arrivals are generated for this long")
    warmup: Duration = Field(1.0, ge=0, le=MAX_DURATION, description="requests arriving earlier are not measured")
    drain: Duration = Field(5.0, ge=0, le=MAX_DURATION, description="time after the last arrival for requests to finish")
    seed: StrictInt = Field(1, ge=0, lt=2**63)
    replications: PositiveInt = Field(3, le=MAX_REPLICATIONS)


# --- hardware-in-the-loop ---------------------------------------------------


class HilFrames(Strict):
    """The synthetic camera frames requests carry (cycled by request id)."""

    height: PositiveInt = Field(240, le=8192)
    width: PositiveInt = Field(320, le=8192)
    count: PositiveInt = Field(32, le=4096, description="distinct frames; request i carries frame i mod count")


class HilPrefilter(Strict):
    input_size: StrictInt = Field(64, ge=8, le=512, description="the prefilter sees frames downscaled to this square")


class HilDetector(Strict):
    input_size: StrictInt = Field(256, ge=32, le=1280, description="square input, a multiple of 32")
    width: StrictFloat = Field(0.125, gt=0, le=2, description="channel width multiple (YOLOv5 'n' is 0.25)")

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, size):
        if size % 32:
            raise ValueError(f"must be a multiple of 32, got {size}")
        return size


class HilCores(Strict):
    front: Optional[list[NonNegativeInt]] = Field(None, description="CPU ids of the DPU-side process")
    gpu: Optional[list[NonNegativeInt]] = Field(None, description="CPU ids of the GPU-side process")


class HilFault(Strict):
    """A fault ``dgsim hil run`` injects for real (hil.runner.faults); the simulator ignores it.

    kill / hang: SIGKILL (restarted after ``for``) or SIGSTOP (SIGCONT after ``for``) the GPU-side
    worker; drop / delay: lose (with ``probability``) or hold back by ``delay`` the messages between
    the processes in ``direction``; raise: the op of ``stage`` raises instead of running.
    """

    kind: Literal["kill", "hang", "drop", "delay", "raise"]
    at: Duration = Field(ge=0, le=MAX_DURATION, description="when it starts (run clock)")
    for_: Optional[Duration] = Field(None, gt=0, le=MAX_DURATION, alias="for",
                                     description="how long; absent: until the run ends (no recovery)")
    direction: Literal["to-gpu", "to-front", "both"] = Field("both", description="drop/delay: which messages")
    probability: float = Field(1.0, gt=0, le=1, description="drop: the share of messages lost")
    delay: Optional[Duration] = Field(None, gt=0, le=MAX_DURATION, description="delay: added to each message")
    stage: Optional[str] = Field(None, description="raise: the stage whose op raises")

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "delay" and self.delay is None:
            raise ValueError("a delay fault needs 'delay'")
        if self.kind == "raise" and not self.stage:
            raise ValueError("a raise fault needs 'stage'")
        return self


class HilSettings(Strict):
    """Sizes and cores for ``dgsim hil run``; the simulator ignores this section."""


    frames: HilFrames = HilFrames()
    prefilter: HilPrefilter = HilPrefilter()
    detector: HilDetector = HilDetector()
    cores: HilCores = HilCores()
    cache: str = Field(".dgsim-cache", description="built models are kept in <cache>/models (relative to the working directory)")
    faults: list[HilFault] = Field(default_factory=list, description="faults injected for real (besides failures:)")
    gpu_failure: Literal["kill", "hang"] = Field(
        "kill", description="how a failures: entry on a gpu pool or device is injected into the GPU-side worker")


class SweepSpec(Strict):
    """A parameter grid for ``dgsim sweep`` (sim.explore.grid): any dotted path ``--set`` accepts."""

    grid: dict[str, list[Union[bool, int, float, str]]] = Field(min_length=1, description="dotted path -> values")
    zip: bool = Field(False, description="pair the i-th values of every path instead of taking every combination")


class CostOverride(Strict):
    """Prices that replace the device profiles' (sim.explore.cost)."""

    per_hour: dict[str, float] = Field(
        default_factory=dict, description="US dollars per hour for one device of the pool (one core for a cpu pool)")
    amortisation_hours: float = Field(26280.0, gt=0, description="a bought device's list price is spread over this")

    @field_validator("per_hour")
    @classmethod
    def _non_negative(cls, prices):
        if any(v < 0 for v in prices.values()):
            raise ValueError("prices must be >= 0")
        return prices


class Scenario(Strict):
    name: str
    description: str = ""
    hardware: Hardware
    workload: Workload
    pipeline: Pipeline
    policies: Policies = Policies()
    slo: Slo = Slo()
    run: RunSpec = RunSpec()
    hil: Optional[HilSettings] = Field(None, description="hardware-in-the-loop settings (dgsim hil run)")
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named overrides of any of the above, compared on common random numbers"
    )
    sweep: Optional[SweepSpec] = Field(None, description="a sweep dgsim sweep runs when given no --grid")
    cost: Optional[CostOverride] = Field(None, description="prices per pool, overriding the profiles' (dgsim capacity, sweep)")
    failures: list[FailureSpec] = Field(default_factory=list, description="devices and links that fail and recover")
    resilience: ResilienceSpec = Field(ResilienceSpec(), description="timeouts, retries, breakers, fallbacks")
    topology: Optional[TopologySpec] = Field(None, description="servers and sites with locality (sim.topology)")

    @model_validator(mode="after")
    def _some_pools(self):
        if not self.hardware.pools and self.topology is None:
            raise ValueError("hardware.pools: declare at least one pool (or a topology)")
        return self

    @model_serializer(mode="wrap")
    def _without_absent_topology(self, handler):
        """A scenario without a topology dumps as it did before there was one."""
        data = handler(self)
        if self.topology is None and isinstance(data, dict):
            data.pop("topology", None)
        return data
