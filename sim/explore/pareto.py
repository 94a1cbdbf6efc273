"""The Pareto front: the designs no other design beats on every objective at once."""

from __future__ import annotations

import math
from typing import Sequence


def pareto_front(points: Sequence[Sequence[float]], maximise: Sequence[bool]) -> list[bool]:
    """For each point, whether no other point is at least as good on every objective and better on one.

    ``maximise[k]`` says whether objective k is better high. A point with a
    NaN objective is never on the front.
    """
    signed = [[(v if up else -v) for v, up in zip(p, maximise)] for p in points]
    out = []
    for i, p in enumerate(signed):
        if any(math.isnan(v) for v in p):
            out.append(False)
            continue
        dominated = any(
            j != i and not any(math.isnan(v) for v in q)
            and all(a >= b for a, b in zip(q, p)) and any(a > b for a, b in zip(q, p))
            for j, q in enumerate(signed))
        out.append(not dominated)
    return out
