"""Which model file a calibration entry measured, so a scenario cannot use figures of another model.

``dgsim hil calibrate`` writes ``model <path> sha256 <hex>`` into the
``measured`` text of every entry of a stage that runs a model. When a
scenario takes a stage's cost from such an entry, ``mismatch`` compares the
recorded content hash with the stage's model file now: a different file (or
the same path with other content) is refused before the run, naming the
stage, the calibration file and both hashes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Optional

_TAG = re.compile(r"model (\S+) sha256 ([0-9a-f]{64})")


def model_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_tag(path: Path) -> str:
    """The words a calibration entry carries about the model it measured."""
    return f"model {Path(path).resolve()} sha256 {model_sha256(path)}"


def recorded_model(measured: str) -> Optional[tuple[str, str]]:
    """(path, sha256) recorded in an entry's ``measured`` text, or None (no model, or an older file)."""
    found = _TAG.search(measured or "")
    return (found.group(1), found.group(2)) if found else None


def mismatch(measured: str, model: Path) -> Optional[str]:
    """Why an entry measured with another model cannot cost ``model`` (None when it is the same file content)."""
    recorded = recorded_model(measured)
    if recorded is None:
        return None
    now = model_sha256(model)
    if recorded[1] == now:
        return None
    return (f"was measured with model {recorded[0]} (sha256 {recorded[1][:12]}...), but the stage now runs {model} "
            f"(sha256 {now[:12]}...): calibrate again with 'dgsim hil calibrate'")
