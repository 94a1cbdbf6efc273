"""How long a piece of work takes: service-time models.

A stage's cost on a device kind, or a link's per-message latency, is one of:

- ``deterministic``: always ``value`` (a bare duration such as ``"2 ms"`` is
  shorthand for this);
- ``exponential``: memoryless, with ``mean``;
- ``lognormal``: positive and right-skewed, with ``mean`` and coefficient of
  variation ``cv`` (the usual shape of measured software latencies);
- ``empirical``: resampled from measured ``samples``;
- ``affine``: ``base + per_item * B`` for a batch of ``B``, times lognormal
  noise of coefficient of variation ``cv`` (GPU inference is affine in the
  batch size up to saturation);
- ``calibrated``: an entry of a calibration file measured by ``dgsim hil
  calibrate`` (``sim.calibration``; resolved when the plan is compiled).

The first four describe one item; a batch of ``B`` items takes ``B`` times
one draw. The spec classes are the scenario schema; ``Sampler`` is what the
model draws from. Samplers draw their random numbers in blocks from their
own generator, so a stage's draws do not depend on what other stages did
(common random numbers across designs).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Annotated, Callable, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveFloat

from sim.units import Duration

_BLOCK = 1024


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    on: Optional[str] = Field(None, description="stage costs: the device profile this cost was measured on "
                              "(sim.plan scales it to the pool's profile); default: the kind's reference part")


class Deterministic(_Spec):
    kind: Literal["deterministic"] = "deterministic"
    value: Duration = Field(ge=0)

    def mean(self, batch: int = 1) -> float:
        return self.value * batch


class Exponential(_Spec):
    kind: Literal["exponential"]
    mean_: Duration = Field(alias="mean", gt=0)

    def mean(self, batch: int = 1) -> float:
        return self.mean_ * batch


class Lognormal(_Spec):
    kind: Literal["lognormal"]
    mean_: Duration = Field(alias="mean", gt=0)
    cv: PositiveFloat

    def mean(self, batch: int = 1) -> float:
        return self.mean_ * batch


class Empirical(_Spec):
    kind: Literal["empirical"]
    samples: list[Duration] = Field(min_length=1)

    def mean(self, batch: int = 1) -> float:
        return float(np.mean(self.samples)) * batch


class Affine(_Spec):
    kind: Literal["affine"]
    base: Duration = Field(ge=0)
    per_item: Duration = Field(ge=0)
    cv: float = Field(0.0, ge=0)

    def mean(self, batch: int = 1) -> float:
        return self.base + self.per_item * batch


class Calibrated(_Spec):
    """An entry of a calibration file; ``file`` is relative to the scenario's folder."""

    kind: Literal["calibrated"]
    file: str = Field(min_length=1)
    entry: str = Field(min_length=1)


def _shorthand(value: object) -> object:
    return {"kind": "deterministic", "value": value} if isinstance(value, (str, int, float)) else value


CostSpec = Annotated[
    Annotated[Union[Deterministic, Exponential, Lognormal, Empirical, Affine, Calibrated], Field(discriminator="kind")],
    BeforeValidator(_shorthand),
]


@dataclass
class _Draws:
    """Random numbers drawn a block at a time from one generator.

    The block is an array of doubles, used from its end: 8 bytes a draw rather than a pointer and a
    float object (32). A city has a sampler per stage and device, each with a block waiting, and a
    draw is taken from each only now and then: a draw that shares its cache line with seven others
    (the next ones) is less often a miss (reports/sim-speed.md, issue 11)."""

    rng: np.random.Generator
    draw: Callable[[np.random.Generator, int], np.ndarray]
    _block: array = field(default_factory=lambda: array("d"))

    def next(self) -> float:
        block = self._block
        if not block:  # refilled in place (Sampler holds it); reversed, so that pop() takes them in order
            block.frombytes(np.asarray(self.draw(self.rng, _BLOCK), dtype=np.float64)[::-1].tobytes())
        return block.pop()


def _lognormal_params(cv: float) -> tuple[float, float]:
    """mu offset and sigma of a lognormal with mean 1 and the given cv."""
    sigma2 = math.log1p(cv * cv)
    return -sigma2 / 2, math.sqrt(sigma2)


@dataclass
class Sampler:
    """Draws service times for batches from one cost spec."""

    spec: Union[Deterministic, Exponential, Lognormal, Empirical, Affine]
    scale: float
    _draws: _Draws | None

    def __post_init__(self) -> None:
        # ``sample`` as one of its cases, chosen once (it runs once per batch): the same arithmetic
        if not isinstance(self.spec, Affine):
            self.sample = self._fixed if self._draws is None else self._drawn

    def _fixed(self, batch: int = 1) -> float:
        return self.spec.value * batch * self.scale

    def _drawn(self, batch: int = 1) -> float:
        block = self._draws._block
        return (block.pop() if block else self._draws.next()) * batch * self.scale

    def sample(self, batch: int = 1) -> float:
        spec = self.spec
        if isinstance(spec, Affine):
            noise = self._draws.next() if self._draws else 1.0
            return (spec.base + spec.per_item * batch) * noise * self.scale
        if self._draws is None:
            return spec.value * batch * self.scale
        return self._draws.next() * batch * self.scale

    def sample_bytes(self, size: float) -> float:
        """A link's latency for a message of ``size`` bytes: these models do not depend on it."""
        return self.sample(1)

    def mean(self, batch: int = 1) -> float:
        return self.spec.mean(batch) * self.scale


def make_sampler(spec, rng: np.random.Generator, scale: float = 1.0) -> Sampler:
    """A sampler for ``spec`` whose times are multiplied by ``scale``.

    ``scale`` converts a cost stated for the reference device of a kind into
    the cost on a faster or slower one (``1 / speed``).
    """
    if isinstance(spec, Deterministic):
        return Sampler(spec, scale, None)
    if isinstance(spec, Exponential):
        mean = spec.mean_
        return Sampler(spec, scale, _Draws(rng, lambda g, n: g.exponential(mean, n)))
    if isinstance(spec, Lognormal):
        mu, sigma = _lognormal_params(spec.cv)
        mu += math.log(spec.mean_)
        return Sampler(spec, scale, _Draws(rng, lambda g, n: g.lognormal(mu, sigma, n)))
    if isinstance(spec, Empirical):
        values = np.asarray(spec.samples, dtype=float)
        return Sampler(spec, scale, _Draws(rng, lambda g, n: g.choice(values, n)))
    if isinstance(spec, Affine):
        if spec.cv == 0:
            return Sampler(spec, scale, None)
        mu, sigma = _lognormal_params(spec.cv)
        return Sampler(spec, scale, _Draws(rng, lambda g, n: g.lognormal(mu, sigma, n)))
    from sim.calibration import CalibratedCost  # here, not at the top: sim.calibration imports this module

    if isinstance(spec, CalibratedCost):
        return spec.sampler(rng, scale)
    if isinstance(spec, Calibrated):
        raise TypeError(f"calibrated cost {spec.file}:{spec.entry} must be resolved by sim.plan.compile_plan first")
    raise TypeError(f"not a cost spec: {spec!r}")
