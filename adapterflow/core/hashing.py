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


# Our own top-level packages: their imports are followed when hashing the code behind a result.
OWN_PACKAGES = ("adapterflow", "tasks", "schemas", "flows")
# Libraries whose version can change what a stage computes from the same inputs and code.
RESULT_LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "bitsandbytes")


def module_sources(module: str, own: tuple[str, ...] = OWN_PACKAGES) -> list[Path]:
    """The source files of `module` and of every module of ours (under the `own` top-level packages) that it
    imports, at any depth, at the top or inside functions."""
    import ast
    import importlib.util

    found: dict[str, Path] = {}
    pending = [module]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # `from module import name`: a name, not a submodule
            continue
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        path = Path(spec.origin)
        found[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        if "." in name:
            pending.append(name.rpartition(".")[0])  # importing a module runs its packages' __init__ first
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                imported = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            pending += [item for item in imported if item.split(".")[0] in own]
    return sorted(set(found.values()))


def code_key(module: str, own: tuple[str, ...] = OWN_PACKAGES) -> str:
    """A key for the code that computes a stage's result: its modules' sources (with their paths, so a moved
    file counts) and the versions of the libraries that do the numerical work. It replaces hand-bumped
    version constants: any edit to that code, committed or not, or a library upgrade, misses the cache."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    project = Path(__file__).resolve().parents[2]  # the folder that holds adapterflow/, tasks/ and schemas/
    sources = [(str(path.relative_to(project)) if path.is_relative_to(project) else path.name, sha256_file(path))
               for path in module_sources(module, own)]
    return cache_key(sources, {name: installed(name) for name in RESULT_LIBRARIES})
