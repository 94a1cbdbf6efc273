"""The per-request table: the common currency of simulated and measured runs.

One row per request; the scheme is documented in docs/results-format.md and
versioned by ``FORMAT`` (recorded in summary.json). Fixed columns:
``variant``, ``replication``, ``id``, ``source``, ``class``, ``priority``,
``arrival``, ``deadline`` (absolute; inf if none), ``size`` (bytes),
``done``, ``latency`` (``done - arrival``), ``outcome`` (a label of
``sim.contract.outcomes.Outcome``) and ``reply_link``. Per stage, columns
named ``<stage>__<field>`` (``column(stage, field)``) for each field of
``STAGE_FIELDS``: ``enqueued``, ``start``, ``end``, ``device``, ``batch``
(an id unique in the replication), ``batch_size`` and ``link`` (the link
the stage's input arrived over). No column name holds a dot, so
``frame.query("infer__start > 2")`` works for any stage whose name is an
identifier (others need backticks). Times are seconds from the start of
the run. The hardware harness writes the same columns from real
timestamps (null where it does not observe a field), so everything
downstream reads both alike.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from sim.contract.outcomes import LABELS, SERVED_LABELS

FORMAT = "dgsim-requests/2"  # 1: dotted per-stage names, no variant/batch/link columns
SEPARATOR = "__"
STAGE_FIELDS = ("enqueued", "start", "end", "device", "batch", "batch_size", "link")
SERVED = SERVED_LABELS
NO_LINK = -1


def column(stage: str, field: str) -> str:
    """The name of one per-stage column: ``column("infer", "start") == "infer__start"``."""
    return f"{stage}{SEPARATOR}{field}"


def stage_names(frame: pd.DataFrame) -> list[str]:
    """The stages of a request table, in column order."""
    suffix = SEPARATOR + "start"
    return [c.removesuffix(suffix) for c in frame.columns if c.endswith(suffix)]


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
    outcome: Union[Sequence[str], np.ndarray],
    source_names: Sequence[str],
    class_names: Sequence[str],
    stage_names: Sequence[str],
    enqueued: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    device: np.ndarray,
    device_names: Sequence[str],
    batch: Optional[np.ndarray] = None,
    link: Optional[np.ndarray] = None,
    reply_link: Optional[np.ndarray] = None,
    link_names: Sequence[str] = (),
    variant: str = "",
    batch_size: Optional[np.ndarray] = None,
) -> pd.DataFrame:
    """Assemble the table; the per-stage arrays are (requests, stages).

    ``outcome``: labels, or ``Outcome`` values as an integer array. ``device``,
    ``batch``, ``batch_size`` and ``link`` use -1 for "none"; ``batch``,
    ``link`` and ``reply_link`` may be omitted (the columns are then null);
    without ``batch_size`` a request's batch size is the number of rows
    with its batch id.
    """
    n, width = len(ids), len(stage_names)
    columns: dict[str, object] = {
        "variant": pd.Categorical([variant] * n, categories=[variant]),
        "replication": np.full(n, replication, dtype=np.int32),
        "id": ids.astype(np.int64),
        "source": pd.Categorical.from_codes(source, categories=list(source_names)),
        "class": pd.Categorical.from_codes(klass, categories=list(class_names)),
        "priority": priority.astype(np.int32),
        "arrival": arrival,
        "deadline": deadline,
        "size": size,
        "done": done,
        "latency": done - arrival,
        "outcome": _outcomes(outcome),
        "reply_link": _named(reply_link if reply_link is not None else np.full(n, NO_LINK), link_names),
    }
    missing = np.full((n, width), -1, dtype=np.int64)
    batch = missing if batch is None else np.asarray(batch, dtype=np.int64).reshape(n, width)
    link = missing if link is None else np.asarray(link, dtype=np.int64).reshape(n, width)
    for j, name in enumerate(stage_names):
        columns[column(name, "enqueued")] = enqueued[:, j]
        columns[column(name, "start")] = start[:, j]
        columns[column(name, "end")] = end[:, j]
        columns[column(name, "device")] = _named(device[:, j], device_names)
        ids_j, sizes_j = _batches(batch[:, j]) if batch_size is None else (
            _masked(batch[:, j], batch[:, j] >= 0), _masked(batch_size[:, j], batch_size[:, j] >= 0))
        columns[column(name, "batch")] = ids_j
        columns[column(name, "batch_size")] = sizes_j
        columns[column(name, "link")] = _named(link[:, j], link_names)
    return pd.DataFrame(columns)


def parquet_options(schema) -> dict:
    """How the table is written to Parquet (``pyarrow.parquet.ParquetWriter`` / ``write_table`` keywords, for
    a ``pyarrow.Schema``): dictionary encoding for the categorical columns (device, link, outcome and other
    names) only. Times and ids are almost all distinct: pyarrow would try a dictionary for each column of
    each row group and give it up, which was three quarters of the write time (reports/sim-speed.md)."""
    import pyarrow as pa

    return {"use_dictionary": [field.name for field in schema if pa.types.is_dictionary(field.type)]}


def write_parquet(frame: pd.DataFrame, path) -> None:
    """Write a request table (or part of one) to ``path`` as ``parquet_options`` says."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, **parquet_options(table.schema))


def _outcomes(outcome: Union[Sequence[str], np.ndarray]) -> pd.Categorical:
    """The outcome column from labels, or from ``Outcome`` values (value i is ``LABELS[i]``)."""
    if isinstance(outcome, np.ndarray) and outcome.dtype.kind in "iu":
        return pd.Categorical.from_codes(outcome.astype(np.int8), categories=list(LABELS))
    return pd.Categorical(list(outcome), categories=list(LABELS))


def _named(codes: np.ndarray, names: Sequence[str]) -> pd.Categorical:
    """Indices into ``names`` (unique: device or link names) as a categorical; -1 is null."""
    return pd.Categorical.from_codes(np.asarray(codes, dtype=np.int64), categories=list(names))


def _batches(ids: np.ndarray) -> tuple[pd.arrays.IntegerArray, pd.arrays.IntegerArray]:
    """Batch ids (null for none) and the size of each request's batch."""
    valid = ids >= 0
    sizes = np.zeros(len(ids), dtype=np.int64)
    if valid.any():
        _, inverse, counts = np.unique(ids[valid], return_inverse=True, return_counts=True)
        sizes[valid] = counts[inverse]
    return _masked(ids, valid), _masked(sizes, valid)


def _masked(values: np.ndarray, valid: np.ndarray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(valid, values, 0).astype(np.int64), ~valid)
