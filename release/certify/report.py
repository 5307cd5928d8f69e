"""The certification report: JUnit XML for CI, Markdown for people and GitHub summaries."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from release.certify.checks import FAILED, UNREACHABLE
from release.output import markdown_table

RESULT_MARK = {"passed": "pass", "failed": "FAIL", "skipped": "skip", "unreachable": "UNREACHABLE"}


def write_junit(record: dict[str, Any], path: Path) -> Path:
    """CI systems show this file to everyone who can see the job: every evidence text goes
    through the redactor, as everything printed does."""
    from release.credentials import redact

    checks = [{**check, "evidence": redact(str(check["evidence"]))} for check in record["checks"]]
    suite = ET.Element(
        "testsuite",
        name=f"certify {record['environment']} {record['version']}",
        tests=str(len(checks)),
        failures=str(sum(c["result"] == FAILED for c in checks)),
        errors=str(sum(c["result"] == UNREACHABLE for c in checks)),
        skipped=str(sum(c["result"] == "skipped" for c in checks)),
        time=f"{sum(c['seconds'] for c in checks):.3f}",
        timestamp=record["at"],
    )
    for check in checks:
        case = ET.SubElement(
            suite, "testcase", classname=f"{check['group']}.{check['target']}",
            name=check["name"], time=f"{check['seconds']:.3f}",
        )  # fmt: skip
        if check["result"] == FAILED:
            ET.SubElement(case, "failure", message=check["evidence"][:500]).text = check["evidence"]
        elif check["result"] == UNREACHABLE:
            ET.SubElement(case, "error", message=check["evidence"][:500]).text = check["evidence"]
        elif check["result"] == "skipped":
            ET.SubElement(case, "skipped", message=check["evidence"][:500])
        else:
            ET.SubElement(case, "system-out").text = check["evidence"]
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
    return path


def rows(record: dict[str, Any]) -> list[list[str]]:
    return [
        [
            c["group"],
            c["name"],
            c["target"],
            RESULT_MARK[c["result"]],
            f"{c['seconds']:.1f}",
            c["evidence"],
        ]
        for c in record["checks"]
    ]


COLUMNS = ["group", "check", "target", "result", "s", "evidence"]


def markdown(record: dict[str, Any]) -> str:
    verdict = "passed" if record["passed"] else "FAILED"
    counts = record["counts"]
    head = (
        f"### Certification of {record['product']} {record['version']} on "
        f"{record['environment']}: {verdict}\n\n"
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['unreachable']} unreachable, "
        f"{counts['skipped']} skipped. Bundles: "
        + ", ".join(
            f"{arch} `{digest[:16]}`" for arch, digest in sorted(record["manifest_sha256"].items())
        )
    )
    return head + "\n\n" + markdown_table(COLUMNS, rows(record))
