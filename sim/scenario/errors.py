"""Problems with a scenario, each naming its file, field and what was expected.

Loading collects every problem it can find before giving up, so a user
fixes a file in one pass; the CLI prints one line per problem and exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return " ".join(f"{where}: {self.message}".split("\n"))  # one line, whatever the message holds


class ScenarioError(Exception):
    """One or more problems that stop a scenario from being used."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
