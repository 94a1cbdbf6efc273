"""What people read: a console table and a markdown summary of a check.

Both show one line per check with the verdict, the estimate, its 95 %
interval, the budget, the margin (headroom of the mean inside the budget,
negative when over it; for latency and throughput also relative to the
budget) and the number of replications behind it; then notes, the
diagnostics of failing variants and a one-line result. The markdown goes
to a file and, on GitHub Actions, to the job's summary page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from sim.check.budgets import show
from sim.check.gate import VariantCheck
from sim.check.verdict import Outcome, Verdict

HEADER = ("verdict", "scenario", "variant", "check", "estimate", "95% CI", "budget", "margin", "n")
ICONS = {"PASS": "✅", "FAIL": "❌", "REGRESSED": "❌", "INCONCLUSIVE": "⚠️"}


def numbers(o: Outcome) -> tuple[str, str, str, str]:
    """Estimate, interval, budget and margin of one outcome, in the metric's unit."""
    m, e = o.budget.metric, o.estimate
    margin = show(m, o.margin, signed=True)
    ratio = o.margin / abs(o.budget.bound) if o.budget.bound else math.inf
    if abs(ratio) < 10 and not margin.endswith("%"):
        margin += f" ({ratio:+.0%})"
    return show(m, e.mean), f"[{show(m, e.low)}, {show(m, e.high)}]", o.budget.text, margin


def detail(o: Outcome) -> str:
    estimate, interval, budget, margin = numbers(o)
    return (f"{o.word}: {o.budget.label} = {estimate}, 95% CI {interval}, budget {budget}, margin {margin}, "
            f"{o.replications} replication(s)")


def rows(checks: Sequence[VariantCheck]) -> list[tuple[str, ...]]:
    return [(o.word, c.scenario, c.variant, o.budget.label, *numbers(o), str(o.replications))
            for c in checks for o in c.outcomes]


@dataclass(frozen=True)
class Tally:
    passed: int
    failed: int
    inconclusive: int
    inconclusive_fails: bool

    @property
    def ok(self) -> bool:
        return not self.failed and not (self.inconclusive and self.inconclusive_fails)

    def __str__(self) -> str:
        counted = "as failures" if self.inconclusive_fails else "as passes"
        return (f"{'PASSED' if self.ok else 'FAILED'}: {self.passed} passed, {self.failed} failed, "
                f"{self.inconclusive} inconclusive (counted {counted})")


def tally(checks: Sequence[VariantCheck], inconclusive_fails: bool) -> Tally:
    verdicts = [o.verdict for c in checks for o in c.outcomes]
    return Tally(verdicts.count(Verdict.PASS), verdicts.count(Verdict.FAIL), verdicts.count(Verdict.INCONCLUSIVE),
                 inconclusive_fails)


def _warning(t: Tally) -> list[str]:
    if not t.inconclusive:
        return []
    counted = "FAIL" if t.inconclusive_fails else "PASS"
    return [f"warning: {t.inconclusive} check(s) INCONCLUSIVE, counted as {counted} (--inconclusive): the interval "
            f"straddles the budget even at the replication cap; raise --max-replications or run.duration, "
            f"or move the budget away from the estimate"]


def console_text(checks: Sequence[VariantCheck], notes: Sequence[str], inconclusive_fails: bool) -> str:
    table = [HEADER, *rows(checks)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table] if len(table) > 1 else []
    lines += [f"note: {n}" for n in notes]
    for c in checks:
        lines += [f"why {c.scenario} / {c.variant} failed: {f}" for f in c.findings]
    t = tally(checks, inconclusive_fails)
    return "\n".join([*lines, *_warning(t), f"dgsim check {t}"])


def markdown_text(checks: Sequence[VariantCheck], notes: Sequence[str], inconclusive_fails: bool) -> str:
    t = tally(checks, inconclusive_fails)
    lines = [f"## dgsim check {'✅' if t.ok else '❌'} {t}", ""]
    if any(c.outcomes for c in checks):
        lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join([f"{ICONS[r[0]]} {r[0]}", *r[1:]]).replace("\n", " ") + " |" for r in rows(checks)]
        lines.append("")
    lines += [line for w in _warning(t) for line in (f"> {w}", "")]
    for c in checks:
        if c.findings:
            lines += [f"**Why {c.scenario} / {c.variant} failed**", "", *[f"- {f}" for f in c.findings], ""]
    lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"
