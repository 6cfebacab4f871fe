"""The state-machine document is generated from the table and must never go stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from farmstand.cli import app
from farmstand.orders import states

DOC = Path(__file__).resolve().parents[1] / "docs" / "state-machine.md"


def _mermaid_lines(text: str) -> list[str]:
    """The lines inside the document's ```mermaid block."""
    lines = text.splitlines()
    start = lines.index("```mermaid")
    end = lines.index("```", start + 1)
    return [line.strip() for line in lines[start + 1 : end]]


def test_state_machine_doc_matches_the_table() -> None:
    # Given the committed document, When compared with what the table renders,
    # Then they are identical (run `farmstand docs` after changing states.py)
    assert DOC.read_text() == states.render_markdown(), (
        "docs/state-machine.md is stale: run `farmstand docs`"
    )


def test_mermaid_diagram_lists_every_rule_of_the_table() -> None:
    diagram = _mermaid_lines(DOC.read_text())
    assert diagram[0] == "stateDiagram-v2"
    assert "[*] --> PENDING" in diagram

    edges: dict[tuple[str, str], str] = {}
    for line in diagram[1:]:
        arrow, _, label = line.partition(":")
        source, _, target = arrow.strip().partition(" --> ")
        if "[*]" not in (source, target):
            edges[(source, target)] = label.strip()

    # Every rule is drawn once, with its roles and (when restricted) its fulfilment types
    assert set(edges) == {(rule.source.value, rule.target.value) for rule in states.TRANSITIONS}
    for rule in states.TRANSITIONS:
        label = edges[(rule.source.value, rule.target.value)]
        for role in rule.roles:
            assert role.lower() in label, (rule, label)
        if rule.fulfillment != frozenset(states.FulfillmentType):
            for fulfillment in rule.fulfillment:
                assert fulfillment.lower() in label, (rule, label)

    # And the final statuses end the diagram
    for status in states.FINAL_STATUSES:
        assert f"{status} --> [*]" in diagram


def test_doc_table_has_a_row_for_every_rule() -> None:
    text = DOC.read_text()
    for rule in states.TRANSITIONS:
        assert f"| {rule.source} | {rule.target} |" in text


def test_docs_check_command_passes() -> None:
    # When an operator runs `farmstand docs --check` on this checkout
    result = CliRunner().invoke(app, ["docs", "--check"])

    # Then it reports the document as up to date
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_docs_check_command_fails_when_doc_is_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a table that renders differently from the committed document
    before = DOC.read_text()
    monkeypatch.setattr(states, "render_markdown", lambda: before + "\nA new rule.\n")

    # When the check runs
    try:
        result = CliRunner().invoke(app, ["docs", "--check"])
    finally:
        if DOC.read_text() != before:  # --check must never write; undo it if it did
            DOC.write_text(before)
            pytest.fail("`farmstand docs --check` rewrote the document")

    # Then it fails and says how to fix it
    assert result.exit_code == 1
    assert "stale" in result.output


def test_every_image_and_page_a_doc_links_exists() -> None:
    docs = DOC.parent
    missing = []
    for doc in [*docs.glob("*.md"), docs.parent / "README.md"]:
        text = doc.read_text()
        links = re.findall(r"\]\(([^)#\s]+)\)", text) + re.findall(r'<img src="([^"]+)"', text)
        for link in links:
            if "://" in link or link.startswith("mailto:"):
                continue
            if not (doc.parent / link).exists():
                missing.append(f"{doc.name}: {link}")
    assert missing == []
