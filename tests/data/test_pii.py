"""PII: presidio's recognizers find and validate each kind; custom patterns; nothing touches the network."""

from __future__ import annotations

import socket

import pytest

from adapterflow.data.pii import PiiScanner
from schemas.data import PiiConfig


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
