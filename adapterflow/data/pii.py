"""Personal data: presidio's pattern recognizers (with their checksum validation) plus custom patterns.

Recognizers run only on texts that a cheap regular expression flags for their entity (most texts have no
digits run, no `@`), and they are called directly, without presidio's AnalyzerEngine and NLP pipeline, so
no spaCy model is needed and nothing is downloaded. Findings are counted by type; values are never kept.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from schemas.data import PiiConfig

# adapterflow entity -> (presidio entities, placeholder, prefilter)
ENTITIES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "email": (("EMAIL_ADDRESS",), "<EMAIL>", r"@"),
    "phone": (("PHONE_NUMBER",), "<PHONE>", r"\d[\d\s().\-]{5,}\d"),
    "credit_card": (("CREDIT_CARD",), "<CREDIT_CARD>", r"\d(?:[ \-]?\d){11,18}"),
    "iban": (("IBAN_CODE",), "<IBAN>", r"[A-Za-z]{2}\d{2}[ ]?[A-Za-z0-9]{4}"),
    "ip_address": (("IP_ADDRESS",), "<IP_ADDRESS>", r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9a-fA-F]{1,4}:[0-9a-fA-F]{0,4}:"),
    "national_id": (("US_SSN", "UK_NHS"), "<NATIONAL_ID>", r"\d{3}[ \-]?\d{2,3}[ \-]?\d{4}"),
}


QUICK_DIGITS = re.compile(r"[0-9][0-9.]")  # plain character classes: 5x faster than an alternation here


@dataclass(frozen=True)
class Finding:
    entity: str
    start: int
    end: int
    score: float


def _recognizers(entity: str) -> list[Any]:
    """presidio recognizers for one adapterflow entity (imported lazily: presidio imports spaCy, ~9 s)."""
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer, IbanRecognizer, IpRecognizer, NhsRecognizer, PhoneRecognizer, UsSsnRecognizer,
    )

    if entity == "email":
        return [OfflineEmailRecognizer()]
    return {
        "phone": [PhoneRecognizer()],
        "credit_card": [CreditCardRecognizer()],
        "iban": [IbanRecognizer()],
        "ip_address": [IpRecognizer()],
        "national_id": [UsSsnRecognizer(), NhsRecognizer()],
    }[entity]


def OfflineEmailRecognizer() -> Any:  # noqa: N802 - a factory standing in for a class defined on first use
    """presidio's EmailRecognizer, validating domains against tldextract's bundled suffix list.

    The stock recognizer asks tldextract's default extractor, which downloads the public suffix list on
    first use; no code path of ours may touch the network.
    """
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class _OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(extract(pattern_text).fqdn)

    return _OfflineEmailRecognizer()


class PiiScanner:
    """Finds, counts and redacts personal data in texts according to the config."""

    def __init__(self, config: PiiConfig) -> None:
        from presidio_analyzer import Pattern, PatternRecognizer

        self.config = config
        self.checks: list[tuple[str, re.Pattern[str], list[Any], tuple[str, ...]]] = []
        self.placeholders: dict[str, str] = {}
        for entity in config.entities:
            presidio_entities, placeholder, prefilter = ENTITIES[entity]
            self.checks.append((entity, re.compile(prefilter), _recognizers(entity), presidio_entities))
            self.placeholders[entity] = placeholder
        for custom in config.custom_patterns:
            recognizer = PatternRecognizer(supported_entity=custom.name, patterns=[Pattern(custom.name, custom.regex, custom.score)])
            self.checks.append((custom.name, re.compile(custom.regex), [recognizer], (custom.name,)))
            self.placeholders[custom.name] = f"<{custom.name}>"
        self.builtin_count = len(config.entities)

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings at or above min_score (the higher score wins an overlap)."""
        # Every builtin entity needs an `@`, two digits in a row or a digit-dot-digit: one cheap search
        # rules out most texts before any entity's own prefilter runs.
        maybe_builtin = "@" in text or QUICK_DIGITS.search(text) is not None
        found = []
        for position, (entity, prefilter, recognizers, presidio_entities) in enumerate(self.checks):
            if (position < self.builtin_count and not maybe_builtin) or not prefilter.search(text):
                continue
            for recognizer in recognizers:
                for result in recognizer.analyze(text, list(presidio_entities), None) or []:
                    if result.score >= self.config.min_score:
                        found.append(Finding(entity, result.start, result.end, result.score))
        return _without_overlaps(found)

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """The text with every finding replaced by its placeholder, and counts by entity."""
        findings = self.find(text)
        counts = Counter(finding.entity for finding in findings)
        for finding in sorted(findings, key=lambda f: f.start, reverse=True):
            text = text[: finding.start] + self.placeholders[finding.entity] + text[finding.end :]
        return text, counts


def _without_overlaps(findings: list[Finding]) -> list[Finding]:
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start)):
        if all(finding.end <= other.start or finding.start >= other.end for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)
