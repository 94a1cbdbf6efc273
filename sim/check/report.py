"""What people read: a console table and a markdown summary of a check.

Both show one line per check with the verdict, the estimate, its 95 %
interval, the budget, the margin (headroom of the mean inside the budget,
negative when over it; for latency and throughput also relative to the
budget) and ``n``: the replications behind it and the fewest served
requests in any one of them; then notes, why checks are INVALID, the
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

HEADER = ("verdict", "scenario", "variant", "check", "estimate", "95% CI", "budget", "margin", "reps", "served/rep")
ICONS = {"PASS": "✅", "FAIL": "❌", "REGRESSED": "❌", "INCONCLUSIVE": "⚠️", "INVALID": "⛔"}


def numbers(o: Outcome) -> tuple[str, str, str, str]:
    """Estimate, interval, budget and margin of one outcome, in the metric's unit."""
    k, e = o.budget.key, o.estimate
    margin = show(k, o.margin, signed=True)
    ratio = o.margin / abs(o.budget.bound) if o.budget.bound else math.inf
    if abs(ratio) < 10 and not margin.endswith("%"):
        margin += f" ({ratio:+.0%})"
    return show(k, e.mean), f"[{show(k, e.low)}, {show(k, e.high)}]", o.budget.text, margin


def sample_count(o: Outcome) -> str:
    return "?" if o.samples is None else str(o.samples)


def detail(o: Outcome) -> str:
    estimate, interval, budget, margin = numbers(o)
    served = "an unknown number of" if o.samples is None else f"at least {o.samples}"
    why = f" ({o.reason})" if o.reason else ""
    return (f"{o.word}{why}: {o.budget.label} = {estimate}, 95% CI {interval}, budget {budget}, margin {margin}, "
            f"n = {o.replications} replication(s) with {served} served request(s) each")


def rows(checks: Sequence[VariantCheck]) -> list[tuple[str, ...]]:
    return [(o.word, c.scenario, c.variant, o.budget.label, *numbers(o), str(o.replications), sample_count(o))
            for c in checks for o in c.outcomes]


@dataclass(frozen=True)
class Tally:
    passed: int
    failed: int
    invalid: int
    over: int  # inconclusive with the estimate over budget: always failures
    within: int  # inconclusive with the estimate within budget: counted by the policy
    inconclusive_fails: bool

    @property
    def ok(self) -> bool:
        return not (self.failed or self.invalid or self.over) and not (self.within and self.inconclusive_fails)

    def __str__(self) -> str:
        counted = "as failures" if self.inconclusive_fails else "as passes"
        inconclusive = f"{self.over + self.within} inconclusive"
        if self.over:
            inconclusive += f" ({self.over} over budget, counted as failures"
            inconclusive += f"; {self.within} within, counted {counted})" if self.within else ")"
        elif self.within:
            inconclusive += f" (counted {counted})"
        return (f"{'PASSED' if self.ok else 'FAILED'}: {self.passed} passed, {self.failed} failed, "
                f"{self.invalid} invalid, {inconclusive}")


def tally(checks: Sequence[VariantCheck], inconclusive_fails: bool) -> Tally:
    outcomes = [o for c in checks for o in c.outcomes]
    verdicts = [o.verdict for o in outcomes]
    over = sum(o.verdict is Verdict.INCONCLUSIVE and o.over_budget for o in outcomes)
    return Tally(verdicts.count(Verdict.PASS), verdicts.count(Verdict.FAIL), verdicts.count(Verdict.INVALID), over,
                 verdicts.count(Verdict.INCONCLUSIVE) - over, inconclusive_fails)


def _warning(t: Tally) -> list[str]:
    out = []
    if t.invalid:
        out.append(f"error: {t.invalid} check(s) INVALID, counted as FAIL: the data cannot decide them (no value, "
                   f"nothing served, or too few requests for the percentile; see docs/ci.md)")
    if t.over:
        out.append(f"warning: {t.over} check(s) INCONCLUSIVE with the estimate over budget, counted as FAIL: a point "
                   f"estimate over budget never passes; more replications (--max-replications, or measure more) "
                   f"or a longer run.duration can decide them")
    if t.within:
        counted = "FAIL" if t.inconclusive_fails else "PASS"
        out.append(f"warning: {t.within} check(s) INCONCLUSIVE, counted as {counted} (--inconclusive): the interval "
                   f"straddles the budget (or there is none: one replication) even at the replication cap; raise "
                   f"--max-replications or run.duration, or move the budget away from the estimate")
    return out


def _reasons(checks: Sequence[VariantCheck]) -> list[str]:
    return [f"invalid {c.scenario} / {c.variant} / {o.budget.label}: {o.reason}"
            for c in checks for o in c.outcomes if o.verdict is Verdict.INVALID]


def console_text(checks: Sequence[VariantCheck], notes: Sequence[str], inconclusive_fails: bool) -> str:
    table = [HEADER, *rows(checks)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table] if len(table) > 1 else []
    lines += [f"note: {n}" for n in notes]
    lines += _reasons(checks)
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
    lines += [f"- {r}" for r in _reasons(checks)] + ([""] if _reasons(checks) else [])
    for c in checks:
        if c.findings:
            lines += [f"**Why {c.scenario} / {c.variant} failed**", "", *[f"- {f}" for f in c.findings], ""]
    lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"
