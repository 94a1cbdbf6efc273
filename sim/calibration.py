"""Calibration files: measured costs that scenarios sample from.

A tailor measures a customer once and cuts every suit from the card. ``dgsim
hil calibrate`` is the measuring: it times every stage of a pipeline on the
real backends and transports of one host and writes the figures to a YAML
card, the calibration file. A scenario then names an entry of that file
wherever it would state a cost::

    costs:
      gpu: {kind: calibrated, file: calib/this-host.yaml, entry: infer}

and the simulator draws its service times from the measurement.

An entry is one of two kinds:

- ``affine``: time = (a + b * x) * r, where x is the batch size
  (``x: batch``) or the message size in bytes (``x: bytes``), a + b * x is
  the mean latency at x, and r is a residual *ratio* drawn from the stored
  quantiles. ``dgsim hil calibrate`` stores each sample divided by the mean
  of its x: the spread around the line, with mean 1 (how far the line
  misses the measured means is the fit error, ``r2``, ``mape`` and
  ``points``). Ratios, not differences: timing noise grows with the work (a
  batch of 16 jitters more in seconds than a batch of 1), and a transport
  fit spans bytes to megabytes, so a difference learnt at 4 MB would swamp
  a 64-byte message. A ratio is always positive, so a draw is never
  negative.
- ``distribution``: the latency itself, drawn from stored quantiles (one
  item; a batch of B takes B draws' worth, like every per-item cost).
- ``host_cost``: the CPU time one end of a transport spends on a message of
  n bytes, ``per_message + per_byte * n`` (CPU seconds, not wall time: a
  blocked wait costs none), fitted from measured CPU time. A link's
  ``send_cost`` or ``receive_cost`` names it (``Resolver.host_cost``).

Quantiles are drawn by inverse CDF: u ~ U(0, 1), then linear interpolation
between the stored (level, value) points; levels start at 0 and end at 1,
so a draw stays within the measured range.

This module is the simulator's side: the file format (pydantic models,
versioned ``format: dgsim-calibration/1``), loading with errors that name the
file and the field, writing, and the samplers. It never imports ``hil``.
The format is documented in docs/calibration.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, model_validator

from sim.costs import Calibrated, _Draws
from sim.scenario.safe_yaml import YamlProblem, read_yaml_file

FORMAT = "dgsim-calibration/1"
_FORMAT_PREFIX = "dgsim-calibration/"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Quantiles(_Model):
    """A distribution as (level, value) points of its quantile function."""

    levels: list[float] = Field(min_length=2, description="probabilities, increasing from 0 to 1")
    values: list[float] = Field(min_length=2, description="the quantile at each level, non-decreasing")

    @model_validator(mode="after")
    def _check(self) -> Quantiles:
        levels, values = self.levels, self.values
        if len(levels) != len(values):
            raise ValueError(f"levels and values must have the same length, got {len(levels)} and {len(values)}")
        if levels[0] != 0.0 or levels[-1] != 1.0 or any(b <= a for a, b in zip(levels, levels[1:])):
            raise ValueError("levels must increase strictly from 0 to 1")
        if any(not math.isfinite(v) for v in values) or any(b < a for a, b in zip(values, values[1:])):
            raise ValueError("values must be finite and non-decreasing")
        return self

    def mean(self) -> float:
        """The mean of the piecewise-linear quantile function (what the sampler draws)."""
        p, q = np.asarray(self.levels), np.asarray(self.values)
        return float(np.sum(np.diff(p) * (q[1:] + q[:-1]) / 2))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws by inverse CDF with linear interpolation."""
        return np.interp(rng.random(n), self.levels, self.values)


class Point(_Model):
    """One measured x of an affine entry: its sample count, mean and median, and whether it settled."""

    x: float
    n: PositiveInt
    mean: float = Field(gt=0)
    p50: float = Field(gt=0)
    stable: bool
    windows: PositiveInt


class AffineEntry(_Model):
    """time = (a + b * x) * r; r drawn from ``residual`` (each sample / the mean at its x)."""

    kind: Literal["affine"]
    x: Literal["batch", "bytes"]
    a: float = Field(description="seconds")
    b: float = Field(description="seconds per item (x: batch) or per byte (x: bytes)")
    residual: Quantiles = Field(description="quantiles of the ratio sample / mean at its x (> 0, mean ~1)")
    r2: float = Field(description="coefficient of determination of the fit to the mean at each measured x")
    mape: float = Field(ge=0, description="mean absolute percentage error of the fit to those means, a fraction")
    n: PositiveInt = Field(description="samples behind the fit")
    stable: bool = Field(description="every point settled (3 consecutive windows within 10%)")
    windows: PositiveInt = Field(description="measurement windows over all points")
    measured: str = Field("", description="what ran, where")
    points: list[Point] = Field(min_length=2)

    @model_validator(mode="after")
    def _positive_ratio(self) -> AffineEntry:
        if self.residual.values[0] <= 0:
            raise ValueError("residual ratios must be positive")
        return self

    def fitted(self, x: float) -> float:
        return self.a + self.b * x

    def mean(self, x: float) -> float:
        return self.fitted(x) * self.residual.mean()


class DistributionEntry(_Model):
    """A latency drawn from ``quantiles`` (seconds)."""

    kind: Literal["distribution"]
    quantiles: Quantiles
    sample_mean: float = Field(gt=0, description="arithmetic mean of the samples, seconds")
    n: PositiveInt
    stable: bool
    windows: PositiveInt
    measured: str = ""

    @model_validator(mode="after")
    def _non_negative(self) -> DistributionEntry:
        if self.quantiles.values[0] < 0:
            raise ValueError("latency quantiles must be >= 0")
        return self

    def mean(self) -> float:
        return self.quantiles.mean()


class HostCostPoint(_Model):
    """One measured message size of a host-cost entry: CPU and wall time per message (seconds)."""

    bytes: NonNegativeInt
    n: PositiveInt
    cpu_mean: float = Field(ge=0)
    cpu_p50: float = Field(ge=0)
    wall_mean: float = Field(ge=0, description="wall-clock time of the same calls: >= CPU; the excess is waiting")


TRANSPORTS = ("shm", "tcp", "rdma", "cuda")
# the link kinds a transport's host cost describes (a WAN link is a TCP stream too; CUDA copies cross PCIe)
LINK_KINDS_OF = {"shm": ("shm",), "tcp": ("tcp", "wan"), "rdma": ("rdma",), "cuda": ("pcie",)}


class HostCostEntry(_Model):
    """CPU time one end of a transport spends per message: ``per_message + per_byte * bytes`` (CPU seconds)."""

    kind: Literal["host_cost"]
    transport: Literal["shm", "tcp", "rdma", "cuda"]
    side: Literal["send", "receive"]
    per_message: float = Field(description="CPU seconds per message (the fit's intercept)")
    per_byte: float = Field(description="CPU seconds per payload byte (the fit's slope)")
    per_message_ci: tuple[float, float] = Field(description="95% confidence interval of per_message")
    per_byte_ci: tuple[float, float] = Field(description="95% confidence interval of per_byte")
    r2: float = Field(description="coefficient of determination of the fit to the mean CPU time at each size")
    mape: float = Field(ge=0, description="mean absolute percentage error of the fit to those means, a fraction")
    n: PositiveInt = Field(description="messages behind the fit")
    measured: str = Field("", description="what ran, where, how")
    points: list[HostCostPoint] = Field(min_length=2)

    def cpu(self, size: float) -> float:
        return self.per_message + self.per_byte * size


Entry = Annotated[Union[AffineEntry, DistributionEntry, HostCostEntry], Field(discriminator="kind")]


class Provenance(_Model):
    """Where, when and with what the figures were measured."""

    host: str
    cpu_model: str
    cores: PositiveInt
    versions: dict[str, str] = Field(description="python, numpy, onnxruntime, dgsim, ...")
    date: str = Field(description="ISO 8601, UTC")
    scenario: str = ""
    variant: str = ""
    command: str = ""
    load_average: Optional[tuple[float, float]] = Field(None, description="1-minute load at start and end")
    notes: list[str] = Field(default_factory=list)


class Method(_Model):
    """The measurement rule every entry was taken under."""

    warmup_s: float = Field(ge=0)
    window_samples: PositiveInt
    window_s: float = Field(gt=0)
    max_windows: PositiveInt
    consecutive: PositiveInt
    tolerance: float = Field(gt=0)
    quick: bool = False


class CalibrationFile(_Model):
    format: Literal["dgsim-calibration/1"]
    provenance: Provenance
    method: Method
    entries: dict[str, Entry] = Field(min_length=1)

    def unstable(self) -> list[str]:
        return unstable_entries(self.entries)


def unstable_entries(entries: dict[str, Any]) -> list[str]:
    """Entries taken under the stability rule that never settled (host costs are counted, not windowed)."""
    return [name for name, entry in entries.items()
            if isinstance(entry, (AffineEntry, DistributionEntry)) and not entry.stable]


# --- reading and writing ------------------------------------------------------


class CalibrationError(ValueError):
    """A calibration file cannot be used; each problem names the file and the field."""

    def __init__(self, file: str | Path, problems: list[tuple[Optional[str], str]]):
        self.file = str(file)
        self.problems = problems  # (field, message); field None: the message goes on the file's sentence
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        def line(field: Optional[str], message: str) -> str:
            if field is None:
                return f"calibration file {self.file} {message}"
            return f"calibration file {self.file}: {f'{field}: ' if field else ''}{message}"

        return [line(field, message) for field, message in self.problems]


_cache: dict[tuple[str, int, int], CalibrationFile] = {}


def load_calibration(path: str | Path) -> CalibrationFile:
    """Read and check a calibration file (parsed once per file version: cached by path and mtime)."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise CalibrationError(path, [("", "file not found")]) from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _cache:
        _cache[key] = _parse(path)
    return _cache[key]


def _parse(path: Path) -> CalibrationFile:
    try:
        document = read_yaml_file(path)
    except OSError as error:
        raise CalibrationError(path, [("", f"cannot read: {error.strerror}")]) from None
    except YamlProblem as problem:  # not YAML, binary, not UTF-8, too big, an alias bomb, duplicate keys
        raise CalibrationError(path, [(problem.where, problem.message)]) from None
    if not isinstance(document, dict):
        raise CalibrationError(path, [("", "expected a mapping with format, provenance, method and entries")])
    found = document.get("format")
    if found != FORMAT:
        if found is None:
            message = f"missing; expected '{FORMAT}' (is this a calibration file?)"
        elif isinstance(found, str) and found.startswith(_FORMAT_PREFIX):
            message = f"version '{found}' is not supported: this dgsim reads '{FORMAT}'"
        else:
            message = f"expected '{FORMAT}', got {found!r}"
        raise CalibrationError(path, [("format", message)])
    try:
        return CalibrationFile.model_validate(document)
    except ValidationError as error:
        raise CalibrationError(path, [(_dotted(e["loc"]), _message(e)) for e in error.errors()]) from None


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if part in ("affine", "distribution", "host_cost"):  # pydantic's union branch, already named by `kind`
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "extra_forbidden":
        return "unknown field"
    message = error["msg"].removeprefix("Value error, ")
    return message if error["type"] in ("value_error", "union_tag_invalid") else f"{message}, got {error.get('input')!r}"


def write_calibration(calibration: CalibrationFile, path: str | Path) -> Path:
    """Write ``calibration`` as YAML (atomically); ``load_calibration`` reads back an equal object."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# dgsim calibration file (written by `dgsim hil calibrate`); format: docs/calibration.md\n"
    text += yaml.safe_dump(calibration.model_dump(mode="json"), sort_keys=False, width=110, default_flow_style=None)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def entry_of(calibration: CalibrationFile, name: str, file: str | Path
             ) -> AffineEntry | DistributionEntry | HostCostEntry:
    """The entry ``name``, or a CalibrationError listing the entries there are."""
    entry = calibration.entries.get(name)
    if entry is None:
        raise CalibrationError(file, [(None, f"has no entry '{name}'; it has: {', '.join(calibration.entries)}")])
    return entry


# --- what the simulator draws from ---------------------------------------------


@dataclass(frozen=True)
class CalibratedCost:
    """A scenario's ``calibrated`` cost with its entry loaded: what a plan holds.

    ``floor`` is subtracted from each residual ratio: a link whose bytes fit
    gives its overhead and bandwidth carries only the excess over the
    fastest ratio as latency (see ``Resolver.link``). ``scale`` converts the
    measurement to the reference device of its kind when the scenario says
    it was measured on another (``on:``; see ``sim.plan``), and ``on`` is
    the profile the scenario named.
    """

    file: str
    name: str
    entry: AffineEntry | DistributionEntry
    floor: float = 0.0
    scale: float = 1.0
    on: Optional[str] = None

    def mean(self, batch: int = 1) -> float:
        entry = self.entry
        if isinstance(entry, DistributionEntry):
            return entry.mean() * batch * self.scale
        return entry.fitted(batch) * (entry.residual.mean() - self.floor) * self.scale

    def sampler(self, rng: np.random.Generator, scale: float = 1.0) -> CalibratedSampler:
        return CalibratedSampler(self, rng, scale * self.scale)

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """The scenario form, with the file's absolute path (for the resolved scenario written with results)."""
        out: dict[str, Any] = {"kind": "calibrated", "file": str(Path(self.file).resolve()), "entry": self.name}
        return {**out, "on": self.on} if self.on else out


class CalibratedSampler:
    """Draws from a calibration entry; the same interface as ``sim.costs.Sampler``."""

    __slots__ = ("cost", "scale", "_a", "_b", "_affine", "_bytes", "_floor", "_draws")

    def __init__(self, cost: CalibratedCost, rng: np.random.Generator, scale: float):
        entry = cost.entry
        self.cost, self.scale = cost, scale
        self._affine = isinstance(entry, AffineEntry)
        quantiles = entry.residual if self._affine else entry.quantiles
        self._a, self._b = (entry.a, entry.b) if self._affine else (0.0, 1.0)
        self._bytes = self._affine and entry.x == "bytes"
        self._floor = cost.floor
        self._draws = _Draws(rng, quantiles.draw)

    def sample(self, batch: int = 1) -> float:
        """Service time of a batch (x = batch size; a distribution is per item)."""
        if self._affine:
            return (self._a + self._b * batch) * (self._draws.next() - self._floor) * self.scale
        return self._draws.next() * batch * self.scale

    def sample_bytes(self, size: float) -> float:
        """Latency of one message of ``size`` bytes (x = bytes for a bytes fit)."""
        if self._bytes:
            return (self._a + self._b * size) * (self._draws.next() - self._floor) * self.scale
        return self.sample(1)

    def mean(self, batch: int = 1) -> float:
        return self.cost.mean(batch) / self.cost.scale * self.scale


Report = Callable[[str, str], None]


class Resolver:
    """Resolves a scenario's ``calibrated`` costs for one plan, loading each file once.

    Files are relative to the scenario's folder (``base_dir``). Every
    failure is reported through ``problem(field path, message)``; the spec
    is then returned unchanged and the plan is not built.
    """

    def __init__(self, base_dir: Path, problem: Report):
        self.base_dir = Path(base_dir)
        self.problem = problem

    def _entry(self, spec: Calibrated, path: str) -> Optional[CalibratedCost]:
        file = Path(spec.file) if Path(spec.file).is_absolute() else self.base_dir / spec.file
        try:
            calibration = load_calibration(file)
        except CalibrationError as error:
            for line in error.lines():
                self.problem(f"{path}.file", line)
            return None
        try:
            return CalibratedCost(str(file), spec.entry, entry_of(calibration, spec.entry, file))
        except CalibrationError as error:
            self.problem(f"{path}.entry", error.lines()[0])
            return None

    def stage_cost(self, spec: Any, path: str) -> Any:
        """A stage's cost: a batch fit (x = batch size) or a per-item distribution."""
        if not isinstance(spec, Calibrated):
            return spec
        cost = self._entry(spec, path)
        if cost is None:
            return spec
        entry = cost.entry
        if isinstance(entry, HostCostEntry):
            self.problem(f"{path}.entry", f"entry '{spec.entry}' of {cost.file} is a transport's host CPU cost; "
                         "a stage cost needs a fit in batch size or a distribution")
            return spec
        if isinstance(entry, AffineEntry):
            if entry.x != "batch":
                self.problem(f"{path}.entry", f"entry '{spec.entry}' of {cost.file} is a fit in {entry.x}; "
                             "a stage cost needs a fit in batch size or a distribution")
                return spec
            largest = max(p.x for p in entry.points)
            if entry.fitted(1) <= 0 or entry.fitted(largest) <= 0:
                self.problem(f"{path}.entry", f"entry '{spec.entry}' of {cost.file}: a + b * x is not positive "
                             f"over the measured batch sizes 1..{largest:g}; calibrate again")
                return spec
        return cost

    def link(self, spec: Any, path: str, bandwidth: Optional[float], overhead: float
             ) -> tuple[Any, Optional[float], float]:
        """A link's (latency, bandwidth, overhead) when its latency is calibrated.

        A distribution is the per-message latency; bandwidth and overhead stay.
        A bytes fit is the whole idle transfer: with q0 the smallest residual
        ratio, the link is held for q0 * (a + b * n) (overhead q0 * a,
        bandwidth 1 / (q0 * b)), and the message arrives (a + b * n) * (r - q0)
        later, so an idle link takes (a + b * n) * r as measured while the
        link's contention sees the transport's fastest copy. A bandwidth or
        overhead the link sets itself overrides the fit's (a profile's does not).
        """
        latency = spec.latency
        cost = self._entry(latency, f"{path}.latency")
        placeholder = bandwidth if bandwidth is not None else math.inf  # no second complaint about bandwidth
        if cost is None:
            return latency, placeholder, overhead
        entry = cost.entry
        if isinstance(entry, DistributionEntry):
            return cost, bandwidth, overhead
        where = f"entry '{latency.entry}' of {cost.file}"
        if isinstance(entry, HostCostEntry):
            self.problem(f"{path}.latency.entry", f"{where} is a transport's host CPU cost; a link latency needs "
                         "a fit in bytes or a distribution (host costs go in send_cost or receive_cost)")
            return latency, placeholder, overhead
        if entry.x != "bytes":
            self.problem(f"{path}.latency.entry", f"{where} is a fit in batch size; a link latency needs a "
                         "fit in bytes or a distribution")
            return latency, placeholder, overhead
        if entry.a < 0 or entry.b < 0:
            self.problem(f"{path}.latency.entry", f"{where} has a negative intercept or slope "
                         f"(a={entry.a:g} s, b={entry.b:g} s/byte): it cannot give a link overhead and bandwidth")
            return latency, placeholder, overhead
        q0 = entry.residual.values[0]
        rate = spec.bandwidth or (1 / (q0 * entry.b) if entry.b > 0 else math.inf)
        hold = spec.overhead if spec.overhead is not None else q0 * entry.a
        return CalibratedCost(cost.file, cost.name, entry, floor=q0), rate, hold

    def host_cost(self, spec: Calibrated, path: str, side: Literal["send", "receive"], link_kind: Optional[str]
                  ) -> Optional[tuple[float, float]]:
        """A link's ``send_cost`` or ``receive_cost`` from a ``host_cost`` entry: (CPU s per message, per byte).

        The entry must have been measured on this side of a transport of the
        link's kind (``LINK_KINDS_OF``), and its figures must be CPU times
        (not negative). None, with a problem reported, otherwise.
        """
        if spec.on is not None:
            self.problem(f"{path}.on", "a host CPU cost is used as measured, not scaled by device speed: remove 'on'")
            return None
        cost = self._entry(spec, path)
        if cost is None:
            return None
        entry, where = cost.entry, f"entry '{spec.entry}' of {cost.file}"
        if not isinstance(entry, HostCostEntry):
            self.problem(f"{path}.entry", f"{where} is a latency entry ({entry.kind}); {side}_cost needs a "
                         f"host_cost entry (e.g. host.{link_kind or 'shm'}.{side}, written by dgsim hil calibrate)")
            return None
        if entry.side != side:
            self.problem(f"{path}.entry", f"{where} is the {entry.side} side's CPU cost; {side}_cost needs "
                         f"the {side} side's (e.g. host.{entry.transport}.{side})")
            return None
        if link_kind is not None and link_kind not in LINK_KINDS_OF[entry.transport]:
            fits = [t for t, kinds in LINK_KINDS_OF.items() if link_kind in kinds]
            expected = f"host.{fits[0]}.{side}" if fits else f"an entry of a transport of kind {link_kind}"
            self.problem(f"{path}.entry", f"{where} was measured on transport {entry.transport}, but the link is "
                         f"of kind {link_kind}: expected {expected}")
            return None
        if entry.per_message < 0 or entry.per_byte < 0:
            self.problem(f"{path}.entry", f"{where} has a negative per-message or per-byte CPU time "
                         f"({entry.per_message:g} s, {entry.per_byte:g} s/byte): calibrate again")
            return None
        return entry.per_message, entry.per_byte
