"""Demo domain data: an "internal API docs assistant" built from a package's docstrings.

Sources are parsed with `ast`, never imported, so building the data runs no package code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import orjson

from adapterflow.core.errors import DataError

SKIPPED_PARTS = {"test", "tests", "idlelib", "turtledemo", "lib2to3", "ensurepip", "site-packages", "__pycache__",
                 "encodings", "pydoc_data", "__phello__"}
MIN_ANSWER_CHARS = 40
MAX_ANSWER_CHARS = 700


def package_root(package: str) -> Path:
    """The folder holding a package's source: the standard library for 'stdlib'."""
    if package == "stdlib":
        return Path(sysconfig.get_paths()["stdlib"])
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise DataError(f"package {package!r} is not installed", hint="install it or use package: stdlib")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin and spec.origin.endswith(".py"):
        return Path(spec.origin)
    raise DataError(f"package {package!r} has no Python sources to read docstrings from")


def first_paragraph(docstring: str) -> str:
    """The docstring's opening paragraph, as one line of text, cut at a sentence near the limit."""
    paragraph = inspect.cleandoc(docstring).split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    if len(text) > MAX_ANSWER_CHARS:
        cut = text[:MAX_ANSWER_CHARS]
        text = cut[: cut.rfind(". ") + 1] if ". " in cut else cut
    return text


def _is_public(relative: Path) -> bool:
    parts = relative.with_suffix("").parts
    private = any(part.startswith("_") and part != "__init__" for part in parts)
    return not private and not SKIPPED_PARTS & set(parts)


def _module_name(root: Path, path: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if package != "stdlib":
        parts.insert(0, package if root.name == package else root.name)
    return ".".join(part for part in parts if part)


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool = False) -> str:
    args = node.args
    if method and args.args and args.args[0].arg in {"self", "cls"}:
        args = ast.arguments(**{**{field: getattr(args, field) for field in args._fields}, "args": args.args[1:]})
        # defaults align with the last positional args, so dropping the first one keeps them right
    return f"({ast.unparse(args)})"


def docstring_pairs(path: Path, module: str) -> Iterator[tuple[str, str]]:
    """(question, answer) pairs for a module and its public functions, classes and methods."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    doc = ast.get_docstring(tree)
    if doc:
        yield f"What is the `{module}` module for?", first_paragraph(doc)
    for node in tree.body:
        if node.name.startswith("_") if hasattr(node, "name") else True:
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (doc := ast.get_docstring(node)):
            yield (f"What does `{module}.{node.name}` do?",
                   f"`{module}.{node.name}{_signature(node)}`: {first_paragraph(doc)}")
        elif isinstance(node, ast.ClassDef):
            if doc := ast.get_docstring(node):
                yield f"What is `{module}.{node.name}` for?", first_paragraph(doc)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                    if doc := ast.get_docstring(item):
                        yield (f"What does the `{item.name}` method of `{module}.{node.name}` do?",
                               f"`{node.name}.{item.name}{_signature(item, method=True)}`: {first_paragraph(doc)}")


def topic_pairs() -> Iterator[tuple[str, str]]:
    """Pairs from the language reference topics that `pydoc` ships (`help('with')`)."""
    from pydoc_data.topics import topics

    for name, text in sorted(topics.items()):
        paragraphs = [" ".join(part.split()) for part in text.split("\n\n") if part.strip()]
        body = " ".join(paragraphs[1:3]) if len(paragraphs) > 1 else (paragraphs[0] if paragraphs else "")
        if len(body) >= MIN_ANSWER_CHARS:
            yield f"Explain the Python language topic `{name}`.", body[:MAX_ANSWER_CHARS]


@functools.lru_cache(maxsize=4)
def documented_pairs(package: str, include_topics: bool) -> tuple[tuple[str, str], ...]:
    """Every (question, answer) pair of a package's documentation, first answer kept. Parsing the whole standard
    library takes seconds, so a process parses each package once, whatever sample sizes and seeds it draws."""
    root = package_root(package)
    files = [root] if root.is_file() else sorted(
        path for path in root.rglob("*.py") if _is_public(path.relative_to(root))
    )
    pairs: dict[str, str] = {}
    for path in files:
        for question, answer in docstring_pairs(path, _module_name(root if root.is_dir() else root.parent, path, package)):
            if len(answer) >= MIN_ANSWER_CHARS:
                pairs.setdefault(question, answer)
    if include_topics and package == "stdlib":
        for question, answer in topic_pairs():
            pairs.setdefault(question, answer)
    if not pairs:
        raise DataError(f"no documented public API found in {root}")
    return tuple(pairs.items())


def build_python_docs(package: str, max_examples: int, include_topics: bool, seed: int) -> list[dict[str, str]]:
    """A deterministic sample of alpaca rows from a package's documentation."""
    pairs = dict(documented_pairs(package, include_topics))

    def order(question: str) -> str:
        return hashlib.sha256(f"{seed}:{question}".encode()).hexdigest()

    chosen = sorted(pairs, key=order)[:max_examples]
    return [{"instruction": question, "input": "", "output": pairs[question]} for question in chosen]


# The kind of API object a question is about, from the question's wording (see docstring_pairs, topic_pairs).
QUESTION_KINDS = (("What is the `", "module for?", "module"), ("What does the `", "do?", "method"),
                  ("What does `", "do?", "function"), ("What is `", "for?", "class"),
                  ("Explain the Python language topic", "", "topic"))


def question_kind(question: str) -> str:
    return next(kind for start, end, kind in QUESTION_KINDS if question.startswith(start) and question.endswith(end))


def as_format(rows: list[dict[str, str]], fmt: str) -> list[dict[str, str]]:
    """The alpaca rows as another task's rows: the answers as raw text, or labelled by the kind of object."""
    if fmt == "text":
        return [{"text": row["output"]} for row in rows]
    if fmt == "classification":
        return [{"text": row["output"], "label": question_kind(row["instruction"])} for row in rows]
    return rows


def python_docs_version(package: str) -> str:
    """What the generated data depends on besides the options: the package's (or Python's) version."""
    if package == "stdlib":
        return sys.version
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def write_jsonl(rows: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as handle:
        for row in rows:
            handle.write(orjson.dumps(row) + b"\n")
    partial.replace(path)
