"""Where a personal-data candidate stands: in code or printed numbers, joined to a longer number, and which
words come before it. Pure functions of the text; adapterflow/data/pii.py turns them into scores.

Numbers in code, printed arrays, slices, dates and identifiers look like phone, card or ID numbers to a
pattern recognizer; what tells them apart is where they stand, which is what this module reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Spans whose numbers are code or program output, never personal data.
CODE_SPANS = (
    re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1|\Z)", re.MULTILINE | re.DOTALL),  # fenced block (to the end if unclosed)
    re.compile(r"`[^`\n]+`"),  # inline code
    re.compile(r"^[ \t]*>>> .*(?:\n[ \t]*\S.*)*", re.MULTILINE),  # a doctest prompt and the output lines under it
    re.compile(r"\[[\s\d.,:;eE+\-\[\]()]*\]"),  # numeric lists, printed arrays, slices: [0:2], [1::2], [ 0. , -0.78]
    re.compile(r"\((?:\s*[-+]?\d[\d.eE+\-]*\s*,)+\s*[-+]?\d[\d.eE+\-]*\s*,?\s*\)"),  # tuples of numbers: (0.5, 1.25)
)
INDENTED_LINE = re.compile(r"(?: {4}|\t)(?![ \t]*(?:[-*+]|\d+[.)])\s)\S")  # indented, and not a list item
TABLE_ROW = re.compile(r"^[ \t]*\|?[^|\n]*\|[^|\n]*\|.*$", re.MULTILINE)  # a line with two or more '|'
TOKENS = re.compile(r"[A-Za-z]+|\d[\d\-./:,]*|#")

# A number directly after one of these words names a thing (an order, a version of something, an amount), not a
# person: the nearest cue wins, see `label_cue`.
NOT_PERSONAL_LABELS = frozenset([
    "order", "orders", "invoice", "invoices", "inv", "ticket", "tickets", "ref", "reference", "case", "po", "sku",
    "item", "part", "serial", "sn", "id", "ids", "identifier", "batch", "lot", "tracking", "shipment", "parcel",
    "transaction", "txn", "confirmation", "booking", "reservation",
    "build", "version", "versions", "ver", "v", "release", "tag", "firmware", "driver", "kernel", "patch", "bios",
    "ext", "extension", "extensions", "range", "ranges", "port", "pid", "page", "row", "issue", "pr", "commit", "job",
    "run", "step", "epoch", "seed", "section", "chapter", "figure", "fig", "table", "eq", "equation",
    "amount", "total", "balance", "price", "sum", "eur", "usd", "gbp", "chf", "jpy", "inr", "cad", "aud",
])
# Words that may stand between a label and its number ("order number 12", "ticket no. 7", "extension range 2863-3442").
FILLERS = frozenset([
    "no", "nr", "num", "number", "numbers", "is", "was", "are", "the", "a", "an", "of", "our", "my", "your",
    "his", "her", "their", "its", "#"
])


@dataclass(frozen=True)
class TextLayout:
    """Code spans and table blocks of one text, computed once per text that has a numeric candidate."""

    code: list[tuple[int, int]]  # sorted, non-overlapping
    tables: list[tuple[int, int, list[str]]]  # (start, end, header cells)

    @classmethod
    def of(cls, text: str) -> TextLayout:
        spans = sorted([(m.start(), m.end()) for pattern in CODE_SPANS for m in pattern.finditer(text)] + _indented_code(text))
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return cls(merged, _tables(text))

    def without_code(self, text: str) -> str:
        """The text with every code span blanked out to spaces (line breaks kept), so offsets stay the same."""
        if not self.code:
            return text
        pieces, position = [], 0
        for start, end in self.code:
            pieces.append(text[position:start])
            pieces.append(re.sub(r"[^\n]", " ", text[start:end]))
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def table_header(self, text: str, start: int) -> str | None:
        """The header cell above position `start` when it lies in a table body row, else None."""
        for table_start, table_end, cells in self.tables:
            if table_start <= start < table_end:
                line_start = text.rfind("\n", 0, start) + 1
                if line_start == table_start:
                    return None
                column = text.count("|", line_start, start) - text[line_start:start].lstrip().startswith("|")
                return cells[column] if 0 <= column < len(cells) else None
        return None


def _indented_code(text: str) -> list[tuple[int, int]]:
    """Markdown's indented code: lines indented by 4+ spaces or a tab that follow a blank line (or open the text)."""
    if "    " not in text and "\t" not in text:
        return []
    spans: list[tuple[int, int]] = []
    position, previous_blank, in_block = 0, True, False
    for line in text.split("\n"):
        indented = INDENTED_LINE.match(line) is not None
        if indented and (previous_blank or in_block):
            if in_block:
                spans[-1] = (spans[-1][0], position + len(line))
            else:
                spans.append((position, position + len(line)))
            in_block = True
        else:
            in_block = False
        previous_blank = not line.strip()
        position += len(line) + 1
    return spans


def _tables(text: str) -> list[tuple[int, int, list[str]]]:
    """Blocks of two or more consecutive table rows, each with its header row's cells."""
    if text.count("|") < 4:
        return []
    tables: list[tuple[int, int, list[str]]] = []
    rows = list(TABLE_ROW.finditer(text))
    index = 0
    while index < len(rows):
        first = last = rows[index]
        while index + 1 < len(rows) and rows[index + 1].start() == last.end() + 1:
            index += 1
            last = rows[index]
        if last is not first:
            header = first.group().strip().strip("|")
            tables.append((first.start(), last.end(), [cell.strip() for cell in header.split("|")]))
        index += 1
    return tables


DECIMAL_OR_DATE = re.compile(r"[-+]?\d*\.\d+|\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


def joined_to_number(text: str, start: int, end: int) -> bool:
    """Whether the match is part of a longer number, identifier, date, time, amount or assignment.

    `-0.78539816`, `3.14159265358979`, `a456-426614174000`, `12:30`, `$1,234`, `x=4155550123`: the digits
    continue a token that is not personal data, so the match is only a piece of it.
    """
    before = text[start - 1] if start else " "
    before2 = text[start - 2] if start > 1 else " "
    after = text[end] if end < len(text) else " "
    after2 = text[end + 1] if end + 1 < len(text) else " "
    if before.isalnum() or before in "_.-$€£¥#/\\@=<>^":
        return True  # a456-4266, -0.78539816, $4155550123, x=4155550123, 10^9
    if before in ":," and before2.isdigit():
        return True  # 12:30, 1,234
    if after.isalnum() or after in "_%$€£@":
        return True
    if after in ".,:/-" and after2.isdigit():
        return True  # continues: 4155550123.5, 12:30, 2024/05
    return bool(DECIMAL_OR_DATE.fullmatch(text[start:end]))


def ip_joined(text: str, start: int, end: int) -> bool:
    """Whether an IP-like match continues a dotted version or identifier (1.2.3.4.5, build-10.0.0.1); ports may follow."""
    before = text[start - 1] if start else " "
    after, after2 = text[end : end + 1], text[end + 1 : end + 2]
    return before.isalnum() or before in "._-" or (after == "." and after2.isdigit())


def words_before(text: str, start: int, layout: TextLayout | None, count: int) -> list[str]:
    """Up to `count` tokens before `start`, nearest last: the column header within a table, else the text."""
    header = layout.table_header(text, start) if layout is not None else None
    cell_start = text.rfind("|", 0, start) + 1 if header is not None else max(0, start - 200)
    tokens = TOKENS.findall(text[cell_start:start])
    if header is not None:
        tokens = TOKENS.findall(header) + tokens
    return [token.lower() for token in tokens[-count:]] if count else []


def label_cue(tokens: list[str]) -> bool:
    """Whether the nearest word before the number (skipping fillers like 'number', 'no') labels a non-personal thing."""
    for token in reversed(tokens):
        if token in FILLERS:
            continue
        return token in NOT_PERSONAL_LABELS
    return False


def lemmas(token: str) -> tuple[str, ...]:
    """The token and its forms without a plural or verb ending: 'calls' -> 'call', 'phoned' -> 'phon', 'phone'."""
    forms = [token]
    for suffix in ("s", "es", "ed", "d", "ing"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 2:
            forms.append(token[: -len(suffix)])
    return tuple(forms)


def has_context(tokens: list[str], words: frozenset[str], phrases: tuple[str, ...]) -> bool:
    """Whether a context word (or phrase) of the type stands among the tokens, compared by lemma as presidio does."""
    if any(form in words for token in tokens for form in lemmas(token)):
        return True
    joined = f" {' '.join(tokens)} "
    return any(f" {phrase} " in joined for phrase in phrases)
