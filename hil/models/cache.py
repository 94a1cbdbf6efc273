"""Build the models once, keep them on disk, rebuild only when the spec changes.

Training the prefilter takes seconds and building the detector less, but
both must be the same files every time a scenario runs. ``ensure_models``
names each file after a hash of its spec (and of a format version bumped
whenever the recipe in this package changes), so a new resolution or seed
gets a new file and an unchanged spec reuses the old one. Files are written
to a temporary name in the same folder and renamed into place, so a reader
never sees half a model, and two builders racing for one file both leave a
complete one. The cache folder is always the caller's: nothing is written
at import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import onnx

from hil.models.detector import DetectorSpec, build_detector
from hil.models.prefilter import PrefilterSpec, build_prefilter

FORMAT_VERSION = 1  # bump when a build recipe changes, so old cache entries are not reused
Spec = TypeVar("Spec")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines the two model files."""

    prefilter: PrefilterSpec = field(default_factory=PrefilterSpec)
    detector: DetectorSpec = field(default_factory=DetectorSpec)


@dataclass(frozen=True)
class ModelPaths:
    """Where the built models are."""

    prefilter: Path
    detector: Path


def ensure_models(cache_dir: Path, spec: ModelSpec) -> ModelPaths:
    """Paths of both models for ``spec``, building whichever is not in ``cache_dir`` yet."""
    return ModelPaths(
        prefilter=ensure_model(cache_dir, "prefilter", spec.prefilter, build_prefilter),
        detector=ensure_model(cache_dir, "detector", spec.detector, build_detector),
    )


def ensure_model(cache_dir: Path, kind: str, spec: Spec, build: Callable[[Spec], onnx.ModelProto]) -> Path:
    """``cache_dir/<kind>-<spec hash>.onnx``, built by ``build(spec)`` if absent."""
    path = Path(cache_dir) / f"{kind}-{spec_key(spec)}.onnx"
    if not path.exists():
        write_atomic(path, build(spec).SerializeToString())
    return path


def spec_key(spec) -> str:
    """A short stable hash of a spec dataclass and the format version."""
    text = json.dumps({"format": FORMAT_VERSION, "type": type(spec).__name__, **asdict(spec)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
