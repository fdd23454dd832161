"""The three domains of the defaults benchmark (benchmarks/domains.py) as alpaca rows, built offline and
deterministically from installed packages' sources, parsed with `ast` (no package code runs):

- stdlib-docs: the demo's data, exactly as configs/smollm2_lora_cpu.yaml's python_docs source builds it;
- long-technical: whole docstrings (numpydoc sections included) of a scientific package's public functions and
  classes, cut near 1,500 characters at a line or sentence end;
- short-factual: one-line answers about another package: a callable's signature, the module defining a name.
"""

from __future__ import annotations

import ast
import re
import hashlib
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

from adapterflow.data.python_docs import SKIPPED_PARTS, build_python_docs, package_root

LONG_PACKAGES, SHORT_PACKAGE = ("sklearn", "scipy"), "pandas"
LONG_MAX_CHARS, LONG_MIN_CHARS = 1500, 400
SHORT_MAX_CHARS = 80  # a signature longer than this is no short answer
DEMO_ROWS, LONG_ROWS, SHORT_ROWS = 1200, 800, 1200


def hash_order(seed: int, key: str) -> str:
    """The sort key of a deterministic sample that doesn't depend on file order (as build_python_docs draws)."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def sample(pairs: dict[str, str], rows: int, seed: int = 0) -> list[dict[str, str]]:
    chosen = sorted(pairs, key=lambda question: hash_order(seed, question))[:rows]
    return [{"instruction": question, "input": "", "output": pairs[question]} for question in chosen]


def public_sources(package: str) -> Iterator[tuple[Path, str]]:
    """(file, public module path) of a package's sources: private files (`_ridge.py`) count as their package,
    where libraries like sklearn define what they export; private folders, tests and vendored code don't count."""
    root = package_root(package)
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        folders, name = parts[:-1], parts[-1]
        if any(part.startswith("_") for part in folders) or SKIPPED_PARTS & set(parts) or "externals" in parts \
                or name.startswith(("test_", "conftest")):
            continue
        public = [package, *folders] + ([] if name.startswith("_") else [name])
        yield path, ".".join(public)


def parsed(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return None


def public_definitions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            yield node


def whole_docstring(docstring: str, limit: int = LONG_MAX_CHARS) -> str:
    """A docstring with its lines dedented, runs of spaces after a line's indentation and repeated blank lines
    squeezed, cut within `limit` at the last line end (or else sentence end) past half of it."""
    lines = [re.sub(r"(?<=\S)\s{2,}", " ", line.rstrip()) for line in inspect.cleandoc(docstring).splitlines()]
    text = "\n".join(line for index, line in enumerate(lines) if line or (index and lines[index - 1]))
    if len(text) <= limit:
        return text.strip()
    cut = text[:limit]
    end = max(cut.rfind("\n"), cut.rfind(". ") + 1)
    return (cut[:end] if end > limit // 2 else cut).strip()


def long_technical_pairs(packages: tuple[str, ...] = LONG_PACKAGES) -> dict[str, str]:
    """'Document `pkg.mod.Name`' -> its whole docstring, for public functions and classes with long docstrings."""
    pairs: dict[str, str] = {}
    for path, module in (found for package in packages for found in public_sources(package)):
        if (tree := parsed(path)) is None:
            continue
        for node in public_definitions(tree):
            doc = ast.get_docstring(node)
            if doc and len(answer := whole_docstring(doc)) >= LONG_MIN_CHARS:
                what = "its parameters and attributes" if isinstance(node, ast.ClassDef) else \
                    "its parameters and what it returns"
                pairs.setdefault(f"Document `{module}.{node.name}`: {what}.", answer)
    return pairs


def signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    return f"{node.name}({ast.unparse(node.args)})"


def short_factual_pairs(package: str = SHORT_PACKAGE) -> dict[str, str]:
    """'What is the signature of `pkg.X.y`?' -> '`y(self, a, b=1)`' (one line at most) and 'Which module defines
    `Z`?' -> '`pkg.mod`' (the first module in path order, for names that only one module defines)."""
    pairs: dict[str, str] = {}
    defined_in: dict[str, set[str]] = {}
    for path, module in public_sources(package):
        if (tree := parsed(path)) is None:
            continue
        for node in public_definitions(tree):
            defined_in.setdefault(node.name, set()).add(module)
            if isinstance(node, ast.ClassDef):
                callables = [(f"{module}.{node.name}", item) for item in node.body
                             if isinstance(item, ast.FunctionDef) and not item.name.startswith("_")]
            else:
                callables = [(module, node)]
            for owner, function in callables:
                if len(answer := f"`{signature(function)}`") <= SHORT_MAX_CHARS:
                    pairs.setdefault(f"What is the signature of `{owner}.{function.name}`?", answer)
    for name, modules in sorted(defined_in.items()):
        if len(modules) == 1:
            pairs.setdefault(f"Which module defines `{name}`?", f"`{next(iter(modules))}`")
    return pairs


def stdlib_docs_rows(rows: int = DEMO_ROWS) -> list[dict[str, str]]:
    """The demo's rows: configs/smollm2_lora_cpu.yaml's source (stdlib, topics included, seed 0)."""
    return build_python_docs("stdlib", rows, include_topics=True, seed=0)


def long_technical_rows(rows: int = LONG_ROWS) -> list[dict[str, str]]:
    return sample(long_technical_pairs(), rows)


def short_factual_rows(rows: int = SHORT_ROWS) -> list[dict[str, str]]:
    return sample(short_factual_pairs(), rows)


DOMAINS: dict[str, tuple[Callable[[int], list[dict[str, str]]], int]] = {
    "stdlib-docs": (stdlib_docs_rows, DEMO_ROWS),
    "long-technical": (long_technical_rows, LONG_ROWS),
    "short-factual": (short_factual_rows, SHORT_ROWS),
}


def domain_rows(domain: str, max_rows: int | None = None) -> list[dict[str, str]]:
    """A domain's rows, at most `max_rows` of its usual count (a smoke run's cap)."""
    build, rows = DOMAINS[domain]
    return build(min(rows, max_rows) if max_rows else rows)


def words_percentile(rows: list[dict[str, str]], share: float) -> int:
    """The answer length in words below which `share` of the rows fall (nearest rank)."""
    lengths = sorted(len(row["output"].split()) for row in rows)
    return lengths[min(len(lengths) - 1, max(0, round(share * len(lengths)) - 1))] if lengths else 0
