"""Content hashes: one place for how data, files and configs are fingerprinted."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

KEY_LENGTH = 24  # hex chars of a cache key: 96 bits, ample for content addressing


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes: sorted keys, no whitespace, so equal values hash equally."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def sha256_json(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(paths: Iterable[Path]) -> str:
    """One hash over several files, by their names and contents."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def cache_key(*parts: Any) -> str:
    """A short content key from any JSON-serialisable parts."""
    return sha256_json(list(parts))[:KEY_LENGTH]


class RowHasher:
    """Incremental fingerprint of a sequence of rows, in order."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.rows = 0

    def update(self, row: Any) -> None:
        self._digest.update(canonical_json(row))
        self._digest.update(b"\n")
        self.rows += 1

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
