"""Which branch a request takes after a stage that chooses its next stage.

A stage with a ``branch`` sends each request on to exactly one of its
successors. The choice is made from a *signal*: the simulator draws it
(``simulated_signal`` turns one uniform draw from the stage's named random
stream into a signal), the hardware harness computes it from the stage's
real model output (a prefilter's score, an argmax class). The very same
policy object then maps the signal to a branch, so both sides route a
request the same way for the same signal.

- ``by-score``: the signal is a score in [0, 1] (a prefilter's object
  probability). The branches' probabilities cut [0, 1) into consecutive
  bands, in the order the branches are listed: branch i takes the scores
  from the sum of the probabilities before it up to that sum plus its own
  (the last band is closed at 1). In the simulator the score is the
  uniform draw itself, so branch i is taken with its probability.
- ``by-class``: the signal is a class index (the argmax of a classifier's
  output). Each branch lists the classes it takes; a class no branch lists
  goes to the last branch. In the simulator a class is drawn: branch i's
  first class with branch i's probability.

``BRANCHING`` maps each scenario kind to its factory (given the branches
as ``Branch`` values).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Protocol, Sequence

from sim.registry import Registry


@dataclass(frozen=True)
class Branch:
    """One way out of a branching stage: the next stage, its probability and (by-class) its classes."""

    stage: str
    probability: float
    classes: tuple[int, ...] = ()


class BranchPolicy(Protocol):
    branches: tuple[Branch, ...]

    def choose(self, signal: float) -> int:
        """The index (into ``branches``) of the branch a request with ``signal`` takes."""

    def simulated_signal(self, draw: float) -> float:
        """The signal the simulator uses for a uniform ``draw`` in [0, 1)."""


BRANCHING: Registry = Registry("branching policy")


def _bounds(branches: Sequence[Branch]) -> tuple[float, ...]:
    """Upper ends of the probability bands, all but the last (which takes the rest, up to 1)."""
    return tuple(accumulate(b.probability for b in branches))[:-1]


@BRANCHING.register("by-score")
@dataclass(frozen=True)
class ByScore:
    """Branch i takes the scores in its probability band (see the module docstring)."""

    branches: tuple[Branch, ...]
    bounds: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "bounds", _bounds(self.branches))

    def choose(self, signal: float) -> int:
        return bisect_right(self.bounds, float(signal))

    def simulated_signal(self, draw: float) -> float:
        return draw


@BRANCHING.register("by-class")
@dataclass(frozen=True)
class ByClass:
    """Branch i takes the classes it lists; any other class takes the last branch."""

    branches: tuple[Branch, ...]
    bounds: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "bounds", _bounds(self.branches))

    def choose(self, signal: float) -> int:
        k = int(signal)
        return next((i for i, b in enumerate(self.branches) if k in b.classes), len(self.branches) - 1)

    def simulated_signal(self, draw: float) -> float:
        branch = self.branches[bisect_right(self.bounds, draw)]
        if branch.classes:
            return float(branch.classes[0])
        return float(1 + max((c for b in self.branches for c in b.classes), default=-1))  # listed by none


def build_branching(kind: str, branches: Sequence[Branch]) -> BranchPolicy:
    """The policy of ``kind`` over ``branches``."""
    return BRANCHING[kind](tuple(branches))
