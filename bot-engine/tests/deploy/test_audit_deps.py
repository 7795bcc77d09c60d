"""The verdict of scripts/audit_deps.py (the dependency audit of `make lint`), driven through
its command line with a stand-in pip-audit that prints a pip-audit-shaped JSON report: a known
vulnerability fails; packages the service could not check are counted, never called a pass,
and fail only under AUDIT_STRICT=1; a pip-audit that crashes leaves every pin not audited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_deps.py"
LOCK = "fastapi==0.163.2\n# a comment line\njinja2==3.1.2\n\npyyaml==6.0.4\n"
NOT_FOUND = "Dependency not found on PyPI and could not be audited"


@dataclass(frozen=True)
class Run:
    status: int
    output: str
    pip_audit_argv: list[str]


def _report(*dependencies: dict[str, Any]) -> str:
    return json.dumps({"dependencies": list(dependencies), "fixes": []})


def _audit(
    tmp_path: Path, stdout: str, *, exit_status: int, strict: bool = False, stderr: str = ""
) -> Run:
    """Run the script on a three-package lock with a pip-audit that answers `stdout`."""
    lock = tmp_path / "requirements.lock"
    lock.write_text(LOCK)
    argv_file = tmp_path / "pip-audit-argv.json"
    fake = tmp_path / "pip-audit"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(argv_file)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({exit_status})\n"
    )
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_STRICT"}
    if strict:
        env["AUDIT_STRICT"] = "1"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--pip-audit", str(fake), str(lock)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    argv = json.loads(argv_file.read_text()) if argv_file.exists() else []
    return Run(done.returncode, done.stdout + done.stderr, argv)


def test_a_known_vulnerability_fails_lint(tmp_path: Path) -> None:
    report = _report(
        {"name": "fastapi", "version": "0.163.2", "vulns": []},
        {
            "name": "jinja2",
            "version": "3.1.2",
            "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]}],
        },
        {"name": "pyyaml", "version": "6.0.4", "vulns": []},
    )
    run = _audit(tmp_path, report, exit_status=1)  # pip-audit's status when it finds one

    assert run.status == 1
    assert "VULNERABLE jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)" in run.output
    assert "3 packages, 3 audited, 0 not audited, 1 known vulnerabilities" in run.output
    assert "NOT AUDITED" not in run.output
    # The lock is audited as pinned, without pip resolving it again.
    assert run.pip_audit_argv[:2] == ["--requirement", str(tmp_path / "requirements.lock")]
    assert {"--no-deps", "--disable-pip"} <= set(run.pip_audit_argv)
    assert run.pip_audit_argv[run.pip_audit_argv.index("--format") + 1] == "json"


def test_an_unreachable_service_is_reported_and_fails_only_when_strict(tmp_path: Path) -> None:
    report = _report(
        {"name": "fastapi", "skip_reason": f"{NOT_FOUND}: fastapi (0.163.2)"},
        {"name": "jinja2", "skip_reason": f"{NOT_FOUND}: jinja2 (3.1.2)"},
        {"name": "pyyaml", "skip_reason": f"{NOT_FOUND}: pyyaml (6.0.4)"},
    )
    lenient = _audit(tmp_path, report, exit_status=0)
    strict = _audit(tmp_path, report, exit_status=0, strict=True)

    assert (lenient.status, strict.status) == (0, 1)
    for run in (lenient, strict):
        assert f"3 of 3 packages were NOT AUDITED for known vulnerabilities: 3 x {NOT_FOUND}" in (
            run.output
        )
        assert "This is not a pass" in run.output
        assert "no known vulnerabilities" not in run.output
    assert "AUDIT_STRICT=1 makes it fail" in lenient.output
    assert "AUDIT_STRICT=1: failing" in strict.output


def test_a_partly_audited_lock_counts_only_the_skipped_packages(tmp_path: Path) -> None:
    report = _report(
        {"name": "fastapi", "version": "0.163.2", "vulns": []},
        {"name": "jinja2", "skip_reason": f"{NOT_FOUND}: jinja2 (3.1.2)"},
        {"name": "pyyaml", "version": "6.0.4", "vulns": []},
    )
    run = _audit(tmp_path, report, exit_status=0)

    assert run.status == 0
    assert "3 packages, 2 audited, 1 not audited, 0 known vulnerabilities" in run.output
    assert "1 of 3 packages were NOT AUDITED" in run.output
    assert "2 packages audited: no known vulnerabilities." in run.output


def test_a_crashed_pip_audit_leaves_every_pin_not_audited(tmp_path: Path) -> None:
    crash = "Traceback (most recent call last):\nrequests.exceptions.ConnectionError: no route\n"
    lenient = _audit(tmp_path, "", exit_status=1, stderr=crash)
    strict = _audit(tmp_path, "", exit_status=1, stderr=crash, strict=True)

    assert (lenient.status, strict.status) == (0, 1)
    assert (
        "3 of 3 packages were NOT AUDITED for known vulnerabilities: 3 x pip-audit failed:"
        " requests.exceptions.ConnectionError: no route" in lenient.output
    )
    assert "known vulnerabilities: failing" not in lenient.output


def test_a_clean_audit_passes_and_says_so(tmp_path: Path) -> None:
    report = _report(
        {"name": "fastapi", "version": "0.163.2", "vulns": []},
        {"name": "jinja2", "version": "3.1.6", "vulns": []},
        {"name": "pyyaml", "version": "6.0.4", "vulns": []},
    )
    run = _audit(tmp_path, report, exit_status=0, strict=True)

    assert run.status == 0
    assert "3 packages audited: no known vulnerabilities." in run.output
    assert "NOT AUDITED" not in run.output
