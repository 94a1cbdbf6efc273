"""A model's inputs: what it declares, how dynamic dimensions are fixed, and how values are generated.

Any ONNX model can run in the harness (or be partitioned) once each of its
inputs has a concrete shape and a *generator*. ``signature`` reads the
model's declared inputs (name, dtype, dims: an int, or a name/None where
dynamic); ``resolve_inputs`` fixes every dynamic dimension from the user's
shapes (the batch dimension, axis 0, defaults to 1) and attaches a generator
to each input, returning one problem string per input it cannot settle
(naming the input and showing the model's actual signature).

Generators are named by a short spec (a registry; ``GENERATORS``):

    random         floats uniform in [0, 1); integers in [0, 2); booleans
    image          synthetic camera frames (``hil.models.make_frames``) resized to
                   (N, 3, H, W), scaled to [0, 1] and normalised with ImageNet's
                   mean and std; ``image:raw`` skips the normalisation
    audio          (N, T) float waveforms: a few seeded sines plus noise, peak 0.5
    tokens:HIGH    integer ids uniform in [0, HIGH)
    const:VALUE    every element VALUE, in the input's dtype (e.g. ``sr`` = 16000)
    zeros          every element 0
    npy:PATH       a user's .npy file; item i of the batch is row i mod rows
    carry:OUTPUT   (harness only) zeros on the first call, then the model's own
                   output OUTPUT of the previous call (recurrent state)
    previous:STAGE (set by the harness, not by users) the tensor of that name sent
                   by the previous model stage (a split model's crossing tensors)

Values depend only on the seed and the item index, so a run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import onnx
from onnx import helper

Dim = Union[int, str, None]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # torchvision's ImageNet normalisation
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass(frozen=True)
class DeclaredInput:
    """One graph input as the model declares it."""

    name: str
    dtype: np.dtype
    dims: tuple[Dim, ...]  # int: fixed; str: named dynamic; None: unnamed dynamic

    def text(self) -> str:
        return f"{self.name}: {self.dtype} ({', '.join('?' if d is None else str(d) for d in self.dims)})"


def signature(model: onnx.ModelProto) -> tuple[DeclaredInput, ...]:
    """The model's real inputs (initializers listed as inputs are weights, not inputs)."""
    weights = {t.name for t in model.graph.initializer}
    found = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                     for d in tensor.shape.dim)
        found.append(DeclaredInput(value.name, np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)), dims))
    return tuple(found)


def signature_text(inputs: tuple[DeclaredInput, ...]) -> str:
    return "; ".join(i.text() for i in inputs)


@dataclass(frozen=True)
class Generator:
    """A named way of making an input's values: ``kind`` and its argument (or '')."""

    kind: str
    argument: str = ""

    @classmethod
    def parse(cls, spec: str) -> Generator:
        kind, _, argument = spec.strip().partition(":")
        if kind not in GENERATORS:
            raise ValueError(f"unknown generator {spec!r} (known: {', '.join(sorted(GENERATORS))})")
        generator = cls(kind, argument)
        generator.check()
        return generator

    def check(self) -> None:
        if self.kind == "tokens" and not (self.argument.isdigit() and int(self.argument) > 0):
            raise ValueError(f"tokens needs a positive integer bound, e.g. tokens:30522, got {self.argument!r}")
        if self.kind == "const":
            try:
                float(self.argument)
            except ValueError:
                raise ValueError(f"const needs a number, e.g. const:16000, got {self.argument!r}") from None
        if self.kind in ("npy", "carry", "previous") and not self.argument:
            raise ValueError(f"{self.kind} needs an argument ({'a .npy path' if self.kind == 'npy' else 'an output name'})")
        if self.kind == "image" and self.argument not in ("", "raw"):
            raise ValueError(f"image takes no argument or 'raw', got {self.argument!r}")

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.argument}" if self.argument else self.kind


@dataclass(frozen=True)
class InputPlan:
    """One input with a concrete per-call shape and its generator."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # axis 0 is the batch when ``batched``
    generator: Generator
    batched: bool  # axis 0 is the batch dimension (items can be stacked along it)

    def values(self, items: list[int], seed: int, base: Optional[Path] = None) -> np.ndarray:
        """The input for a call carrying ``items`` (request ids); batch = len(items) when batched."""
        if not self.batched:
            return _make(self.generator, self.shape, self.dtype, seed, items[0], base)
        one = (1, *self.shape[1:])
        return np.concatenate([_make(self.generator, one, self.dtype, seed, item, base) for item in items])


def resolve_inputs(inputs: tuple[DeclaredInput, ...], shapes: dict[str, list[int]], generators: dict[str, str],
                   default_batch: int = 1) -> tuple[list[InputPlan], list[str]]:
    """Concrete plans for ``inputs``, and one problem line per input that cannot be settled."""
    problems = []
    plans = []
    names = {i.name for i in inputs}
    batch_names = {i.dims[0] for i in inputs if i.dims and isinstance(i.dims[0], str)}
    for name in sorted(set(shapes) - names):
        problems.append(f"shape given for '{name}', which is not an input of the model")
    for name in sorted(set(generators) - names):
        problems.append(f"generator given for '{name}', which is not an input of the model")
    for declared in inputs:
        given = shapes.get(declared.name)
        if given is not None:
            shape = tuple(int(d) for d in given)
            bad = [f"axis {k}: model says {d}, given {s}" for k, (d, s) in enumerate(zip(declared.dims, shape))
                   if isinstance(d, int) and d != s]
            if len(shape) != len(declared.dims) or bad:
                problems.append(f"input '{declared.name}': shape {list(shape)} does not fit the model's "
                                f"{declared.text()}" + (f" ({'; '.join(bad)})" if bad else ""))
                continue
        else:
            dynamic = [k for k, d in enumerate(declared.dims)
                       if not isinstance(d, int) and k != 0 and d not in batch_names]
            if dynamic:
                problems.append(f"input '{declared.name}' has dynamic dimensions at axes {dynamic} "
                                f"({declared.text()}); give its shape, e.g. {declared.name}:"
                                + "x".join(str(d) if isinstance(d, int) else ("1" if k == 0 else "N")
                                           for k, d in enumerate(declared.dims)))
                continue
            shape = tuple(d if isinstance(d, int) else default_batch for d in declared.dims)  # the batch dims
        try:
            generator = Generator.parse(generators.get(declared.name) or default_generator(declared, shape))
        except ValueError as error:
            problems.append(f"input '{declared.name}': {error}")
            continue
        batched = bool(declared.dims) and not isinstance(declared.dims[0], int) and len(shape) > 0
        plans.append(InputPlan(declared.name, declared.dtype, shape, generator, batched))
    return plans, problems


def default_generator(declared: DeclaredInput, shape: tuple[int, ...]) -> str:
    """Image frames for float (N, 3, H, W) inputs; random values of the dtype otherwise."""
    if declared.dtype.kind == "f" and len(shape) == 4 and shape[1] == 3 and min(shape[2:]) >= 8:
        return "image"
    return "random"


def parse_shape(text: str) -> list[int]:
    """'1x3x640x640' -> [1, 3, 640, 640]; '' or 'scalar' -> []."""
    if text.strip() in ("", "scalar"):
        return []
    dims = [d.strip() for d in text.lower().split("x")]
    if not all(d.isdigit() and int(d) > 0 for d in dims):
        raise ValueError(f"shape {text!r} should be positive integers joined by 'x', e.g. 1x3x640x640")
    return [int(d) for d in dims]


# --- generators -----------------------------------------------------------------------------------------------

def _rng(seed: int, item: int) -> np.random.Generator:
    return np.random.default_rng([seed, item])


def _random(g, shape, dtype, seed, item, base):
    rng = _rng(seed, item)
    if dtype.kind == "f":
        return rng.random(shape, np.float32).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    return rng.integers(0, 2, shape).astype(dtype)


def _tokens(g, shape, dtype, seed, item, base):
    return _rng(seed, item).integers(0, int(g.argument), shape).astype(dtype)


def _const(g, shape, dtype, seed, item, base):
    return np.full(shape, float(g.argument)).astype(dtype)


def _zeros(g, shape, dtype, seed, item, base):
    return np.zeros(shape, dtype)


def _image(g, shape, dtype, seed, item, base):
    from hil.models.preprocess import to_model_input
    from hil.models.synthetic_frames import make_frames

    if len(shape) != 4 or shape[1] != 3:
        raise ValueError(f"image frames need a (N, 3, H, W) input, this one is {list(shape)}")
    n, _, h, w = shape
    frames = make_frames(n, seed * 1_000_003 + item, h, w, 0.5).images
    x = to_model_input(frames, h, w)
    if g.argument != "raw":
        x = (x - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]
    return x.astype(dtype)


def _audio(g, shape, dtype, seed, item, base):
    if dtype.kind != "f" or len(shape) < 1:
        raise ValueError(f"audio frames need a float (N, T) input, this one is {dtype} {list(shape)}")
    rng = _rng(seed, item)
    t = np.arange(shape[-1], dtype=np.float64) / 16000.0
    lead = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    rows = []
    for _ in range(lead):
        f = rng.uniform(80, 4000, 3)
        wave = sum(np.sin(2 * np.pi * fk * t + rng.uniform(0, 6.3)) for fk in f) / 3
        rows.append(0.5 * wave * rng.uniform(0, 1) + 0.01 * rng.standard_normal(len(t)))
    return np.asarray(rows).reshape(shape).astype(dtype)


def _npy(g, shape, dtype, seed, item, base):
    path = Path(g.argument)
    if base is not None and not path.is_absolute():
        path = base / path
    data = np.load(path)
    if data.dtype != dtype:
        raise ValueError(f"{path}: holds {data.dtype}, the input takes {dtype}")
    if tuple(data.shape[1:]) == tuple(shape[1:]) and len(shape) == data.ndim:
        return data[[item % len(data)]][: shape[0]] if shape[0] == 1 else data[: shape[0]]
    if tuple(data.shape) == tuple(shape):
        return data
    raise ValueError(f"{path}: shape {list(data.shape)} fits neither {list(shape)} nor rows of {list(shape[1:])}")


GENERATORS: dict[str, Callable] = {
    "random": _random, "image": _image, "audio": _audio, "tokens": _tokens, "const": _const, "zeros": _zeros,
    "npy": _npy, "carry": _zeros,  # carry: zeros on the first call; the harness feeds the previous output after
    "previous": _zeros,  # set by the harness: the tensor comes from the previous stage (zeros only to warm up)
}


def _make(g: Generator, shape, dtype, seed: int, item: int, base: Optional[Path]) -> np.ndarray:
    value = np.asarray(GENERATORS[g.kind](g, tuple(shape), np.dtype(dtype), seed, item, base))
    return np.require(value, requirements="C")  # np.ascontiguousarray would make a scalar 1-d
