"""Redact stage: redact, drop, report or off; counts by type, values never kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.data.tables import iter_rows
from schemas.data import PiiConfig
from tasks.redact import redact_rows
from tests.tasks.helpers import chat, filtered

ROWS = [
    chat("Email me at jane.roe@hospital.org", "Sure, also call 020 7946 0958.", 1),
    chat("What does len do?", "It counts items.", 2),
]


@pytest.mark.parametrize(("action", "rows", "dropped"), [("redact", 2, {}), ("drop", 1, {"pii.dropped": 1}),
                                                          ("report", 2, {})])
def test_actions(tmp_path: Path, action: str, rows: int, dropped: dict) -> None:
    result = redact_rows(filtered(tmp_path, ROWS), PiiConfig(action=action), tmp_path / "out.parquet")
    assert result.table.rows == rows and result.dropped == dropped
    assert result.found == {"email": 1, "phone": 1} and result.rows_with_pii == 1
    first = next(iter_rows(result.table))
    if action == "redact":
        assert first["messages"][0]["content"] == "Email me at <EMAIL>"
        assert first["messages"][1]["content"] == "Sure, also call <PHONE>."
    if action == "report":
        assert "jane.roe@hospital.org" in first["messages"][0]["content"]
    assert "hospital" not in str(result.model_dump())  # counts only, never the values


def test_off_passes_rows_through(tmp_path: Path) -> None:
    source = filtered(tmp_path, ROWS)
    result = redact_rows(source, PiiConfig(action="off"), tmp_path / "out.parquet")
    assert result.table == source.table and result.found == {}


def test_numbers_in_printed_output_survive_and_real_phones_are_redacted_whole(tmp_path: Path) -> None:
    rows = [chat("np.angle(z) prints array([ 0.        , -0.78539816]); what now?",
                 "Slice it with x[1::2]. If it still fails, call +1 415 555 0105.", 1)]
    result = redact_rows(filtered(tmp_path, rows), PiiConfig(), tmp_path / "out.parquet")
    assert result.found == {"phone": 1} and result.rows_with_pii == 1
    user, assistant = next(iter_rows(result.table))["messages"]
    assert user["content"] == "np.angle(z) prints array([ 0.        , -0.78539816]); what now?"
    assert assistant["content"] == "Slice it with x[1::2]. If it still fails, call <PHONE>."
