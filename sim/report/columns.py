"""Reading the per-request table, whatever its column scheme.

The report, trace and compare commands read a results folder's
``requests/<variant>.parquet`` only through this module, so a change of
the table's column names is one edit here. Two schemes are understood:

- ``dgsim-requests/2`` (``sim.metrics.records.column``): per-stage columns
  ``<stage>__<field>``, with ``batch``, ``batch_size`` and ``link`` (the
  link the stage's input arrived over) and a ``reply_link`` column;
- ``dgsim-requests/1``: dotted names ``<stage>.<field>`` with only
  ``enqueued``, ``start``, ``end`` and ``device``.

``stage_columns(frame)`` gives, per stage in table order, numpy arrays of
its timestamps and labels (``None`` where a field is absent or null).
``read_requests`` and ``resolved_scenario`` read a results folder's table
and the scenario each variant ran (``resolved/<variant>.yaml``); ``stage_graph``
gives each stage's predecessors and pools from it, for causal chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sim.scenario.schema import Scenario

SEPARATORS = ("__", ".")  # the current scheme first, then the dotted one


@dataclass(frozen=True)
class StageColumns:
    """One stage of every request: times in seconds (NaN: never reached), labels as objects (None: none)."""

    name: str
    enqueued: np.ndarray
    start: np.ndarray
    end: np.ndarray
    device: np.ndarray
    batch: Optional[np.ndarray]  # batch id (float, NaN for none); None: not recorded
    batch_size: Optional[np.ndarray]  # size of the request's batch (float, NaN for none)
    link: Optional[np.ndarray]  # link name the stage's input arrived over (object, None for none)


def separator(frame: pd.DataFrame) -> str:
    for sep in SEPARATORS:
        if any(c.endswith(sep + "start") for c in frame.columns):
            return sep
    return SEPARATORS[0]


def stage_names(frame: pd.DataFrame) -> list[str]:
    suffix = separator(frame) + "start"
    return [c.removesuffix(suffix) for c in frame.columns if c.endswith(suffix)]


def _labels(series: pd.Series) -> np.ndarray:
    values = series.astype(object).to_numpy()
    return np.array([None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA else str(v)
                     for v in values], dtype=object)


def _numbers(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy(na_value=np.nan)


def stage_columns(frame: pd.DataFrame) -> list[StageColumns]:
    sep = separator(frame)
    out = []
    for name in stage_names(frame):
        def get(field: str) -> Optional[pd.Series]:
            key = f"{name}{sep}{field}"
            return frame[key] if key in frame.columns else None

        batch, size, link = get("batch"), get("batch_size"), get("link")
        out.append(StageColumns(
            name=name,
            enqueued=_numbers(get("enqueued")),
            start=_numbers(get("start")),
            end=_numbers(get("end")),
            device=_labels(get("device")),
            batch=None if batch is None else _numbers(batch),
            batch_size=None if size is None else _numbers(size),
            link=None if link is None or link.isna().all() else _labels(link),
        ))
    return out


def reply_link(frame: pd.DataFrame) -> Optional[np.ndarray]:
    """The link each reply went over, where the table records it."""
    if "reply_link" not in frame.columns or frame["reply_link"].isna().all():
        return None
    return _labels(frame["reply_link"])


def read_requests(folder: Path, variant: str) -> pd.DataFrame:
    """``requests/<variant>.parquet`` of a results folder."""
    return pd.read_parquet(folder / "requests" / f"{variant}.parquet")


def resolved_scenario(folder: Path, variant: str) -> "tuple[Optional[Scenario], Optional[str]]":
    """The scenario a variant ran, or None and why not."""
    import yaml
    from pydantic import ValidationError

    from sim.scenario.safe_yaml import YamlProblem, read_yaml_file
    from sim.scenario.schema import Scenario

    path = folder / "resolved" / f"{variant}.yaml"
    try:
        return Scenario.model_validate(read_yaml_file(path)), None
    except OSError:
        return None, f"{path}: missing"
    except (yaml.YAMLError, YamlProblem) as error:
        return None, f"{path}: not valid YAML ({error})"
    except ValidationError as error:
        first = error.errors()[0]
        return None, f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}"


@dataclass(frozen=True)
class StageGraph:
    """What the trace needs of a pipeline: each stage's predecessors, and the links between endpoints."""

    preds: dict[str, tuple[str, ...]]
    links: tuple[tuple[str, frozenset], ...]  # (link name, its two ends)

    def links_between(self, a: str, b: str) -> list[str]:
        ends = frozenset((a, b))
        return [name for name, between in self.links if between == ends]


def stage_graph(scenario: "Optional[Scenario]", stages: list[str]) -> StageGraph:
    """Predecessors of each stage in the table: the scenario's ``after`` (default: the previous stage),
    followed through stages the table lacks (skipped by placement); a linear chain without a scenario."""
    chain = {name: (stages[k - 1],) if k else () for k, name in enumerate(stages)}
    if scenario is None:
        return StageGraph(chain, ())
    declared = [s.name for s in scenario.pipeline.stages]
    after = {s.name: tuple(s.after) if s.after is not None else ((declared[k - 1],) if k else ())
             for k, s in enumerate(scenario.pipeline.stages)}

    def active(name: str) -> tuple[str, ...]:
        out: list[str] = []
        for pred in after.get(name, ()):
            out += [pred] if pred in stages else list(active(pred))
        return tuple(dict.fromkeys(out))

    preds = {name: active(name) if name in after else chain[name] for name in stages}
    links = tuple((link.name, frozenset(link.between)) for link in scenario.hardware.links)
    return StageGraph(preds, links)


def pool_of(device: Optional[str]) -> Optional[str]:
    """The pool of a device instance name: ``gpu[0]`` -> ``gpu``."""
    return None if device is None else device.split("[", 1)[0]
