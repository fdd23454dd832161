"""Fuzzed JSONL data lines (alpaca format) for the reliability benchmark, seeded, each with the outcome ingest
must give it: kept, or quarantined under one reason."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import orjson

KEPT = "kept"
# odd but valid text: right-to-left and zero-width marks, combining accents, emoji with joiners, CJK, a NUL
# character (escaped in JSON), Unicode line and paragraph separators (not line breaks for a JSONL reader)
ODD_UNICODE = ["\u202eevil\u202c", "a\u200bb\u200d", "e\u0301\u0301", "\U0001f469\u200d\U0001f4bb", "\u4e2d\u6587",
               "\x00", "\u2028", "\u2029", "\ufeff", "\U0010fffd"]
WORDS = ["reset", "password", "invoice", "billing", "export", "python", "list", "sort", "the", "a", "how", "do", "I"]
# kind -> the outcome ingest must give it, and its weight in the mix (huge lines of 1-3 MB: about 1 in 1,000 each)
KINDS: dict[str, tuple[str, float]] = {
    "valid": (KEPT, 40),
    "valid_with_email": (KEPT, 5),
    "odd_unicode": (KEPT, 8),
    "extra_fields": (KEPT, 4),
    "huge_valid": (KEPT, 0.1),
    "truncated": ("invalid_json", 8),
    "truncated_with_email": ("invalid_json", 4),
    "huge_truncated": ("invalid_json", 0.1),
    "lone_surrogate": ("invalid_json", 2),
    "bad_utf8": ("invalid_utf8", 4),
    "wrong_type": ("wrong_type", 8),
    "missing_field": ("missing_field", 8),
    "not_object": ("not_an_object", 4),
    "empty": ("empty_line", 3),
}


@dataclass(frozen=True)
class FuzzLine:
    """One line of the fuzzed file (without its newline), what was done to it and what ingest must do with it."""

    raw: bytes
    kind: str
    expected: str
    email: bool


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _row(rng: random.Random) -> dict[str, str]:
    return {"instruction": _text(rng, rng.randint(1, 12)), "output": _text(rng, rng.randint(1, 30))}


def _email(rng: random.Random) -> str:
    return f"user{rng.randint(0, 10**6)}@example.org"


def fuzz_line(rng: random.Random, kind: str) -> FuzzLine:
    """One line of the given kind, drawn from `rng`."""
    row, email = _row(rng), False
    if kind in ("valid_with_email", "truncated_with_email"):
        row["instruction"] += f", reach me at {_email(rng)}"
        email = True
    if kind == "odd_unicode":
        row["output"] = "".join(rng.choice(ODD_UNICODE) + _text(rng, 2) for _ in range(rng.randint(1, 6)))
    elif kind == "extra_fields":
        row["meta"] = {"id": rng.randint(-(2**63), 2**63 - 1), "tags": [None, 1.5, "x"]}
    elif kind in ("huge_valid", "huge_truncated"):
        row["output"] = "x" * rng.randint(1_000_000, 3_000_000)
    raw = orjson.dumps(row)
    if kind in ("truncated", "truncated_with_email", "huge_truncated"):
        raw = raw[: rng.randint(1, len(raw) - 2)]  # at least the closing quote and brace are gone
    elif kind == "lone_surrogate":
        raw = raw[:-2] + b'\\ud800"}'
    elif kind == "bad_utf8":
        position = rng.randint(0, len(raw))
        raw = raw[:position] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"]) + raw[position:]
    elif kind == "wrong_type":
        field = rng.choice(["instruction", "output"])
        raw = orjson.dumps({**row, field: rng.choice([7, 2**40, 1.5, [1, 2], True, {"text": "x"}])})
    elif kind == "missing_field":
        raw = orjson.dumps({rng.choice(["instruction", "output"]): "only one"})
    elif kind == "not_object":
        raw = orjson.dumps(rng.choice([1, "text", [row], None, 3.5, True]))
    elif kind == "empty":
        raw = rng.choice([b"", b"   ", b"\t", b"\r"])
    return FuzzLine(raw, kind, KINDS[kind][0], email)


def fuzz_lines(count: int, seed: int) -> list[FuzzLine]:
    """`count` lines in a seeded mix of KINDS."""
    rng = random.Random(seed)
    kinds = rng.choices(list(KINDS), weights=[weight for _, weight in KINDS.values()], k=count)
    return [fuzz_line(rng, kind) for kind in kinds]


def expected_outcomes(lines: list[FuzzLine]) -> Counter[str]:
    """How many lines ingest must keep, and quarantine under each reason."""
    return Counter(line.expected for line in lines)
