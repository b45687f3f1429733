"""docs/contracts.md is generated from contracts/ and must not go stale."""

from __future__ import annotations

from pathlib import Path

from contracts.docs import DOCS_PATH, render_contract_docs
from contracts.quarantine import QUARANTINE_SCHEMA
from contracts.registry import CONTRACTS
from contracts.schema import Reason
from jobs.cli import main as cli


def test_docs_contracts_md_is_up_to_date() -> None:
    assert DOCS_PATH.read_text() == render_contract_docs(), (
        "docs/contracts.md is stale: run `cityflow contracts docs` and commit it")


def test_the_docs_list_every_column_and_reason_code() -> None:
    text = render_contract_docs()
    for contract in CONTRACTS.values():
        for f in contract.fields:
            assert f"| `{f.name}` |" in text
    for name in QUARANTINE_SCHEMA.names:
        assert f"| `{name}` |" in text
    for reason in Reason:
        assert f"| `{reason.value}` | {reason.description}" in text


def test_docs_command_writes_and_checks(tmp_path: Path, capsys) -> None:
    out = tmp_path / "contracts.md"
    out.write_text("stale\n")
    assert cli(["contracts", "docs", "--check", "--output", str(out)]) == 1
    assert "stale" in capsys.readouterr().err
    assert cli(["contracts", "docs", "--output", str(out)]) == 0
    assert out.read_text() == render_contract_docs()
    assert cli(["contracts", "docs", "--check", "--output", str(out)]) == 0
