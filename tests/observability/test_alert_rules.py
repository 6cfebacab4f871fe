"""The Prometheus alert rules name only metrics a real app exports, and (with promtool
installed) parse and fire as their unit tests say."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.observability.conftest import samples, scrape

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "farmstand-alerts.yml"
RULES_TESTS = RULES_DIR / "farmstand-alerts.test.yml"

# PromQL words that look like metric names: operators and modifiers (functions are told apart
# by the parenthesis that follows them).
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left"}
    | {"group_right", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers outside label matchers, ranges,
    strings and groupings that are not followed by '(' (a function) and not keywords."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue
        if match[0].lower() not in _KEYWORDS:
            names.add(match[0])
    return names


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_name_extraction_understands_promql():
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{route="/x/{id}", s=~"5.."}[5m])))'
        " > 0.2 and on (job) b_total / ignoring(x) c unless absent(d) or 1e-9 > bool e offset 5m"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d", "e"}


def test_every_rule_is_complete():
    rules = _rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert {
        "FarmstandStatusUpdateSlow",
        "FarmstandNotificationFailures",
        "FarmstandNotificationsLate",
        "FarmstandEventsRelayedLate",
        "FarmstandServerErrors",
        "FarmstandLoadShedding",
    } <= set(names)
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert metric_names(rule["expr"]), rule["alert"]


async def test_every_metric_the_rules_name_is_exported(client: httpx.AsyncClient):
    await client.get("/healthz")  # one request, so the latency histogram has series
    exported = {name for name, _ in samples(await scrape(client))}

    named = {name: rule["alert"] for rule in _rules() for name in metric_names(rule["expr"])}

    missing = {name: alert for name, alert in named.items() if name not in exported}
    assert not missing, f"rules name metrics /metrics does not export: {missing}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    for command in (["check", "rules", RULES.name], ["test", "rules", RULES_TESTS.name]):
        result = subprocess.run(
            ["promtool", *command],
            cwd=RULES_DIR,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
