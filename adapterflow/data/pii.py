"""Personal data: presidio's recognizers (with their checksum validation) judged in context, plus custom patterns.

Each builtin type runs only on texts that a cheap regular expression flags for it (most texts have no digit
run, no `@`); its presidio recognizers are called directly, without presidio's AnalyzerEngine and its spaCy
NLP pipeline, so nothing is downloaded. Each candidate then gets a score and counts when the score reaches
the type's threshold (`min_score`, per type `min_scores`):

- its shape (`shape_score`): a validated email or IBAN 1.0; an IP address 0.6 (0 for an IPv6 address of
  fewer than three groups, such as the slice 1::2); a phone number written
  internationally (+44 ..., 0044 ...) 0.8, grouped the way its region writes it ((415) 555-2671,
  020 7946 0958) 0.6, else (a bare digit run, a local number) 0.4; a Luhn-valid card number grouped in
  fours 0.8, bare 0.4; a US SSN or UK NHS number 0.4, so national IDs always need context;
- plus presidio's context factor 0.35 when one of the type's context words (presidio's `recognizer.context`,
  compared by lemma) stands among the words before it (in a table: its column header), as presidio's
  LemmaContextAwareEnhancer does;
- zero for numbers that plainly are not personal data (adapterflow/data/pii_context.py): inside code,
  doctests, printed arrays, slices or tuples (blanked out before the numeric recognizers run); part of a
  longer number, date, time or identifier; or named by the word before it as an order, invoice, ticket,
  version, extension, amount...

Findings are counted by type; values are never kept.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from adapterflow.data.pii_context import TextLayout, has_context, ip_joined, joined_to_number, label_cue, words_before
from schemas.data import PiiConfig

CONTEXT_FACTOR = 0.35  # presidio's LemmaContextAwareEnhancer.context_similarity_factor


@dataclass(frozen=True)
class Kind:
    """One builtin type: its placeholder, the cheap prefilter, presidio's entity names and extra context words."""

    placeholder: str
    prefilter: str
    presidio: tuple[str, ...]
    numeric: bool  # judged by where it stands (code, longer numbers, labels); emails and IBANs are not
    extra_context: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    "email": Kind("<EMAIL>", r"@", ("EMAIL_ADDRESS",), False),
    "phone": Kind("<PHONE>", r"\d[\d\s().\-]{5,}\d", ("PHONE_NUMBER",), True,
                  ("tel", "fax", "reach", "dial", "ring", "contact", "sms", "whatsapp", "hotline", "landline")),
    "credit_card": Kind("<CREDIT_CARD>", r"\d(?:[ \-]?\d){11,18}", ("CREDIT_CARD",), True, ("debit",)),
    "iban": Kind("<IBAN>", r"[A-Za-z]{2}\d{2}[ ]?[A-Za-z0-9]{4}", ("IBAN_CODE",), False),
    "ip_address": Kind("<IP_ADDRESS>", r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9a-fA-F]{1,4}:[0-9a-fA-F]{0,4}:",
                       ("IP_ADDRESS",), True),
    "national_id": Kind("<NATIONAL_ID>", r"\d{3}[ \-.]?\d{2,3}[ \-.]?\d{4}", ("US_SSN", "UK_NHS"), True),
}
# 'number' names order, invoice and ticket numbers as often as phone numbers: it is no evidence of a phone.
NOT_CONTEXT = frozenset({"number"})
QUICK_DIGITS = re.compile(r"[0-9][0-9.]")  # plain character classes: 5x faster than an alternation here
CARD_GROUPS = re.compile(r"\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{4,5}")  # 4-4-4-4(+), Amex 4-6-5


@dataclass(frozen=True)
class Finding:
    entity: str
    start: int
    end: int
    score: float


def _recognizers(entity: str, config: PiiConfig) -> list[Any]:
    """presidio recognizers for one adapterflow entity (imported lazily: presidio imports spaCy, ~9 s)."""
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        IbanRecognizer,
        IpRecognizer,
        NhsRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    if entity == "email":
        return [OfflineEmailRecognizer()]
    return {
        "phone": lambda: [PhoneRecognizer(supported_regions=tuple(config.phone_regions), leniency=1)],
        "credit_card": lambda: [CreditCardRecognizer()],
        "iban": lambda: [IbanRecognizer()],
        "ip_address": lambda: [IpRecognizer()],
        "national_id": lambda: [UsSsnRecognizer(), NhsRecognizer()],
    }[entity]()


def OfflineEmailRecognizer() -> Any:
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


def phone_shape(raw: str, regions: tuple[str, ...]) -> float:
    """0.8 written internationally, 0.6 grouped as its region writes it (python-phonenumbers' EXACT_GROUPING), else 0.4."""
    import phonenumbers

    if raw.startswith(("+", "00")):
        return 0.8
    if raw.isdigit():
        return 0.4  # one block of digits: an order or account number as often as a phone number
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(raw, region, leniency=phonenumbers.Leniency.EXACT_GROUPING):
            if match.start == 0 and match.end == len(raw):
                return 0.6
    return 0.4


def shape_score(entity: str, raw: str, presidio_score: float, regions: tuple[str, ...]) -> float:
    """How much the matched value's own shape says it is personal data of this type (see the module docstring)."""
    if entity == "phone":
        return phone_shape(raw, regions)
    if entity == "credit_card":
        return 0.8 if CARD_GROUPS.fullmatch(raw) else 0.4
    if entity == "national_id":
        return 0.4 if presidio_score >= 0.5 else 0.0  # presidio's very weak SSN patterns (0.05) never count
    if entity == "ip_address" and ":" in raw and "." not in raw:
        groups = [group for group in raw.split("/")[0].split("%")[0].split(":") if group]
        return presidio_score if len(groups) >= 3 else 0.0  # 1::2 and a::b are slices and scopes, not hosts
    return presidio_score


class PiiScanner:
    """Finds, counts and redacts personal data in texts according to the config."""

    def __init__(self, config: PiiConfig) -> None:
        from presidio_analyzer import Pattern, PatternRecognizer

        self.config = config
        self.regions = tuple(config.phone_regions)
        self.checks: list[tuple[str, re.Pattern[str], list[Any], list[str]]] = []
        self.placeholders: dict[str, str] = {}
        self.context: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {}
        for entity in config.entities:
            kind = KINDS[entity]
            recognizers = _recognizers(entity, config)
            self.checks.append((entity, re.compile(kind.prefilter), recognizers, list(kind.presidio)))
            self.placeholders[entity] = kind.placeholder
            words = {w.strip().lower() for r in recognizers for w in r.context or []} | set(kind.extra_context)
            words -= NOT_CONTEXT
            self.context[entity] = (frozenset(w for w in words if " " not in w), tuple(w for w in words if " " in w))
        for custom in config.custom_patterns:
            recognizer = PatternRecognizer(supported_entity=custom.name, patterns=[Pattern(custom.name, custom.regex, custom.score)])
            self.checks.append((custom.name, re.compile(custom.regex), [recognizer], [custom.name]))
            self.placeholders[custom.name] = f"<{custom.name}>"
        self.builtin_count = len(config.entities)

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings at or above their type's threshold (the longer, then higher-scored, wins)."""
        # Every builtin entity needs an `@`, two digits in a row or a digit-dot-digit: one cheap search
        # rules out most texts before any entity's own prefilter runs.
        maybe_builtin = "@" in text or QUICK_DIGITS.search(text) is not None
        found = []
        layout: TextLayout | None = None
        masked = text  # numeric types look at the text with its code blanked out (offsets unchanged)
        for position, (entity, prefilter, recognizers, presidio_entities) in enumerate(self.checks):
            builtin = position < self.builtin_count
            if (builtin and not maybe_builtin) or not prefilter.search(text):
                continue
            numeric = builtin and KINDS[entity].numeric
            if numeric and layout is None:
                layout = TextLayout.of(text)
                masked = layout.without_code(text)
            for recognizer in recognizers:
                for result in recognizer.analyze(masked if numeric else text, presidio_entities, None) or []:
                    if not builtin:
                        if result.score >= self.config.min_score:
                            found.append(Finding(entity, result.start, result.end, result.score))
                        continue
                    start = result.start + _unbalanced_paren(text, result.start, result.end)
                    score = self.score(entity, text, start, result.end, result.score, layout)
                    if score >= self.config.min_scores.get(entity, self.config.min_score):
                        found.append(Finding(entity, start, result.end, score))
        return _without_overlaps(found)

    def score(self, entity: str, text: str, start: int, end: int, presidio_score: float, layout: TextLayout | None) -> float:
        """The candidate's score: zero where it plainly is not personal data, else its shape plus the context factor."""
        tokens = None
        if KINDS[entity].numeric:
            joined = ip_joined(text, start, end) if entity == "ip_address" else joined_to_number(text, start, end)
            tokens = words_before(text, start, layout, self.config.context_words)
            if joined or label_cue(tokens):
                return 0.0
        score = shape_score(entity, text[start:end], presidio_score, self.regions)
        if score <= 0 or score >= self.config.min_scores.get(entity, self.config.min_score):
            return score
        if tokens is None:
            tokens = words_before(text, start, layout, self.config.context_words)
        if has_context(tokens, *self.context[entity]):
            score = min(1.0, score + CONTEXT_FACTOR)
        return score

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """The text with every finding replaced by its placeholder, and counts by entity."""
        findings = self.find(text)
        counts = Counter(finding.entity for finding in findings)
        for finding in sorted(findings, key=lambda f: f.start, reverse=True):
            text = text[: finding.start] + self.placeholders[finding.entity] + text[finding.end :]
        return text, counts


def _unbalanced_paren(text: str, start: int, end: int) -> int:
    """1 when the match opens with a '(' it does not close (phonenumbers keeps it in "Jane (+44 20 7946 0958)")."""
    return int(text[start] == "(" and ")" not in text[start:end])


def _without_overlaps(findings: list[Finding]) -> list[Finding]:
    """The longest findings first (a whole +1 415 555 0123 beats a national ID inside it), then the best scored."""
    kept: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (-(f.end - f.start), -f.score, f.start)):
        if all(finding.end <= other.start or finding.start >= other.end for other in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)
