"""JUnit XML (the dialect Jenkins, GitLab and GitHub test reporters read), written atomically.

Generic on purpose: ``check`` reuses ``TestCase``/``write_junit`` for its matrix. ``verification_cases``
turns a ``Verification`` into one test case per output x check.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeexport.report.jsonfile import write_text

if TYPE_CHECKING:
    from edgeexport.verify.stage import Verification


@dataclass(frozen=True)
class TestCase:
    """One JUnit test case. At most one of ``failure`` (a check failed), ``error`` (could not run) or
    ``skipped`` (did not apply) is set; none set means it passed. ``seconds`` is wall time."""

    __test__ = False  # not a pytest test class despite the name

    classname: str
    name: str
    seconds: float = 0.0
    failure: str | None = None
    error: str | None = None
    skipped: str | None = None
    output: str = ""


def junit_xml(suite: str, cases: Sequence[TestCase]) -> str:
    """A ``<testsuites>`` document with one ``<testsuite name=suite>`` holding ``cases``."""
    root = ET.Element("testsuites")
    counts = {
        "tests": len(cases),
        "failures": sum(c.failure is not None for c in cases),
        "errors": sum(c.error is not None and c.failure is None for c in cases),
        "skipped": sum(c.skipped is not None and c.failure is None and c.error is None for c in cases),
    }
    total = sum(c.seconds for c in cases)
    root.attrib.update({k: str(v) for k, v in counts.items()} | {"time": f"{total:.3f}"})
    node = ET.SubElement(root, "testsuite", {"name": suite, "time": f"{total:.3f}"} | {k: str(v) for k, v in counts.items()})
    for case in cases:
        element = ET.SubElement(node, "testcase", {"classname": case.classname, "name": case.name,
                                                   "time": f"{case.seconds:.3f}"})
        if case.failure is not None:
            ET.SubElement(element, "failure", {"message": case.failure, "type": "failure"}).text = case.failure
        elif case.error is not None:
            ET.SubElement(element, "error", {"message": case.error, "type": "error"}).text = case.error
        elif case.skipped is not None:
            ET.SubElement(element, "skipped", {"message": case.skipped})
        if case.output:
            ET.SubElement(element, "system-out").text = case.output
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, suite: str, cases: Sequence[TestCase]) -> Path:
    """Write the JUnit XML for ``cases`` to ``path`` through a temporary file and an atomic rename."""
    return write_text(path, junit_xml(suite, cases))


def verification_cases(verification: Verification) -> list[TestCase]:
    """One case per output x check (``probs.cosine``); an output that could not be compared and an artifact
    that could not be run are errors, never passes."""
    classname = f"edgeexport.verify.{verification.artifact}"
    if verification.status.junit_kind == "error":
        return [TestCase(classname, "run", verification.seconds, error=verification.reason)]
    cases: list[TestCase] = []
    share = verification.seconds / max(1, sum(max(1, len(c.checks)) for c in verification.outputs))
    for comparison in verification.outputs:
        if comparison.error is not None:
            cases.append(TestCase(classname, f"{comparison.name}.compare", share, error=comparison.error))
            continue
        for check in comparison.checks:
            name = f"{comparison.name}.{check.label}"
            if check.passed is None:
                cases.append(TestCase(classname, name, share, skipped=f"{check.label} does not apply to {comparison.name}"))
            elif check.passed:
                cases.append(TestCase(classname, name, share, output=check.line()))
            else:
                cases.append(TestCase(classname, name, share, failure=check.line()))
    if not cases:
        cases.append(TestCase(classname, "checks", verification.seconds, skipped="the tolerance sets no limit"))
    return cases
