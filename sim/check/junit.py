"""The JUnit XML report that CI systems display as test results.

One ``testsuite`` per scenario, one ``testcase`` per variant x check, named
``<variant>: <check>``. A failed or regressed check carries a ``failure``
with the numbers and the diagnostics, an INVALID one a ``failure`` of type
``invalid``; an inconclusive one a ``skipped`` (counted as pass) or a
``failure`` of type ``inconclusive`` (counted as fail: over budget, or by
the user's policy). Every case's numbers and ``n`` (replications, served
requests) are also in its ``system-out``; the suite's
``properties`` hold the file, source, seed and replications per variant.
The layout is the one pytest writes (Jenkins, GitLab, GitHub reporters read
it). No times or timestamps: the same check writes the same bytes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from sim.check.gate import VariantCheck
from sim.check.report import detail
from sim.check.verdict import Verdict


def junit_tree(checks: Sequence[VariantCheck], inconclusive_fails: bool) -> ET.ElementTree:
    root = ET.Element("testsuites", name="dgsim check")
    suites: dict[str, ET.Element] = {}
    for c in checks:
        suite = suites.get(c.scenario)
        if suite is None:
            suite = suites[c.scenario] = ET.SubElement(root, "testsuite", name=c.scenario)
            ET.SubElement(ET.SubElement(suite, "properties"), "property", name="file", value=c.file)
        properties = suite.find("properties")
        for name, value in (("source", c.source), ("seed", c.seed), ("replications", c.replications)):
            ET.SubElement(properties, "property", name=f"{c.variant}.{name}", value=str(value))
        for o in c.outcomes:
            case = ET.SubElement(suite, "testcase", classname=f"{c.scenario}.{c.variant}",
                                 name=f"{c.variant}: {o.budget.label}", time="0")
            text = detail(o)
            if o.fails(inconclusive_fails):
                failure = ET.SubElement(case, "failure", message=text,
                                        type="regression" if o.word == "REGRESSED" else o.verdict.value.lower())
                failure.text = "\n".join([text, *c.findings])
            elif o.verdict is Verdict.INCONCLUSIVE:
                ET.SubElement(case, "skipped", message=text, type="inconclusive")
            ET.SubElement(case, "system-out").text = text
    for element in [*suites.values(), root]:
        cases = element.iter("testcase")
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for case in cases:
            counts["tests"] += 1
            counts["failures"] += case.find("failure") is not None
            counts["skipped"] += case.find("skipped") is not None
        element.attrib.update({k: str(v) for k, v in counts.items()}, time="0")
    return ET.ElementTree(root)


def write_junit(path: Path, checks: Sequence[VariantCheck], inconclusive_fails: bool) -> None:
    tree = junit_tree(checks, inconclusive_fails)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
