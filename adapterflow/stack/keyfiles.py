"""Secrets the stack generates on its first start and keeps in files only their owner can read."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """Write `text` readable by the owner only (mode 0600 from creation on, also when the file existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def load_or_generate(path: Path, generate: Callable[[], dict[str, str]]) -> dict[str, str]:
    """The JSON object in `path`; on the first call `generate()`'s, written there privately."""
    if path.exists():
        return json.loads(path.read_text())
    values = generate()
    write_private(path, json.dumps(values, indent=2))
    return values
