"""Checks of the local container stack without running it: docker-compose.yml,
bot-engine/Dockerfile and logging-stack/ (Loki, Alloy, Prometheus, Alertmanager, Grafana).

- every YAML and JSON file of the stack (and of infrastructure/) parses;
- the Compose file validates against the Compose specification (check-jsonschema from the
  tools venv, `make tools`), waits on health checks and completed migrations, publishes on
  127.0.0.1 only and mounts files that exist;
- dashboards are bare models with unique uids, provisioned data sources and a sound grid;
- Loki really deletes old data, Alloy labels lines with the five Loki labels only and sends
  ids as structured metadata;
- every alert names its severity, says what happened and links to an existing runbook
  section; the LogQL avoids the mistakes that parse but mean something else;
- the checkers of tests/support/observability.py fail on deliberately broken input.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.observability import (
    DASHBOARDS_DIR,
    LOKI_LABELS,
    LOKI_RULES_DIR,
    PROMETHEUS_RULES_DIR,
    REPO,
    STACK,
    Query,
    check_dashboard_datasources,
    check_log_selectors,
    check_metric_names,
    dashboard_files,
    dashboard_queries,
    datasource_types,
    exposed_metric_families,
    iter_panels,
    iter_rules,
    load_json,
    load_yaml,
    logql_problems,
    metric_names,
    rule_files,
    stack_queries,
    stream_matchers,
)

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "bot-engine" / "Dockerfile"
RUNBOOK = REPO / "docs" / "runbooks" / "incident-response.md"
RUNBOOK_PATH = "docs/runbooks/incident-response.md"
CHECK_JSONSCHEMA = REPO / "bot-engine" / ".tools-venv" / "bin" / "check-jsonschema"
ALLOY_CONFIG = STACK / "alloy" / "config.alloy"
LOKI_CONFIG = STACK / "loki" / "loki-config.yml"
PROMETHEUS_CONFIG = STACK / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = STACK / "alertmanager" / "alertmanager.yml"
DASHBOARD_PROVIDERS = STACK / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"

ID_FIELDS = ("request_id", "user_id", "signal_id", "trade_id", "strategy_id")
SEVERITIES = frozenset({"critical", "warning", "info"})
REQUIRED_ALERTS = frozenset(
    {
        "HighErrorRate",
        "TradeExecutionFailures",
        "ExchangeConnectivityIssue",
        "RiskRejectionsSpike",
        "SlowTradeExecution",
        "FrontendCriticalErrors",
        "SignalQueueBacklog",
        "DeadLetteredSignals",
        "EngineDown",
        "WebhookServerErrors",
    }
)
CONDITIONS = frozenset({"service_healthy", "service_completed_successfully"})
GRID_WIDTH = 24
LOKI = {"type": "loki", "uid": "loki"}
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}


# --------------------------------------------------------------------------- parsing
def _config_files() -> list[Path]:
    files = {COMPOSE}
    for folder in (STACK, REPO / "infrastructure"):
        for pattern in ("*.yml", "*.yaml", "*.json"):
            files.update(p for p in folder.rglob(pattern) if ".terraform" not in p.parts)
    return sorted(files)


@pytest.mark.parametrize("path", _config_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_config_file_parses(path: Path) -> None:
    document = load_json(path) if path.suffix == ".json" else load_yaml(path)
    assert document, f"{path.relative_to(REPO)} is empty"


# --------------------------------------------------------------------------- compose
@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(COMPOSE)
    return document


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def _one_shot(compose: dict[str, Any]) -> set[str]:
    """Services that exit when done: never restarted, or waited for to complete."""
    services = _services(compose)
    names = {name for name, svc in services.items() if str(svc.get("restart", "")) == "no"}
    for svc in services.values():
        for dependency, spec in (svc.get("depends_on") or {}).items():
            if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully":
                names.add(dependency)
    return names


def test_compose_validates_against_the_compose_spec() -> None:
    if not CHECK_JSONSCHEMA.exists():
        if os.environ.get("CI"):
            pytest.fail("check-jsonschema is required in CI: run `make tools`")
        pytest.skip("check-jsonschema is not installed (run `make tools`)")
    proc = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"docker-compose.yml is not valid:\n{proc.stdout}{proc.stderr}"


def test_compose_has_a_name_and_no_version(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "`version` is obsolete in the Compose specification"
    assert compose.get("name") == "jadetrade"
    assert COMPOSE.read_text().startswith("#"), "docker-compose.yml starts with a comment"


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    one_shot = _one_shot(compose)
    assert "migrate" in one_shot
    missing = [
        name
        for name, svc in _services(compose).items()
        if name not in one_shot
        and (not svc.get("healthcheck") or svc["healthcheck"].get("disable"))
    ]
    assert not missing, f"services without a health check: {missing}"


def test_every_dependency_waits_for_a_condition(compose: dict[str, Any]) -> None:
    services = _services(compose)
    one_shot = _one_shot(compose)
    problems = []
    for name, svc in services.items():
        depends_on = svc.get("depends_on")
        if depends_on is None:
            continue
        if not isinstance(depends_on, dict):
            problems.append(f"{name}: depends_on is a list (no condition)")
            continue
        for dependency, spec in depends_on.items():
            condition = (spec or {}).get("condition")
            if condition not in CONDITIONS:
                problems.append(f"{name} → {dependency}: condition {condition!r}")
            elif condition == "service_healthy" and not services[dependency].get("healthcheck"):
                problems.append(f"{name} → {dependency}: waits for a health check it lacks")
            elif condition == "service_completed_successfully" and dependency not in one_shot:
                problems.append(f"{name} → {dependency}: waits for a service that never ends")
    assert not problems, "\n".join(problems)


def test_engine_services_run_migrations_first(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["api"]["command"] == ["serve", "--no-workers"]
    assert services["worker"]["command"] == ["worker"]
    for name in ("api", "worker"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    for name in ("migrate", "api", "worker"):
        env = services[name]["environment"]
        assert env["ENVIRONMENT"] == "development" and env["LOG_FORMAT"] == "json", name
        assert (
            env["DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["DATABASE_URL"]
        )
        assert env["REDIS_URL"].startswith("redis://redis:"), name
        assert "LOKI_URL" not in env, f"{name}: Alloy ships the logs; LOKI_URL would duplicate them"
        assert services[name]["build"]["context"] == "./bot-engine", name


def test_ports_are_published_on_localhost_only(compose: dict[str, Any]) -> None:
    exposed = []
    for name, svc in _services(compose).items():
        for port in svc.get("ports") or []:
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            if host_ip != "127.0.0.1":
                exposed.append(f"{name}: {port}")
    assert not exposed, f"ports reachable from other machines: {exposed}"


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    unpinned = []
    for name, svc in _services(compose).items():
        image = str(svc.get("image", ""))
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        if not tag or tag == "latest":
            unpinned.append(f"{name}: {image or '(no image)'}")
    assert not unpinned, f"images without a pinned tag: {unpinned}"


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    missing = []
    for name, svc in _services(compose).items():
        for volume in svc.get("volumes") or []:
            source = str(volume.get("source") if isinstance(volume, dict) else volume.split(":")[0])
            if source.startswith("./") and not (REPO / source).exists():
                missing.append(f"{name}: {source}")
    assert not missing, f"mounted files that do not exist: {missing}"


def test_alloy_reads_the_docker_socket_read_only(compose: dict[str, Any]) -> None:
    volumes = _services(compose)["alloy"]["volumes"]
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in volumes


# --------------------------------------------------------------------------- Dockerfile
def test_dockerfile_builds_a_slim_unprivileged_image() -> None:
    text = DOCKERFILE.read_text()
    assert text.startswith("#")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE)
    assert len(stages) >= 2, "multi-stage: a builder and a runtime stage"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-slim$", text, re.MULTILINE)
    runtime = text[text.rindex("\nFROM ") :]
    assert "apt-get install" not in runtime, "no build tools in the final stage"
    assert re.search(r"^COPY --from=builder /opt/venv /opt/venv$", runtime, re.MULTILINE)
    user = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert user and not user[-1].startswith(("root", "0")), "runs as an unprivileged user"
    assert "EXPOSE 8000" in runtime
    healthcheck = runtime[runtime.index("HEALTHCHECK") :].split("\n\n")[0]
    assert "urllib" in healthcheck and "/health" in healthcheck and "curl" not in healthcheck
    assert 'ENTRYPOINT ["jadetrade"]' in runtime
    assert 'CMD ["serve", "--no-workers"]' in runtime
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime and "PYTHONUNBUFFERED=1" in runtime
    for needed in ("requirements.lock", "COPY migrations", "alembic.ini"):
        assert needed in text, f"the image needs {needed}"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip()
        for line in (REPO / "bot-engine" / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for pattern in (".venv/", ".tools-venv/", ".local/", ".env", ".git", "**/__pycache__/"):
        assert pattern in patterns, pattern


# --------------------------------------------------------------------------- dashboards
@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: load_json(path) for path in dashboard_files()}


def test_datasources_are_provisioned_with_stable_uids() -> None:
    types = datasource_types()
    assert types.get("loki") == "loki"
    assert types.get("prometheus") == "prometheus"


def test_dashboard_provider_loads_the_dashboards_folder(compose: dict[str, Any]) -> None:
    providers = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    paths = {provider["options"]["path"] for provider in providers}
    mounts = {
        volume.split(":")[1]
        for volume in _services(compose)["grafana"]["volumes"]
        if volume.startswith("./logging-stack/grafana/dashboards:")
    }
    assert paths and paths <= mounts, f"providers read {paths}, the dashboards are at {mounts}"


def test_dashboards_are_bare_models(dashboards: dict[str, dict[str, Any]]) -> None:
    assert len(dashboards) >= 4
    for name, model in dashboards.items():
        assert "dashboard" not in model, f"{name}: provisioned files hold the bare model"
        for key in ("title", "uid", "panels"):
            assert model.get(key), f"{name}: no {key}"
        assert model.get("id") is None, f"{name}: an id would clash across Grafana instances"
        assert int(model.get("schemaVersion", 0)) >= 36, name


def test_dashboard_uids_are_unique(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = [model["uid"] for model in dashboards.values()]
    assert len(uids) == len(set(uids)), uids
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid) for uid in uids), uids


def test_dashboard_datasources_exist(dashboards: dict[str, dict[str, Any]]) -> None:
    known = datasource_types()
    problems = [
        problem
        for name, model in dashboards.items()
        for problem in check_dashboard_datasources(model, name, known)
    ]
    assert not problems, "\n".join(problems)


def test_panel_ids_are_unique_per_dashboard(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, model in dashboards.items():
        ids = [panel.get("id") for panel in iter_panels(model["panels"])]
        assert None not in ids, f"{name}: a panel without an id"
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"


def _overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def _grid_problems(panels: list[dict[str, Any]], where: str) -> list[str]:
    problems = []
    placed: list[tuple[str, dict[str, int]]] = []
    for panel in panels:
        title = f"{where} panel {panel.get('title', '?')!r}"
        grid = panel.get("gridPos")
        if not isinstance(grid, dict) or not all(
            isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")
        ):
            problems.append(f"{title}: gridPos needs integer x, y, w, h")
            continue
        if grid["x"] < 0 or grid["y"] < 0 or grid["w"] < 1 or grid["h"] < 1:
            problems.append(f"{title}: gridPos {grid}")
        if grid["x"] + grid["w"] > GRID_WIDTH:
            problems.append(f"{title}: wider than the grid ({grid})")
        problems.extend(
            f"{title} overlaps {other}" for other, seen in placed if _overlaps(grid, seen)
        )
        placed.append((title, grid))
        if panel.get("type") == "row" and panel.get("panels"):
            problems.extend(_grid_problems(panel["panels"], f"{where} row {panel.get('title')!r}"))
    return problems


def test_panels_are_laid_out_on_the_grid(dashboards: dict[str, dict[str, Any]]) -> None:
    problems = [
        p for name, model in dashboards.items() for p in _grid_problems(model["panels"], name)
    ]
    assert not problems, "\n".join(problems)


def test_every_query_panel_has_a_target(dashboards: dict[str, dict[str, Any]]) -> None:
    empty = [
        f"{name} {panel.get('title')!r}"
        for name, model in dashboards.items()
        for panel in iter_panels(model["panels"])
        if panel.get("type") != "row" and not panel.get("targets")
    ]
    assert not empty, f"panels without a query: {empty}"


def test_stack_queries_cover_dashboards_rows_variables_and_rules() -> None:
    queries = stack_queries()
    wheres = [q.where for q in queries]
    for path in dashboard_files():
        assert any(w.startswith(f"dashboards/{path.name} ") for w in wheres), path.name
    assert any("panel 'Resident memory'" in w for w in wheres), "panels of a collapsed row"
    assert any(" variable 'env'" in w for w in wheres), "template variables"
    assert {q.language for q in queries if q.where.startswith("loki/rules/")} == {"logql"}
    assert {q.language for q in queries if q.where.startswith("prometheus/rules/")} == {"promql"}


# --------------------------------------------------------------------------- Loki
@pytest.fixture(scope="module")
def loki_config() -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(LOKI_CONFIG)
    return document


def test_loki_enforces_retention(loki_config: dict[str, Any]) -> None:
    compactor = loki_config["compactor"]
    assert compactor["retention_enabled"] is True
    assert compactor.get("delete_request_store"), "Loki 3 refuses retention without one"
    period = str(loki_config["limits_config"]["retention_period"])
    assert re.fullmatch(r"[1-9]\d*[hdw]", period), period


def test_loki_schema_is_tsdb_v13(loki_config: dict[str, Any]) -> None:
    newest = max(loki_config["schema_config"]["configs"], key=lambda c: str(c["from"]))
    assert newest["store"] == "tsdb" and newest["schema"] == "v13", newest


def test_loki_accepts_structured_metadata(loki_config: dict[str, Any]) -> None:
    limits = loki_config["limits_config"]
    assert limits["allow_structured_metadata"] is True
    assert limits.get("discover_service_name") == [], "no service_name label beside ours"
    assert loki_config["auth_enabled"] is False


def test_loki_ruler_reads_the_fake_tenant_and_alerts(
    loki_config: dict[str, Any], compose: dict[str, Any]
) -> None:
    ruler = loki_config["ruler"]
    assert ruler["alertmanager_url"] == "http://alertmanager:9093"
    assert ruler["enable_api"] is True
    directory = ruler["storage"]["local"]["directory"]
    assert f"./logging-stack/loki/rules:{directory}:ro" in _services(compose)["loki"]["volumes"]
    files = rule_files(LOKI_RULES_DIR)
    assert files and all(path.parent.name == "fake" for path in files), files


# --------------------------------------------------------------------------- Alloy
def _strip_alloy_comments(text: str) -> str:
    out, i, quote = [], 0, ""
    while i < len(text):
        char = text[i]
        if quote:
            out.append(char)
            if char == "\\" and quote == '"':
                out.append(text[i + 1 : i + 2])
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in '"`':
            quote = char
            out.append(char)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _braced(text: str, open_at: int) -> str:
    """The text between the `{` at `open_at` and its matching `}` (strings skipped)."""
    depth, i, quote = 0, open_at, ""
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 2
                continue
            if char == quote:
                quote = ""
        elif char in '"`':
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
        i += 1
    raise AssertionError(f"unbalanced braces from offset {open_at}")


def _blocks(text: str, name: str) -> list[str]:
    return [
        _braced(text, m.end() - 1)
        for m in re.finditer(rf"(?<![\w.]){re.escape(name)}\s*(\"[^\"]*\"\s*)?\{{", text)
    ]


def _map_keys(block: str, attribute: str = "values") -> list[str]:
    match = re.search(rf"\b{attribute}\s*=\s*\{{", block)
    assert match, f"no {attribute} map in {block!r}"
    inner = _braced(block, match.end() - 1)
    return re.findall(r"(?:^|[,{\s])\"?([A-Za-z_][A-Za-z0-9_]*)\"?\s*=", inner)


def _list_values(block: str) -> list[str]:
    match = re.search(r"\bvalues\s*=\s*\[([^\]]*)\]", block)
    assert match, f"no values list in {block!r}"
    return re.findall(r"\"([^\"]+)\"", match.group(1))


@pytest.fixture(scope="module")
def alloy() -> str:
    return _strip_alloy_comments(ALLOY_CONFIG.read_text())


def test_alloy_labels_are_exactly_the_loki_labels(alloy: str) -> None:
    labels = _blocks(alloy, "stage.labels")
    assert len(labels) == 1, "one stage.labels block"
    keys = _map_keys(labels[0])
    assert sorted(keys) == sorted(LOKI_LABELS) and len(keys) == len(LOKI_LABELS), keys
    keep = _blocks(alloy, "stage.label_keep")
    assert keep and _list_values(keep[-1]) == list(LOKI_LABELS), "the last word on labels"
    for block in _blocks(alloy, "stage.static_labels"):
        assert set(_map_keys(block)) <= set(LOKI_LABELS), block


def test_alloy_sends_ids_as_structured_metadata(alloy: str) -> None:
    metadata = _blocks(alloy, "stage.structured_metadata")
    assert metadata, "a stage.structured_metadata block"
    sent = {key for block in metadata for key in _map_keys(block)}
    assert set(ID_FIELDS) <= sent, sorted(sent)
    labelled = {
        key
        for name in ("stage.labels", "stage.static_labels")
        for block in _blocks(alloy, name)
        for key in _map_keys(block)
    }
    assert not labelled & set(ID_FIELDS), "ids are never labels"
    extracted = {
        key for block in _blocks(alloy, "stage.json") for key in _map_keys(block, "expressions")
    }
    assert set(ID_FIELDS) | set(LOKI_LABELS) | {"timestamp"} <= extracted, sorted(extracted)


def test_alloy_reads_this_project_and_writes_to_loki(alloy: str, compose: dict[str, Any]) -> None:
    assert f"com.docker.compose.project={compose['name']}" in alloy
    assert re.search(r"\bloki\.source\.docker\s+\"", alloy)
    assert re.search(r"\bstage\.timestamp\s*\{[^}]*source\s*=\s*\"timestamp\"", alloy)
    assert 'url = "http://loki:3100/loki/api/v1/push"' in alloy


# --------------------------------------------------------------------------- alerts
def _alerts() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for folder in (LOKI_RULES_DIR, PROMETHEUS_RULES_DIR):
        for path in rule_files(folder):
            where = str(path.relative_to(STACK))
            found.extend((where, rule) for rule in iter_rules(load_yaml(path)) if "alert" in rule)
    return found


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of `markdown` (lowercase, punctuation removed,
    spaces to hyphens, `-1`, `-2`… for repeats); fenced code is not headings."""
    anchors: set[str] = set()
    counts: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or heading is None:
            continue
        text = re.sub(r"`([^`]*)`", r"\1", heading.group(1))
        anchor = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        repeat = counts.get(anchor, 0)
        counts[anchor] = repeat + 1
        anchors.add(anchor if repeat == 0 else f"{anchor}-{repeat}")
    return anchors


def test_the_required_alerts_exist() -> None:
    names = [rule["alert"] for _, rule in _alerts()]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert set(names) >= REQUIRED_ALERTS, sorted(REQUIRED_ALERTS - set(names))
    loki = {rule["alert"] for where, rule in _alerts() if where.startswith("loki/")}
    prometheus = {rule["alert"] for where, rule in _alerts() if where.startswith("prometheus/")}
    assert loki and prometheus, "log-based and metric-based alerts"


@pytest.mark.parametrize(("where", "rule"), _alerts(), ids=[rule["alert"] for _, rule in _alerts()])
def test_alert_is_documented(where: str, rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert str(rule.get("expr", "")).strip(), f"{where} {name}: no expr"
    assert (rule.get("labels") or {}).get("severity") in SEVERITIES, f"{where} {name}: severity"
    annotations = rule.get("annotations") or {}
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{where} {name}: no {key}"
    path, _, anchor = str(annotations["runbook_url"]).partition("#")
    assert path == RUNBOOK_PATH, f"{where} {name}: runbook_url {annotations['runbook_url']}"
    assert anchor in github_anchors(RUNBOOK.read_text()), (
        f"{where} {name}: {RUNBOOK_PATH} has no section #{anchor}"
    )


def test_github_anchors_follow_githubs_rules() -> None:
    lines = ["# Incident response", "## HighErrorRate", "## What to do: `jadetrade db`"]
    lines += ["```", "# not a heading", "```", "## HighErrorRate"]
    markdown = "\n".join(lines)
    assert github_anchors(markdown) == {
        "incident-response",
        "higherrorrate",
        "what-to-do-jadetrade-db",
        "higherrorrate-1",
    }


def test_prometheus_loads_the_rules_scrapes_the_engine_and_alerts(compose: dict[str, Any]) -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    volumes = _services(compose)["prometheus"]["volumes"]
    assert "./logging-stack/prometheus/rules:/etc/prometheus/rules:ro" in volumes
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanagers == ["alertmanager:9093"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"prometheus", "api", "worker"} <= set(jobs)
    ports = {
        name: [sd["port"] for sd in jobs[name].get("dns_sd_configs", [])]
        for name in ("api", "worker")
    }
    assert ports == {"api": [8000], "worker": [9101]}, ports


def test_alertmanager_routes_to_defined_receivers() -> None:
    config = load_yaml(ALERTMANAGER_CONFIG)
    receivers = {receiver["name"] for receiver in config["receivers"]}

    def routes(route: dict[str, Any]) -> list[dict[str, Any]]:
        return [route, *(r for child in route.get("routes", []) for r in routes(child))]

    used = {route["receiver"] for route in routes(config["route"]) if "receiver" in route}
    assert used <= receivers, used - receivers


# --------------------------------------------------------------------------- LogQL
def test_logql_has_none_of_the_known_mistakes() -> None:
    problems = [
        f"{query.where}: {problem}"
        for query in stack_queries()
        if query.language == "logql"
        for problem in logql_problems(query.expr)
    ]
    assert not problems, "\n".join(problems)


def test_logql_checks_catch_the_known_mistakes() -> None:
    assert logql_problems('{service="bot"} |= "timeout" or |= "refused"')
    assert logql_problems('count_over_time({service="bot"}[5m]) by (component)')
    assert logql_problems(
        'quantile_over_time(0.95, {service="bot"} | json | unwrap duration_ms [5m]) by (status)'
    )
    assert not logql_problems('{service="bot"} |~ "timeout|refused"')
    assert not logql_problems('sum by (component) (count_over_time({service="bot"}[5m]))')
    assert not logql_problems(
        'quantile_over_time(0.95, {service="bot"} | json | unwrap duration_ms | __error__="" '
        "[5m]) by (status)"
    )


def test_stream_matchers_read_selectors_only() -> None:
    expr = (
        'sum by (status) (count_over_time({service="bot", env=~"${env}", level!="debug"} '
        '| json | status="failed" | line_format "{{.status}} {{.reason}}" [$__interval]))'
    )
    assert stream_matchers(expr) == [
        ("service", "=", "bot"),
        ("env", "=~", "${env}"),
        ("level", "!=", "debug"),
    ]


# --------------------------------------------------------------------------- checkers
# Label values the engine writes, as the suite's captured lines show them.
SEEN: dict[str, set[str]] = {
    "env": {"test"},
    "service": {"bot", "web"},
    "component": {"api", "webhook", "trade", "risk", "worker", "exchanges", "trading", "ui"},
    "level": {"debug", "info", "warning", "error", "critical"},
    "exchange": {"paper", "binance", "bybit"},
}

# A /metrics page in both exposition styles: counters named with and without `_total`.
SAMPLE_METRICS = """\
# HELP jadetrade_alert_to_order_seconds From the webhook's receipt of an alert to the order
# TYPE jadetrade_alert_to_order_seconds histogram
jadetrade_alert_to_order_seconds_bucket{exchange="paper",le="0.005"} 1.0
jadetrade_alert_to_order_seconds_count{exchange="paper"} 1.0
# TYPE jadetrade_signal_execution_duration_seconds histogram
# TYPE jadetrade_executions_in_flight gauge
# TYPE jadetrade_signal_queue_length gauge
# TYPE jadetrade_signal_queue_pending gauge
# TYPE jadetrade_signal_queue_lag gauge
# TYPE jadetrade_signals_finished counter
# TYPE jadetrade_orders_total counter
jadetrade_orders_total{exchange="paper",status="filled"} 3.0
# TYPE jadetrade_exchange_errors counter
# TYPE jadetrade_signals_dead_lettered_total counter
"""


def _loki_panel(panel_id: int, exprs: list[str]) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "logs",
        "title": "Broken",
        "datasource": LOKI,
        "gridPos": {"h": 8, "w": 24, "x": 0, "y": 500},
        "targets": [
            {"refId": chr(ord("A") + n), "datasource": LOKI, "expr": expr}
            for n, expr in enumerate(exprs)
        ],
    }


def test_log_selector_check_reports_id_labels_and_unknown_values() -> None:
    dashboard = load_json(DASHBOARDS_DIR / "trades.json")
    types = datasource_types()
    assert check_log_selectors(dashboard_queries(dashboard, "trades.json", types), SEEN) == []

    broken = copy.deepcopy(dashboard)
    broken["panels"].append(
        _loki_panel(
            999,
            [
                '{service="bot", user_id="8d1f"} |= "order_placed"',
                '{service="bot", component="nonexistent", env=~"$env"} | level="bogus"',
            ],
        )
    )
    problems = check_log_selectors(dashboard_queries(broken, "trades.json", types), SEEN)
    assert len(problems) == 2, problems
    assert "'user_id' is not a Loki label" in problems[0]
    assert "component='nonexistent' matches no line" in problems[1]
    assert all("panel 'Broken'" in p for p in problems)


def test_log_selector_check_reports_regexes_matching_nothing() -> None:
    queries = [
        Query("logql", '{service="bot", level=~"fatal|panic"}', "a"),
        Query("logql", '{service=~"bot|web", level!~"debug", component!="x"}', "b"),
        Query("logql", '{service="bot", exchange=~"${exchange}"}', "c"),
        Query("promql", 'up{component="nonexistent"}', "d"),
    ]
    problems = check_log_selectors(queries, SEEN)
    assert len(problems) == 1, problems
    assert problems[0].startswith("a: level=~'fatal|panic' matches no line")


def test_metric_name_check_reports_metrics_the_engine_does_not_expose() -> None:
    exposed = exposed_metric_families(SAMPLE_METRICS)
    dashboard = load_json(DASHBOARDS_DIR / "engine.json")
    types = datasource_types()
    assert check_metric_names(dashboard_queries(dashboard, "engine.json", types), exposed) == []

    broken = copy.deepcopy(dashboard)
    panel = copy.deepcopy(next(p for p in iter_panels(broken["panels"]) if p.get("targets")))
    panel["id"], panel["title"] = 999, "Broken"
    panel["targets"] = [
        {
            "refId": "A",
            "datasource": PROMETHEUS,
            "expr": 'sum by (le) (rate(jadetrade_no_such_metric_bucket{env=~"$env"}[5m]))',
        }
    ]
    broken["panels"].append(panel)
    problems = check_metric_names(dashboard_queries(broken, "engine.json", types), exposed)
    assert problems == [
        "dashboards/engine.json panel 'Broken' target A: metric "
        "'jadetrade_no_such_metric_bucket' is not exposed by the engine"
    ]


def test_exposed_metric_families_reads_both_counter_styles() -> None:
    families = exposed_metric_families(SAMPLE_METRICS)
    assert {"jadetrade_signals_finished", "jadetrade_signals_finished_total"} <= families
    assert {"jadetrade_orders", "jadetrade_orders_total"} <= families
    assert "jadetrade_alert_to_order_seconds" in families
    assert "jadetrade_alert_to_order_seconds_bucket" not in families  # a sample, not a family


def test_metric_names_skip_functions_labels_and_durations() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(http_seconds_bucket{env=~"$env", '
        'route!="/health"}[$__rate_interval]))) > on (route) group_left (owner) '
        "max without (instance) (owners_info offset 1h30m) "
        'or label_replace(absent(up{job="api"}), "job", "api", "", "") '
        "unless count(ALERTS) > bool 0"
    )
    assert metric_names(expr) == {"http_seconds_bucket", "owners_info", "up", "ALERTS"}


def test_datasource_check_reports_unprovisioned_uids() -> None:
    dashboard = load_json(DASHBOARDS_DIR / "api.json")
    known = datasource_types()
    assert check_dashboard_datasources(dashboard, "api.json", known) == []

    broken = copy.deepcopy(dashboard)
    first = next(p for p in broken["panels"] if p.get("targets"))
    first["datasource"] = {"type": "prometheus", "uid": "nope"}
    first["targets"][0]["datasource"] = {"type": "prometheus", "uid": "nope"}
    nested = next(p for p in iter_panels(broken["panels"]) if p.get("title") == "CPU")
    nested["datasource"] = "Prometheus"
    problems = check_dashboard_datasources(broken, "api.json", known)
    assert len(problems) == 3, problems
    assert sum("uid 'nope' is not provisioned" in p for p in problems) == 2
    assert any("'CPU'" in p and "is not {type, uid}" in p for p in problems)


def test_every_stack_file_starts_with_a_comment() -> None:
    files = [COMPOSE, DOCKERFILE, REPO / "bot-engine" / ".dockerignore"]
    files += [p for p in STACK.rglob("*") if p.is_file() and p.suffix in (".yml", ".alloy")]
    silent = [
        str(p.relative_to(REPO))
        for p in files
        if not p.read_text().lstrip().startswith(("#", "//"))
    ]
    assert not silent, f"files that do not say what they are for: {silent}"
