"""A scenario file opened for a command: variants chosen, each plan compiled once.

Every command starts the same way: read a scenario file with the
command line's overrides, pick variants, and compile each chosen variant
into a ``sim.plan.Plan``. ``open_scenario`` is that recipe, written once.
The plans are plain, picklable data: the experiment hands them to its
worker processes, the results writer spells them out in resolved/, and
the harness lays them out on real devices, none of them compiling again.

Invalid input raises ``InputError``: one line per problem, each naming the
file (or the option), the field and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from sim.plan import Plan
from sim.scenario.errors import ScenarioError
from sim.scenario.load import ScenarioFile, load_scenario_file


class InputError(Exception):
    """Input a command cannot use; ``lines``: one per problem."""

    def __init__(self, lines: Sequence[str]):
        self.lines = [str(line) for line in lines]
        super().__init__("\n".join(self.lines))

    @classmethod
    def from_scenario(cls, error: ScenarioError) -> "InputError":
        return cls([str(p) for p in error.problems])


@dataclass(frozen=True)
class Session:
    """The chosen variants of one scenario file and their compiled plans (in the order chosen)."""

    file: ScenarioFile
    plans: dict[str, Plan]

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def base_dir(self) -> Path:
        """The folder the scenario's calibration and trace files are relative to."""
        return self.file.path.parent

    @property
    def name(self) -> str:
        return next(iter(self.plans.values())).scenario.name

    @property
    def variants(self) -> list[str]:
        return list(self.plans)

    def label(self, variant: str) -> str:
        """How problems of one variant name their source."""
        return f"{self.path} (variant {variant})"


def choose_variants(scenario_file: ScenarioFile, wanted: Optional[Sequence[str]]) -> list[str]:
    """``wanted`` (all when empty), checked against the file's variants; raises InputError."""
    known = scenario_file.variant_names
    if not wanted:
        return list(known)
    unknown = [v for v in wanted if v not in known]
    if unknown:
        raise InputError([f"{scenario_file.path}: variants: no variant {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(known)})"])
    return list(dict.fromkeys(wanted))


def open_scenario(path: str | Path, overrides: Sequence[str] = (),
                  variants: Optional[Sequence[str]] = None) -> Session:
    """Load ``path`` with ``overrides``, choose ``variants`` (default all) and compile each once."""
    try:
        scenario_file = load_scenario_file(path, overrides)
        chosen = choose_variants(scenario_file, variants)
        return Session(scenario_file, {v: scenario_file.plan(v) for v in chosen})
    except ScenarioError as error:
        raise InputError.from_scenario(error) from None
