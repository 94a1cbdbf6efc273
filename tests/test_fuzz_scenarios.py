"""Fuzzing the shipped scenarios through ``dgsim run``: exit 0 or a clean exit 2, never a traceback.

Hypothesis mutates the files in scenarios/ the ways a hand edit or a bad
pull request does: a key dropped, a value of the wrong type, two values
swapped, a key renamed to odd unicode, a huge, negative, infinite or NaN
number, a unit-bearing string pushed past what is physical, or a plausible
edit (a number or quantity halved or doubled) that should still run. Each mutated
file runs through the real command (typer's CliRunner, in this process)
for a short simulated time with one replication. The result must be exit 0
(the mutation was harmless and the run completed) or exit 2 with every
line of stderr in the ``error: file: field: ...`` form; an escaped
exception, another exit code or a Python traceback fails the test.

The search is derandomized (the same examples every run) and bounded by
``max_examples``; the values injected are either small or beyond the
schema's bounds, so no example can ask for a long simulation.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sim.cli import app

SCENARIOS = sorted((Path(__file__).parents[1] / "scenarios").glob("*.yaml"))
SHORT_RUN = ["--duration", "0.2 s", "--set", "run.replications=1", "--set", "run.warmup=0.05 s",
             "--set", "run.drain=0.1 s", "--jobs", "1"]

# Values small enough to simulate quickly, or out of bounds, or of the wrong kind.
ODD_VALUES = [
    True, False, None, 0, -1, 3, 2.5, -0.5, 10**20, 2**63, 1e20, 1e308,
    math.inf, -math.inf, math.nan,
    "", "30", "abc", "ünïcødé ✓ 🙂", "\u202e\u0000x", "1e999 s", "-5 ms", ".inf", "nan ms",
    "1e9 fps", "1e12/s", "1e30 GB", "-1 Gbit/s", "2 ms", "10 KB", "30 fps", "25 Gbit/s", "fifo",
    [], {}, [1, "a"], {"x": 1}, [[[]]], {"name": ["x"]}, {"name": {"a": 1}},
]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in the document (the root excluded)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, prefix + (index,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _perturb(value: Any, factor: float) -> Any:
    """``value`` scaled by ``factor`` if it is a number or a quantity; anything else unchanged."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return max(int(value * factor), 0)
    if isinstance(value, float):
        return value * factor
    if isinstance(value, str):
        match = re.match(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S+)\s*$", value)
        if match:
            return f"{float(match.group(1)) * factor:g} {match.group(2)}"
    return value


def _mutate(doc: dict, data: st.DataObject) -> str:
    """Apply one mutation in place; return what it did (for the failure report)."""
    paths = _paths(doc)
    path = data.draw(st.sampled_from(paths), label="path")
    parent, last = _get(doc, path[:-1]), path[-1]
    kind = data.draw(st.sampled_from(["drop", "set", "swap", "rename", "perturb", "perturb"]), label="mutation")
    if kind == "perturb":  # a plausible edit: the same kind of value, halved or doubled
        parent[last] = _perturb(parent[last], data.draw(st.sampled_from([0.5, 2.0]), label="factor"))
    elif kind == "drop":
        del parent[last]
    elif kind == "set":
        parent[last] = copy.deepcopy(data.draw(st.sampled_from(ODD_VALUES), label="value"))
    elif kind == "swap":
        other = data.draw(st.sampled_from(paths), label="other")
        if other[: len(path)] == path or path[: len(other)] == other:
            return f"swap {path} with its own part {other}: nothing"
        other_parent = _get(doc, other[:-1])
        parent[last], other_parent[other[-1]] = other_parent[other[-1]], parent[last]
    elif isinstance(parent, dict):
        name = data.draw(st.sampled_from([1, True, None, "ünï", "", "a.b", "name"]), label="key")
        if name in parent:
            return f"rename {path}: key exists"
        parent[name] = parent.pop(last)
    return f"{kind} {path}"


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in SCENARIOS}


@pytest.mark.slow
@settings(max_examples=30, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_shipped_scenario_runs_or_fails_cleanly(shipped, tmp_path_factory, data):
    name = data.draw(st.sampled_from(sorted(shipped)), label="scenario")
    doc = copy.deepcopy(shipped[name])
    done = [_mutate(doc, data) for _ in range(data.draw(st.integers(1, 2), label="mutations"))]
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(folder / "out"), *SHORT_RUN])
    report = f"{name} after {done}: exit {result.exit_code}\n{result.output}"
    event(f"exit {result.exit_code}")  # pytest --hypothesis-show-statistics shows how many ran and how many failed cleanly
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(report) from result.exception
    assert "Traceback" not in result.output, report
    assert result.exit_code in (0, 2), report
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines, report
        assert all(line.startswith("error: ") for line in lines), report
    else:
        assert (folder / "out" / "summary.json").is_file(), report


@pytest.mark.slow  # simulates every shipped scenario
def test_the_unmutated_shipped_scenarios_run(shipped, tmp_path):
    # the baseline the mutations depart from: every shipped file runs as it is
    for name in shipped:
        result = CliRunner().invoke(app, ["run", str(Path(SCENARIOS[0].parent / name)), "--out",
                                          str(tmp_path / name), *SHORT_RUN])
        assert result.exit_code == 0, result.output
