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

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from sim.costs import CostSpec
from sim.units import Bandwidth, Duration, Rate, Size

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
CLIENT = "client"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- hardware ---------------------------------------------------------------


class PoolSpec(Strict):
    """``count`` identical devices of one profile."""

    profile: str
    count: PositiveInt = 1
    servers: Optional[PositiveInt] = Field(
        None,
        validation_alias=AliasChoices("servers", "cores", "streams"),
        description="cores (cpu, dpu) or execution streams (gpu) per device; default from profile",
    )
    speed: Optional[float] = Field(None, gt=0, description="relative to the kind's reference part")


class LinkSpec(Strict):
    """A link between two endpoints (pools, or ``client`` for the network side)."""

    name: str
    between: tuple[str, str]
    profile: Optional[str] = None
    kind: Optional[Literal["pcie", "rdma", "tcp", "shm", "nvlink", "wan"]] = None
    bandwidth: Optional[Bandwidth] = Field(None, gt=0)
    latency: Optional[CostSpec] = None
    overhead: Optional[Duration] = Field(None, ge=0)
    contention: Optional[Literal["fifo", "shared"]] = Field(
        None, description="fifo: one message at a time per direction; shared: fair share of bandwidth"
    )
    sharing: Literal["per-pair", "shared"] = Field(
        "per-pair", description="per-pair: one link per pair of device instances; shared: one for all"
    )


class Hardware(Strict):
    pools: dict[str, PoolSpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)


# --- workload ---------------------------------------------------------------


class _Source(Strict):
    name: str
    class_: str = Field("default", alias="class")
    priority: int = 0
    deadline: Optional[Duration] = Field(None, gt=0)
    payload: Size = Field(ge=0)


class PeriodicSource(_Source):
    """``streams`` cameras, each sending at ``rate`` with random phase and jitter."""

    kind: Literal["periodic"]
    streams: PositiveInt = 1
    rate: Union[Rate, tuple[Rate, Rate]] = Field(description="one rate, or [low, high] drawn per stream")
    jitter: Duration = Field(0.0, ge=0, description="standard deviation of each frame's offset")

    @field_validator("rate")
    @classmethod
    def _positive(cls, rate):
        rates = rate if isinstance(rate, tuple) else (rate,)
        if any(r <= 0 for r in rates):
            raise ValueError("rate must be positive")
        if isinstance(rate, tuple) and rate[0] > rate[1]:
            raise ValueError("rate range must be [low, high] with low <= high")
        return rate


class PoissonSource(_Source):
    kind: Literal["poisson"]
    rate: Rate = Field(gt=0)


class GammaSource(_Source):
    """Renewal arrivals with gamma gaps; ``cv`` > 1 is burstier than Poisson."""

    kind: Literal["gamma"]
    rate: Rate = Field(gt=0)
    cv: float = Field(gt=0)


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
        return rates


class TraceSource(_Source):
    """Replay of a CSV trace: one row per request."""

    kind: Literal["trace"]
    file: str
    time_column: str = "timestamp"
    time_unit: Literal["s", "ms", "us", "ns"] = "s"
    size_column: Optional[str] = None
    speedup: float = Field(1.0, gt=0)
    payload: Size = Field(0.0, ge=0)


Source = Annotated[
    Union[PeriodicSource, PoissonSource, GammaSource, MmppSource, TraceSource],
    Field(discriminator="kind"),
]


class Workload(Strict):
    sources: list[Source] = Field(min_length=1)


# --- pipeline ---------------------------------------------------------------


class StageHil(Strict):
    """How ``dgsim hil run`` runs a stage for real; the simulator ignores it."""

    op: Optional[Literal["parse", "preprocess", "prefilter", "detect", "postprocess", "emulate"]] = Field(
        None, description="default by stage name: parse, preprocess, prefilter, infer/detect -> detect, "
        "postprocess; any other stage is emulated (busy-spin on its cost model)"
    )
    model: Optional[str] = Field(None, description="your own ONNX file for prefilter/detect, relative to the scenario file")
    threshold: Fraction = Field(0.5, description="prefilter: forward a frame when its object probability >= this")


class StageSpec(Strict):
    name: str
    after: Optional[list[str]] = Field(
        None, description="stages this one waits for; default: the previous stage in the list"
    )
    costs: dict[Literal["cpu", "dpu", "gpu"], CostSpec] = Field(min_length=1)
    output: Optional[Size] = Field(None, ge=0, description="bytes sent downstream; default: bytes received")
    pass_probability: Fraction = Field(1.0, description="< 1 for a prefilter: the rest exit early")
    hil: Optional[StageHil] = None


class Pipeline(Strict):
    stages: list[StageSpec] = Field(min_length=1)
    reply: Optional[Size] = Field(None, ge=0, description="bytes of the reply; default: the last output")


# --- policies ---------------------------------------------------------------


class PlacementSpec(Strict):
    strategy: Literal["cpu-path", "dpu-offload", "explicit"] = "dpu-offload"
    map: dict[str, Union[str, list[str]]] = Field(default_factory=dict)


class RoutingSpec(Strict):
    kind: Literal["round-robin", "shortest-queue", "power-of-two", "random", "local-first"] = "round-robin"
    spill_at: PositiveInt = Field(4, description="local-first: jobs per server before spilling to the next tier")


class BatchingSpec(Strict):
    kind: Literal["none", "fixed", "dynamic", "deadline"] = "none"
    max_batch: PositiveInt = 1
    max_delay: Duration = Field(0.0, ge=0, description="dynamic/deadline: longest wait of the oldest job")
    timeout: Optional[Duration] = Field(None, gt=0, description="fixed: flush a partial batch after this")


class QueueSpec(Strict):
    kind: Literal["fifo", "priority", "edf"] = "fifo"


class AdmissionSpec(Strict):
    kind: Literal["none", "queue-cap", "deadline"] = "none"
    cap: PositiveInt = 64


class SizeBandSpec(Strict):
    below: Optional[Size] = Field(None, gt=0, description="omit for the last band")
    use: Literal["pcie", "rdma", "tcp", "shm", "nvlink", "wan"]


class ChannelSelectionSpec(Strict):
    kind: Literal["by-size", "fixed"] = "by-size"
    bands: list[SizeBandSpec] = Field(
        default_factory=lambda: [
            SizeBandSpec(below="512 KB", use="tcp"),
            SizeBandSpec(below="4 MB", use="shm"),
            SizeBandSpec(use="rdma"),
        ],
        description="seed thresholds: < 512 KB RPC/TCP, 512 KB - 4 MB shared memory, above RDMA",
    )
    use: Optional[Literal["pcie", "rdma", "tcp", "shm", "nvlink", "wan"]] = Field(None, description="fixed: the kind")

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


class Slo(Budgets):
    classes: dict[str, Budgets] = Field(default_factory=dict, description="budgets per request class")


class RunSpec(Strict):
    duration: Duration = Field(10.0, gt=0, description="arrivals are generated for this long")
    warmup: Duration = Field(1.0, ge=0, description="requests arriving earlier are not measured")
    drain: Duration = Field(5.0, ge=0, description="time after the last arrival for requests to finish")
    seed: int = Field(1, ge=0)
    replications: PositiveInt = 3


# --- hardware-in-the-loop ---------------------------------------------------


class HilFrames(Strict):
    """The synthetic camera frames requests carry (cycled by request id)."""

    height: PositiveInt = 240
    width: PositiveInt = 320
    count: PositiveInt = Field(32, description="distinct frames; request i carries frame i mod count")


class HilPrefilter(Strict):
    input_size: int = Field(64, ge=8, le=512, description="the prefilter sees frames downscaled to this square")


class HilDetector(Strict):
    input_size: int = Field(256, ge=32, le=1280, description="square input, a multiple of 32")
    width: float = Field(0.125, gt=0, le=2, description="channel width multiple (YOLOv5 'n' is 0.25)")

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, size):
        if size % 32:
            raise ValueError(f"must be a multiple of 32, got {size}")
        return size


class HilCores(Strict):
    front: Optional[list[NonNegativeInt]] = Field(None, description="CPU ids of the DPU-side process")
    gpu: Optional[list[NonNegativeInt]] = Field(None, description="CPU ids of the GPU-side process")


class HilSettings(Strict):
    """Sizes and cores for ``dgsim hil run``; the simulator ignores this section."""

    frames: HilFrames = HilFrames()
    prefilter: HilPrefilter = HilPrefilter()
    detector: HilDetector = HilDetector()
    cores: HilCores = HilCores()
    cache: str = Field(".dgsim-cache", description="built models are kept in <cache>/models (relative to the working directory)")


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
