"""The per-request table: the common currency of simulated and measured runs.

One row per request. Fixed columns: ``id``, ``replication``, ``source``,
``class``, ``priority``, ``arrival``, ``deadline`` (absolute; inf if none),
``size`` (bytes), ``done``, ``latency`` (``done - arrival``) and ``outcome``
(completed, deadline_missed, filtered, dropped, unfinished, failed), plus
for each stage ``<stage>.enqueued``, ``<stage>.start``, ``<stage>.end`` and
``<stage>.device``. Times are seconds from the start of the run. The
hardware harness writes the same columns from real timestamps, so
everything downstream (summaries, checks, validation) reads both alike.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

OUTCOMES = ("completed", "deadline_missed", "filtered", "dropped", "unfinished", "failed")
SERVED = ("completed", "deadline_missed")


def request_frame(
    *,
    replication: int,
    ids: np.ndarray,
    source: np.ndarray,
    klass: np.ndarray,
    priority: np.ndarray,
    arrival: np.ndarray,
    deadline: np.ndarray,
    size: np.ndarray,
    done: np.ndarray,
    outcome: Sequence[str],
    source_names: Sequence[str],
    class_names: Sequence[str],
    stage_names: Sequence[str],
    enqueued: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    device: np.ndarray,
    device_names: Sequence[str],
) -> pd.DataFrame:
    """Assemble the table; ``enqueued``/``start``/``end``/``device`` are (requests, stages)."""
    columns: dict[str, object] = {
        "id": ids.astype(np.int64),
        "replication": np.full(len(ids), replication, dtype=np.int32),
        "source": pd.Categorical.from_codes(source, categories=list(source_names)),
        "class": pd.Categorical.from_codes(klass, categories=list(class_names)),
        "priority": priority.astype(np.int32),
        "arrival": arrival,
        "deadline": deadline,
        "size": size,
        "done": done,
        "latency": done - arrival,
        "outcome": pd.Categorical(list(outcome), categories=list(OUTCOMES)),
    }
    labels = np.array(list(device_names) + [None], dtype=object)
    for j, name in enumerate(stage_names):
        columns[f"{name}.enqueued"] = enqueued[:, j]
        columns[f"{name}.start"] = start[:, j]
        columns[f"{name}.end"] = end[:, j]
        columns[f"{name}.device"] = pd.Categorical(labels[device[:, j]], categories=list(device_names))
    return pd.DataFrame(columns)


def stage_names(frame: pd.DataFrame) -> list[str]:
    return [c.removesuffix(".start") for c in frame.columns if c.endswith(".start")]
