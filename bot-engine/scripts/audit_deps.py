"""Known-vulnerability audit of the lock files for `make lint`, with a verdict that never
pretends: pip-audit checks each pinned package, and this reads its JSON report.

A known vulnerability fails. A package pip-audit could not check (the vulnerability service
unreachable, or not knowing the pinned version) is no pass: it is counted and named on one
loud line, and fails only with `--strict` (or AUDIT_STRICT=1), since an offline machine must
still be able to lint. pip-audit itself printing "No known vulnerabilities found" while it
skipped every package is what this guards against.

Standard library only, so that the engine's Python can run it too (its tests do):
    python scripts/audit_deps.py --pip-audit .tools-venv/bin/pip-audit requirements.lock ...
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PIP_AUDIT_TIMEOUT_S = 600
# pip-audit's skip reasons end with the package, "...: name (version)"; the rest is the reason.
_REASON_TAIL = re.compile(r":\s*\S+\s+\([^)]*\)\s*$")
# What pip-audit's terse reasons mean, for the reader of a lint log.
_MEANING = {
    "Dependency not found on PyPI and could not be audited": (
        "the vulnerability service answered 404 for the pinned version: a package not on PyPI,"
        " or an index mirror without PyPI's per-version JSON API"
    ),
}


@dataclass(frozen=True)
class Vulnerability:
    package: str
    version: str
    id: str
    fix_versions: tuple[str, ...]


@dataclass
class Audit:
    """What one or more pip-audit reports say, package by package."""

    audited: int = 0
    vulnerabilities: list[Vulnerability] = field(default_factory=list)
    not_audited: Counter[str] = field(default_factory=Counter)  # reason -> packages

    @property
    def packages(self) -> int:
        return self.audited + sum(self.not_audited.values())

    def add(self, other: Audit) -> None:
        self.audited += other.audited
        self.vulnerabilities.extend(other.vulnerabilities)
        self.not_audited.update(other.not_audited)


def _reason(skip_reason: str) -> str:
    reason = _REASON_TAIL.sub("", skip_reason.strip()) or "no reason given"
    return f"{reason} ({_MEANING[reason]})" if reason in _MEANING else reason


def summarize(report: dict[str, Any]) -> Audit:
    """The audit a `pip-audit --format json` report describes."""
    audit = Audit()
    for dep in report["dependencies"]:
        if "skip_reason" in dep:
            audit.not_audited[_reason(str(dep["skip_reason"]))] += 1
            continue
        audit.audited += 1
        for vuln in dep.get("vulns", []):
            audit.vulnerabilities.append(
                Vulnerability(
                    package=str(dep["name"]),
                    version=str(dep.get("version", "?")),
                    id=str(vuln["id"]),
                    fix_versions=tuple(str(v) for v in vuln.get("fix_versions", [])),
                )
            )
    return audit


def pinned_packages(lock: Path) -> int:
    """How many requirements `lock` pins (what pip-audit would have checked)."""
    lines = (line.split("#", 1)[0].strip() for line in lock.read_text().splitlines())
    return sum(1 for line in lines if line and not line.startswith("-"))


def audit_lock(pip_audit: str, lock: Path) -> Audit:
    """Run pip-audit on `lock`; a run that gives no report leaves every package not audited."""
    command = [
        pip_audit,
        "--requirement",
        str(lock),
        "--no-deps",  # the lock pins the whole tree already
        "--disable-pip",
        "--format",
        "json",
        "--progress-spinner",
        "off",
    ]
    try:
        run = subprocess.run(  # noqa: S603 - the configured pip-audit, no shell
            command, capture_output=True, text=True, timeout=PIP_AUDIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Audit(not_audited=Counter({f"pip-audit did not run: {exc}": pinned_packages(lock)}))
    # Exit 1 means "vulnerabilities found" as well as "crashed": the report tells them apart.
    try:
        report = json.loads(run.stdout)
        return summarize(report)
    except (ValueError, KeyError, TypeError):
        errors = [line for line in run.stderr.splitlines() if line.strip()]
        why = errors[-1].strip() if errors else f"exit status {run.returncode}, no report"
        return Audit(not_audited=Counter({f"pip-audit failed: {why}": pinned_packages(lock)}))


def verdict(audit: Audit, *, strict: bool) -> tuple[int, list[str]]:
    """The exit status and the lines to print for `audit`."""
    lines = [
        f"VULNERABLE {v.package} {v.version}: {v.id}"
        + (f" (fixed in {', '.join(v.fix_versions)})" if v.fix_versions else " (no fix yet)")
        for v in audit.vulnerabilities
    ]
    missing = sum(audit.not_audited.values())
    if missing:
        reasons = "; ".join(f"{n} x {reason}" for reason, n in audit.not_audited.most_common())
        lines.append(
            f"!!! {missing} of {audit.packages} packages were NOT AUDITED for known"
            f" vulnerabilities: {reasons}. This is not a pass"
            + (" (AUDIT_STRICT=1: failing)." if strict else "; AUDIT_STRICT=1 makes it fail.")
        )
    if audit.vulnerabilities:
        lines.append(f"{len(audit.vulnerabilities)} known vulnerabilities: failing.")
    elif audit.audited:
        lines.append(f"{audit.audited} packages audited: no known vulnerabilities.")
    failed = bool(audit.vulnerabilities) or (strict and missing > 0)
    return (1 if failed else 0), lines


def _say(line: str) -> None:
    sys.stdout.write(f"audit_deps: {line}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("locks", nargs="+", type=Path, help="requirements lock files")
    parser.add_argument("--pip-audit", default="pip-audit", help="the pip-audit executable")
    parser.add_argument(
        "--strict",
        action="store_true",
        default=os.environ.get("AUDIT_STRICT", "") not in ("", "0"),
        help="fail when any package could not be audited (default: AUDIT_STRICT=1)",
    )
    args = parser.parse_args(argv)
    total = Audit()
    for lock in args.locks:
        audit = audit_lock(args.pip_audit, lock)
        _say(
            f"{lock}: {audit.packages} packages, {audit.audited} audited,"
            f" {sum(audit.not_audited.values())} not audited,"
            f" {len(audit.vulnerabilities)} known vulnerabilities"
        )
        total.add(audit)
    status, lines = verdict(total, strict=args.strict)
    for line in lines:
        _say(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
