"""Redaction: the one pass that text, records, tables and files take before they reach MLflow.

Secrets (adapterflow/core/secrets.py) are replaced first, then personal data the way the run's `data.pii` settings
find it in training rows (PiiScanner, typed placeholders such as `<EMAIL>`), unless `data.pii.action` is off.
With `report` the training rows keep their personal data, what is logged does not.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from adapterflow.core.secrets import scrub_secrets, secret_values
from adapterflow.data.pii import KINDS, PiiScanner
from schemas.data import PiiConfig

TEXT_SUFFIXES = frozenset({".txt", ".md", ".log", ".yaml", ".yml", ".csv", ".tsv"})
# Markup gets its secrets scrubbed only: the scanner reads links such as bootstrap-table@1.19.1 as emails,
# and replacing them would break the page (great-expectations' Data Docs).
MARKUP_SUFFIXES = frozenset({".html", ".htm"})
# other files (images, fonts, style sheets, weights) hold no rows and are logged as they are


@lru_cache(maxsize=4)
def _scanner(config_json: str) -> PiiScanner:
    # built once per settings: constructing presidio's recognizers imports spaCy (seconds)
    return PiiScanner(PiiConfig.model_validate_json(config_json))


class Redactor:
    """Replaces secrets, and personal data when `pii` is given and not off, in whatever is about to be logged."""

    def __init__(self, pii: PiiConfig | None = None) -> None:
        self.pii = pii if pii is not None and pii.action != "off" else None
        self.secrets = secret_values()
        # the scanner's own prefilters: a text none of them flags holds nothing it could find, so most
        # logged values (numbers, names, hashes) never pay for building it
        self.prefilters = [] if self.pii is None else (
            [re.compile(KINDS[entity].prefilter) for entity in self.pii.entities]
            + [re.compile(pattern.regex) for pattern in self.pii.custom_patterns]
        )

    def text(self, text: str) -> str:
        text = scrub_secrets(text, self.secrets)  # first: a secret that holds an email is replaced whole
        if self.pii is not None and any(prefilter.search(text) for prefilter in self.prefilters):
            text = _scanner(self.pii.model_dump_json()).redact(text)[0]
        return text

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys too) redacted; numbers and flags unchanged."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(key) if isinstance(key, str) else key: self.value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        return value

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.map(lambda cell: self.text(cell) if isinstance(cell, str) else cell)

    def file(self, source: Path, target: Path) -> None:
        """Write a redacted copy of `source` to `target`: JSON and JSONL by value, Parquet by string column,
        other text files whole, HTML for secrets only."""
        suffix = source.suffix.lower()
        if suffix == ".jsonl":
            with open(source, "rb") as lines, open(target, "wb") as out:
                out.writelines(self._json_or_text(line.rstrip(b"\r\n"), option=0) + b"\n" for line in lines)
        elif suffix == ".json":
            target.write_bytes(self._json_or_text(source.read_bytes(), option=orjson.OPT_INDENT_2))
        elif suffix == ".parquet":
            self._parquet(source, target)
        elif suffix in TEXT_SUFFIXES:
            target.write_text(self.text(source.read_text(encoding="utf-8", errors="backslashreplace")))
        elif suffix in MARKUP_SUFFIXES:
            target.write_text(scrub_secrets(source.read_text(encoding="utf-8", errors="backslashreplace"), self.secrets))
        else:
            shutil.copyfile(source, target)

    def tree(self, source: Path, target: Path) -> None:
        """A redacted copy of a folder, file by file."""
        for path in sorted(source.rglob("*")):
            if path.is_file():
                out = target / path.relative_to(source)
                out.parent.mkdir(parents=True, exist_ok=True)
                self.file(path, out)

    def _json_or_text(self, raw: bytes, option: int) -> bytes:
        try:
            parsed = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            return self.text(raw.decode("utf-8", errors="backslashreplace")).encode()
        return raw if parsed is None else orjson.dumps(self.value(parsed), option=option)

    def _parquet(self, source: Path, target: Path) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(source)
        for index, field in enumerate(table.schema):
            column = table.column(index)
            if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
                unique = pc.unique(column)  # paths and reasons repeat: each distinct value is redacted once
                redacted = pa.array([None if v is None else self.text(v) for v in unique.to_pylist()], field.type)
                column = redacted.take(pc.index_in(column, value_set=unique))
            elif pa.types.is_nested(field.type):
                column = pa.array([self.value(v) for v in column.to_pylist()], field.type)
            else:
                continue
            table = table.set_column(index, field, column)
        pq.write_table(table, target)
