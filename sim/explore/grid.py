"""Sweep grids: dotted paths and their values, as points to simulate.

``--grid path=v1,v2,...`` takes any dotted path ``--set`` accepts; values
are split on commas outside brackets and quotes (``rate=[25 fps, 30 fps]``
is one value). The points are every combination of the paths' values
(cartesian, first path slowest), or with ``zip`` the i-th value of every
path together. A scenario's ``sweep:`` section declares the same grid.

Every point is validated, for every variant, before anything runs, so a
bad path or value is reported (one line each) instead of a failed sweep.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from sim.scenario.schema import Scenario


class GridError(ValueError):
    """A grid that cannot be read (one line per problem)."""

    def __init__(self, lines: Sequence[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


@dataclass(frozen=True)
class Axis:
    path: str
    values: tuple[str, ...]  # as typed: each is the text after '=' of a --set override


@dataclass(frozen=True)
class Point:
    index: int
    settings: tuple[tuple[str, str], ...]  # (path, value) in axis order

    @property
    def overrides(self) -> list[str]:
        return [f"{path}={value}" for path, value in self.settings]


def split_values(text: str) -> list[str]:
    """Comma-separated values, commas inside [], {} or quotes kept."""
    out, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    out.append("".join(current).strip())
    return out


def parse_grid(texts: Sequence[str]) -> list[Axis]:
    """``path=v1,v2`` options as axes; GridError listing every malformed one."""
    axes, problems = [], []
    for text in texts:
        path, sep, values = text.partition("=")
        path = path.strip()
        parts = split_values(values) if sep else []
        if not sep or not path or any(not p for p in path.split(".")):
            problems.append(f"--grid {text}: expected dotted.path=v1,v2,..., e.g. workload.sources.cameras.streams=16,32")
        elif not any(parts) or any(p == "" for p in parts):
            problems.append(f"--grid {text}: empty value in the list; expected dotted.path=v1,v2,...")
        elif path in [a.path for a in axes]:
            problems.append(f"--grid {text}: '{path}' is already swept by another --grid")
        else:
            axes.append(Axis(path, tuple(parts)))
    if problems:
        raise GridError(problems)
    return axes


def axes_of(section) -> list[Axis]:
    """The axes of a scenario's ``sweep:`` section (values written back as YAML text)."""
    import yaml

    def text(value) -> str:
        return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()

    return [Axis(path, tuple(text(v) for v in values)) for path, values in section.grid.items()]


def points(axes: Sequence[Axis], zipped: bool) -> list[Point]:
    """Every point of the grid, in a fixed order."""
    if not axes:
        raise GridError(["empty grid: give --grid path=v1,v2 (or a sweep: section in the scenario)"])
    if zipped:
        lengths = {len(a.values) for a in axes}
        if len(lengths) > 1:
            raise GridError([f"--zip: every --grid needs as many values; got "
                             f"{', '.join(f'{a.path}: {len(a.values)}' for a in axes)}"])
        combos = zip(*(a.values for a in axes))
    else:
        combos = itertools.product(*(a.values for a in axes))
    return [Point(i, tuple(zip((a.path for a in axes), combo))) for i, combo in enumerate(combos)]


# Fields that do not change what is simulated, left out of a point's identity.
_NOT_SIMULATED = ("name", "description", "sweep", "cost", "hil", "variants")


def scenario_key(scenario: Scenario, base_dir: Path, digests: Optional[dict[Path, str]] = None) -> str:
    """A hash of everything that decides a simulation's numbers: the cache key of a point's result.

    That is the resolved scenario and the contents of every file it refers to (a ``file:`` field:
    calibration files, trace replays; relative to ``base_dir``, the scenario's folder), so editing a
    calibration file or a trace makes the cached points that read it stale. ``digests`` caches
    each file's hash across the cells of one sweep.
    """
    data = scenario.model_dump(mode="json", exclude=set(_NOT_SIMULATED))
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    files = {name: _digest(Path(base_dir) / name, digests if digests is not None else {})
             for name in sorted(set(referenced_files(data)))}
    listed = json.dumps(files, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"dgsim-sweep-v2\n{text}\n{listed}".encode()).hexdigest()[:32]


def referenced_files(data: Any) -> list[str]:
    """Every ``file`` field's value in a scenario's JSON form, in document order."""
    if isinstance(data, dict):
        found = [data["file"]] if isinstance(data.get("file"), str) else []
        return found + [f for value in data.values() for f in referenced_files(value)]
    if isinstance(data, list):
        return [f for value in data for f in referenced_files(value)]
    return []


def _digest(path: Path, digests: dict[Path, str]) -> str:
    if path not in digests:
        try:
            digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as error:  # validation reports a missing file; the key only needs to differ
            digests[path] = f"unreadable: {type(error).__name__}"
    return digests[path]
