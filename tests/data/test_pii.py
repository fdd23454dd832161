"""PII: presidio's recognizers find and validate each kind, judged in context; custom patterns; no network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from adapterflow.data.pii import PiiScanner
from adapterflow.data.pii_context import TextLayout
from adapterflow.data.python_docs import build_python_docs
from schemas.data import PiiConfig
from schemas.loading import load_config

DEMO = Path(__file__).resolve().parents[2] / "configs" / "smollm2_lora_cpu.yaml"


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner(PiiConfig(custom_patterns=[{"name": "EMPLOYEE_ID", "regex": r"EMP-\d{6}"}]))


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("PII detection tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(
    ("text", "entity", "placeholder"),
    [
        ("write to jane.roe@hospital.org today", "email", "<EMAIL>"),
        ("call +1 (415) 555-2671 now", "phone", "<PHONE>"),
        ("card 4111 1111 1111 1111 on file", "credit_card", "<CREDIT_CARD>"),
        ("pay to DE89370400440532013000 please", "iban", "<IBAN>"),
        ("the host 192.168.1.20 is down", "ip_address", "<IP_ADDRESS>"),
        ("SSN 536-22-8726 on the form", "national_id", "<NATIONAL_ID>"),
        ("staff EMP-123456 signed", "EMPLOYEE_ID", "<EMPLOYEE_ID>"),
    ],
)
def test_each_kind_is_found_and_redacted(scanner: PiiScanner, text: str, entity: str, placeholder: str) -> None:
    redacted, counts = scanner.redact(text)
    assert counts == {entity: 1}
    assert placeholder in redacted


def test_checksums_reject_lookalikes(scanner: PiiScanner) -> None:
    for text in ("card 4111 1111 1111 1112 (fails Luhn)", "code DE00370400440532013000 (bad IBAN)",
                 "version 3.11.7 released 2024-05-01", "returns 1234567 items", "x = 10 ** 6"):
        assert scanner.find(text) == [], text


def test_only_selected_entities_are_looked_for() -> None:
    scanner = PiiScanner(PiiConfig(entities=["email"]))
    assert scanner.redact("mail a@b.com or 192.168.1.20")[0] == "mail <EMAIL> or 192.168.1.20"


@pytest.mark.parametrize(
    "text",
    [
        "array([ 0.        , -0.78539816])",  # was `array([ 0.        , -<PHONE>])`
        "take x[0:2], then x[1::2] and a[::2]",  # slices; 1::2 is a valid IPv6 address
        "the ratio is 0.4111111111111111",  # a Luhn-valid digit run after a decimal point
        "internal extension range 2863-3442 and extensions 12863-13442",
        "order 4155550123 shipped",
        "order number 8812345678 and invoice 2024-118834",
        "released 2024-05-01T12:30:45Z with numpy 1.26.4, upgrade to version 10.0.0.1",
        "request 123e4567-e89b-12d3-a456-426614174000 failed; total $4,155,550.12",
        ">>> np.arange(3) * 4155550123\narray([0, 4155550123, 8311100246])",
        "```\nrows = 4155550123\nhost = '10.0.0.1'\n```",
        "| order | amount |\n|---|---|\n| 4155550123 | 12.50 |",
    ],
)
def test_numbers_in_code_arrays_tables_and_identifiers_are_not_personal_data(scanner: PiiScanner, text: str) -> None:
    assert scanner.find(text) == [], text


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("call +1 415 555 0105 today", "call <PHONE> today"),  # 415 555 0105 passes the NHS checksum too
        ("call me on 020 7946 0958.", "call me on <PHONE>."),
        ("Jane (+49 30 901820) will follow up", "Jane (<PHONE>) will follow up"),
        ("Escalated to Tom, (415) 555-2671.", "Escalated to Tom, <PHONE>."),
        ("Tel. 01 42 68 53 00", "Tel. <PHONE>"),
        ("my mobile is 4155550123", "my mobile is <PHONE>"),
        ("Tel:+44 20 7946 0958", "Tel:<PHONE>"),
    ],
)
def test_real_phone_numbers_in_prose_are_redacted_whole(scanner: PiiScanner, text: str, redacted: str) -> None:
    assert scanner.redact(text) == (redacted, {"phone": 1})


def test_national_ids_need_context(scanner: PiiScanner) -> None:
    assert scanner.redact("SSN 536-22-8726")[0] == "SSN <NATIONAL_ID>"
    assert scanner.redact("NHS number 943 476 5919")[0] == "NHS number <NATIONAL_ID>"
    for text in ("part 536-22-8726 ships", "Batch 943 476 5919 passed QA", "see 536-22-8726"):
        assert scanner.find(text) == [], text


def test_bare_digit_runs_need_context(scanner: PiiScanner) -> None:
    assert scanner.find("processed 4155550123 rows") == []
    assert scanner.find("4111111111111111 on file") == []
    assert scanner.redact("card number 4111111111111111")[0] == "card number <CREDIT_CARD>"


def test_a_table_column_header_is_context(scanner: PiiScanner) -> None:
    table = "| name | phone |\n|---|---|\n| Jane | 4155550123 |"
    assert scanner.redact(table)[0].endswith("| Jane | <PHONE> |")


def test_per_type_thresholds_and_phone_regions() -> None:
    assert PiiScanner(PiiConfig()).find("Escalated to (415) 555-2671")
    assert not PiiScanner(PiiConfig(min_scores={"phone": 0.7})).find("Escalated to (415) 555-2671")
    tokyo = "Escalated to Hiro, 03-1234-5678."  # grouped the Japanese way, which the default regions don't know
    assert not PiiScanner(PiiConfig()).find(tokyo)
    assert PiiScanner(PiiConfig(phone_regions=["JP"])).redact(tokyo)[0] == "Escalated to Hiro, <PHONE>."
    with pytest.raises(ValidationError, match="unknown phone regions"):
        PiiConfig(phone_regions=["XX"])


def test_the_demo_data_has_no_personal_data(scanner: PiiScanner) -> None:
    source = load_config(DEMO).data.sources[0]
    rows = build_python_docs(source.package, source.max_examples, source.include_topics, source.seed)
    flagged = [text for row in rows for text in row.values() if scanner.find(text)]
    assert len(rows) == source.max_examples and flagged == []


def test_code_is_blanked_without_moving_offsets() -> None:
    text = "see\n```\nx = 4155550123\n```\nand `y = 2` or\n>>> f(1)\n3\n\ncall 020 7946 0958"
    masked = TextLayout.of(text).without_code(text)
    assert len(masked) == len(text) and masked.count("\n") == text.count("\n")
    assert "4155550123" not in masked and "y = 2" not in masked and ">>>" not in masked
    assert masked.endswith("call 020 7946 0958")
