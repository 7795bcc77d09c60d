"""Static checks of the observability stack's queries: every LogQL and PromQL expression of
the Grafana dashboards and alert rules under logging-stack/, and checkers that hold them
against what the engine really emits (the label values of its log lines, the metric families
of its /metrics pages). Pure functions over files and strings; the suites that capture real
log lines and /metrics output call them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

REPO = Path(__file__).resolve().parents[3]
STACK = REPO / "logging-stack"
DASHBOARDS_DIR = STACK / "grafana" / "dashboards"
DATASOURCES_FILE = STACK / "grafana" / "provisioning" / "datasources" / "datasources.yml"
LOKI_RULES_DIR = STACK / "loki" / "rules"
PROMETHEUS_RULES_DIR = STACK / "prometheus" / "rules"

# The only Loki labels (low cardinality); ids travel as structured metadata.
LOKI_LABELS = ("env", "service", "component", "level", "exchange")
# Series Prometheus makes itself, never on an engine's /metrics page.
PROMETHEUS_OWN_SERIES = frozenset({"up", "ALERTS"})
# Sample suffixes of one metric family (histogram, summary, counter).
FAMILY_SUFFIXES = ("_bucket", "_sum", "_count", "_created", "_total")
# Data sources Grafana has without provisioning.
BUILTIN_DATASOURCE_UIDS = frozenset({"-- Grafana --", "grafana", "-- Mixed --", "-- Dashboard --"})

Language = Literal["logql", "promql"]


@dataclass(frozen=True)
class Query:
    """One LogQL or PromQL expression and where it lives, for messages."""

    language: Language
    expr: str
    where: str


# --------------------------------------------------------------------------- files
def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def datasource_types(path: Path = DATASOURCES_FILE) -> dict[str, str]:
    """uid → type of every provisioned Grafana data source."""
    document = load_yaml(path) or {}
    return {
        str(source["uid"]): str(source["type"])
        for source in document.get("datasources") or []
        if isinstance(source, dict) and "uid" in source
    }


def dashboard_files(folder: Path = DASHBOARDS_DIR) -> list[Path]:
    return sorted(folder.glob("*.json"))


def rule_files(folder: Path) -> list[Path]:
    return sorted([*folder.rglob("*.yml"), *folder.rglob("*.yaml")])


def iter_panels(panels: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        if not isinstance(panel, dict):
            continue
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def iter_rules(document: Any) -> Iterator[dict[str, Any]]:
    """Every rule of a Prometheus-format rule file (Prometheus and Loki's ruler alike)."""
    for group in (document or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            if isinstance(rule, dict):
                yield rule


# --------------------------------------------------------------------------- queries
_VARIABLE = re.compile(r"\$\{[^}]+\}|\$\w+|\[\[\w+\]\]")


def is_variable(value: str) -> bool:
    """A whole value that is a Grafana template variable: `$env`, `${env}`, `[[env]]`."""
    return _VARIABLE.fullmatch(value) is not None


def _language(source: Any, types: Mapping[str, str]) -> Language | None:
    kind = None
    if isinstance(source, dict):
        kind = source.get("type") or types.get(str(source.get("uid")))
    elif isinstance(source, str):
        kind = types.get(source)
    if kind == "loki":
        return "logql"
    if kind == "prometheus":
        return "promql"
    return None


def _split_arguments(text: str) -> list[str]:
    """Top-level comma-separated arguments of `text` (strings, parentheses and braces kept)."""
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(text):
        char = text[i]
        if char in "\"'`":
            i = _skip_string(text, i)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return parts


def _variable_expression(query: Any, language: Language) -> str | None:
    """The LogQL/PromQL inside a template variable's query, if it has one."""
    if isinstance(query, dict):
        if language == "logql" and query.get("stream"):
            return str(query["stream"])
        query = query.get("query")
    if not isinstance(query, str) or not query.strip():
        return None
    text = query.strip()
    call = re.fullmatch(r"(label_values|query_result)\s*\((.*)\)", text, re.DOTALL)
    if call is None:
        if re.match(r"(label_names|metrics)\s*\(", text):
            return None
        return text
    arguments = _split_arguments(call.group(2))
    if call.group(1) == "query_result":
        return arguments[0] or None
    return arguments[0] if len(arguments) == 2 and arguments[0] else None


def dashboard_queries(
    dashboard: Mapping[str, Any], name: str, types: Mapping[str, str]
) -> list[Query]:
    """Every query of one dashboard model: panel targets (rows included) and variables."""
    found: list[Query] = []
    for panel in iter_panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if not isinstance(target, dict) or not str(target.get("expr") or "").strip():
                continue
            language = _language(target.get("datasource") or panel.get("datasource"), types)
            if language is None:
                continue
            where = (
                f"dashboards/{name} panel {panel.get('title', '?')!r} "
                f"target {target.get('refId', '?')}"
            )
            found.append(Query(language, str(target["expr"]), where))
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if not isinstance(variable, dict) or variable.get("type") != "query":
            continue
        language = _language(variable.get("datasource"), types)
        if language is None:
            continue
        expr = _variable_expression(variable.get("query"), language)
        if expr:
            where = f"dashboards/{name} variable {variable.get('name', '?')!r}"
            found.append(Query(language, expr, where))
    return found


def rule_queries(path: Path, language: Language, root: Path = STACK) -> list[Query]:
    """The expression of every rule (alerting and recording) in one rule file."""
    found = []
    relative = path.relative_to(root) if path.is_relative_to(root) else path
    for rule in iter_rules(load_yaml(path)):
        name = rule.get("alert") or rule.get("record") or "?"
        kind = "alert" if "alert" in rule else "record"
        found.append(Query(language, str(rule.get("expr", "")), f"{relative} {kind} {name}"))
    return found


def stack_queries(root: Path = STACK) -> list[Query]:
    """Every query of the stack: dashboards, Loki ruler rules (LogQL), Prometheus rules."""
    types = datasource_types(root / "grafana" / "provisioning" / "datasources" / "datasources.yml")
    found: list[Query] = []
    for path in dashboard_files(root / "grafana" / "dashboards"):
        found.extend(dashboard_queries(load_json(path), path.name, types))
    for path in rule_files(root / "loki" / "rules"):
        found.extend(rule_queries(path, "logql", root))
    for path in rule_files(root / "prometheus" / "rules"):
        found.extend(rule_queries(path, "promql", root))
    return found


# --------------------------------------------------------------------------- LogQL
def _skip_string(text: str, start: int) -> int:
    """Index just after the string literal opening at `start` (", ' or `)."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and quote != "`":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    return len(text)


def _unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    escapes = {"n": "\n", "t": "\t", "r": "\r"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), literal[1:-1])


def _selectors(expr: str) -> list[str]:
    """The inside of every `{…}` outside string literals and template variables."""
    found: list[str] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char in '"`':
            i = _skip_string(expr, i)
            continue
        if char == "{" and i > 0 and expr[i - 1] == "$":  # ${variable}
            end = expr.find("}", i)
            i = len(expr) if end < 0 else end + 1
            continue
        if char == "{":
            j = i + 1
            while j < len(expr) and expr[j] != "}":
                j = _skip_string(expr, j) if expr[j] in '"`' else j + 1
            found.append(expr[i + 1 : j])
            i = j + 1
            continue
        i += 1
    return found


_MATCHER = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|`[^`]*`)\s*,?"
)


def stream_matchers(expr: str) -> list[tuple[str, str, str]]:
    """(label, operator, value) of every matcher in the stream selectors of a LogQL
    expression; label filters after `|` are not stream selectors and are not returned."""
    found: list[tuple[str, str, str]] = []
    for selector in _selectors(expr):
        for match in _MATCHER.finditer(selector):
            found.append((match.group(1), match.group(2), _unquote(match.group(3))))
    return found


def check_log_selectors(queries: Iterable[Query], seen: Mapping[str, set[str]]) -> list[str]:
    """Problems of the LogQL stream selectors in `queries`, given the values each label was
    `seen` with: a label that is not a Loki label, an `=` value never seen, a `=~` regex
    that matches no seen value. Template variables, `!=` and `!~` are accepted."""
    problems: list[str] = []
    for query in queries:
        if query.language != "logql":
            continue
        for label, op, value in stream_matchers(query.expr):
            values = seen.get(label, set())
            if label not in LOKI_LABELS:
                problems.append(
                    f"{query.where}: {label!r} is not a Loki label (labels: "
                    f"{', '.join(LOKI_LABELS)}; ids are structured metadata)"
                )
            elif op == "=" and value and not is_variable(value) and value not in values:
                problems.append(
                    f"{query.where}: {label}={value!r} matches no line ({label} seen: "
                    f"{sorted(values)})"
                )
            elif op == "=~" and not _VARIABLE.search(value):
                try:
                    pattern = re.compile(value)
                except re.error as exc:
                    problems.append(f"{query.where}: {label}=~{value!r} is not a regex: {exc}")
                    continue
                if not any(pattern.fullmatch(v) for v in values):
                    problems.append(
                        f"{query.where}: {label}=~{value!r} matches no line ({label} seen: "
                        f"{sorted(values)})"
                    )
    return problems


_LOG_RANGE_AGGREGATIONS = ("count_over_time", "bytes_over_time", "bytes_rate", "absent_over_time")


def _closing_paren(text: str, start: int) -> int:
    """Index of the `)` matching the `(` at `start` (strings skipped); len(text) if none."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char in '"`':
            i = _skip_string(text, i)
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(text)


def logql_problems(expr: str) -> list[str]:
    """Mistakes LogQL parses differently than meant, or refuses:
    - `|= "a" or |= "b"` (`or` is not a line filter operator; `|~ "a|b"` is);
    - `count_over_time(…) by (…)` (log range aggregations take no grouping; wrap them in
      `sum by (…) (…)`);
    - `unwrap` without `| __error__=""` right after (one unparsable value fails the query).
    """
    problems: list[str] = []
    if re.search(r"\bor\s*(\|[=~]|![=~])", expr):
        problems.append('line filters joined with "or": use |~ "a|b"')
    for name in (*_LOG_RANGE_AGGREGATIONS, "rate"):
        for match in re.finditer(rf"\b{name}\s*\(", expr):
            end = _closing_paren(expr, match.end() - 1)
            if name == "rate" and "unwrap" in expr[match.end() : end]:
                continue  # an unwrapped range aggregation may group
            if re.match(r"\s*(by|without)\s*\(", expr[end + 1 :]):
                problems.append(f"{name}(…) by (…): write sum by (…) ({name}(…))")
    for match in re.finditer(r"\|\s*unwrap\s+(?:\w+\s*\(\s*\w+\s*\)|\w+)", expr):
        rest = expr[match.end() :]
        if not re.match(r'\s*\|\s*__error__\s*=\s*""', rest):
            problems.append(f'{match.group(0).strip()} is not followed by | __error__=""')
    return problems


# --------------------------------------------------------------------------- PromQL
_PROMQL_TOKEN = re.compile(
    r"(?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)"
    r"|(?P<number>0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)"
)
PROMQL_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "atan2",
        "inf",
        "nan",
        "Inf",
        "NaN",
    }
)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads, as written (`…_bucket`, `…_total`).

    Not names: functions and aggregations (followed by `(`), keywords, label names inside
    `{…}` or in `by`/`without`/`on`/`ignoring`/`group_*` lists, durations, strings and
    Grafana template variables."""
    text = _VARIABLE.sub(" ", expr)
    pieces: list[str] = []
    i = 0
    while i < len(text):  # drop string literals
        if text[i] in "\"'`":
            end = _skip_string(text, i)
            pieces.append(" ")
            i = end
            continue
        pieces.append(text[i])
        i += 1
    text = "".join(pieces)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    # Grouping and matching label lists, keyword included: `sum by (le) (x)` becomes
    # `sum (x)`, so that `sum` is still seen as a call.
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names: set[str] = set()
    for match in _PROMQL_TOKEN.finditer(text):
        name = match.group("ident")
        if name is None or name in PROMQL_KEYWORDS:
            continue
        if re.match(r"\s*\(", text[match.end() :]):  # a function or an aggregation
            continue
        names.add(name)
    return names


def exposed_metric_families(text: str) -> set[str]:
    """Metric family names of a /metrics page, from its `# TYPE name kind` lines.

    The text format names a counter's family `name_total` and OpenMetrics names it `name`
    (its samples being `name_total` in both): counters are returned under both names."""
    families: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] != "#" or parts[1] != "TYPE":
            continue
        name, kind = parts[2], parts[3]
        families.add(name)
        if kind == "counter":
            families.add(name.removesuffix("_total"))
            families.add(name if name.endswith("_total") else f"{name}_total")
    return families


def _is_exposed(name: str, exposed: set[str]) -> bool:
    if name in exposed or name in PROMETHEUS_OWN_SERIES:
        return True
    return any(
        name.endswith(suffix) and name.removesuffix(suffix) in exposed for suffix in FAMILY_SUFFIXES
    )


def check_metric_names(queries: Iterable[Query], exposed: set[str]) -> list[str]:
    """Problems of the PromQL in `queries`: metric names that no family in `exposed`
    (`exposed_metric_families` of the /metrics pages) provides. `up` and `ALERTS` are
    Prometheus's own and always accepted."""
    problems: list[str] = []
    for query in queries:
        if query.language != "promql":
            continue
        for name in sorted(metric_names(query.expr)):
            if not _is_exposed(name, exposed):
                problems.append(f"{query.where}: metric {name!r} is not exposed by the engine")
    return problems


# --------------------------------------------------------------------------- dashboards
def check_dashboard_datasources(
    dashboard: Mapping[str, Any], name: str, known_uids: Iterable[str]
) -> list[str]:
    """Problems of a dashboard's data source references: a reference that is not a
    `{type, uid}` object, a uid no provisioned data source has, a query target without a
    data source. Panels (rows included), targets, variables and annotations are checked."""
    known = set(known_uids) | BUILTIN_DATASOURCE_UIDS
    problems: list[str] = []

    def check(source: Any, where: str) -> None:
        if source is None:
            return
        if not isinstance(source, dict) or "uid" not in source or "type" not in source:
            problems.append(f"{name} {where}: data source {source!r} is not {{type, uid}}")
            return
        uid = str(source["uid"])
        if uid not in known and not is_variable(uid):
            problems.append(f"{name} {where}: data source uid {uid!r} is not provisioned")

    for panel in iter_panels(dashboard.get("panels") or []):
        title = f"panel {panel.get('title', '?')!r}"
        check(panel.get("datasource"), title)
        for target in panel.get("targets") or []:
            if not isinstance(target, dict):
                continue
            where = f"{title} target {target.get('refId', '?')}"
            if target.get("datasource") is None and panel.get("datasource") is None:
                problems.append(f"{name} {where}: no data source")
            check(target.get("datasource"), where)
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if isinstance(variable, dict) and variable.get("type") == "query":
            check(variable.get("datasource"), f"variable {variable.get('name', '?')!r}")
    for annotation in (dashboard.get("annotations") or {}).get("list") or []:
        if isinstance(annotation, dict):
            check(annotation.get("datasource"), f"annotation {annotation.get('name', '?')!r}")
    return problems
