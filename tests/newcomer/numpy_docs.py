"""A newcomer's own domain data: chat Q/A pairs about numpy's API, taken from its docstrings (parsed, never
imported), with the defects real exports have: malformed lines, exact and near duplicates, a few emails and
phone numbers in prose.

Answers keep numpy's own examples (code, printed arrays, slices, decimals): the text a personal-data detector
must leave alone, at the lengths (100 to 3,000 characters) that a fixed max_length of 512 does not cover.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy
import orjson

MIN_ANSWER_CHARS = 100
MAX_ANSWER_CHARS = 3000
QUESTIONS = (
    "What does `{name}` do? Show an example.",
    "How do I use `{name}`?",
    "Explain `{name}` with an example.",
)
# Personal data as it turns up in exported support threads, one per affected row.
PLANTED = (
    "If this is still unclear, email the maintainer at dana.whitfield@labmail.org.",
    "Questions about our install go to it-helpdesk@kernforschung.de, please.",
    "Call me on +1 415 555 0123 if the example fails on your machine.",
    "My direct line is (212) 555-0187 if you want to go through it.",
    "Reach Priya on 020 7946 0958 for access to the cluster.",
    "Send the traceback to m.rossi@unimi.it and I will look at it.",
)


@dataclass(frozen=True)
class NewcomerFile:
    """The file written and what was injected into it."""

    path: Path
    rows: int  # lines in the file
    malformed: int
    exact_duplicates: int
    near_duplicates: int
    personal: int  # rows with an email or phone number


def documented_functions(root: Path) -> Iterator[tuple[str, str]]:
    """(dotted name, cleaned docstring) of public functions whose docstring has examples."""
    for path in sorted(root.rglob("*.py")):
        if "tests" in path.parts or path.name.startswith("test"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                doc = ast.get_docstring(node)
                if doc and "Examples" in doc:
                    yield f"numpy.{node.name}", inspect.cleandoc(doc)


def answer_from(name: str, doc: str) -> str:
    """The summary paragraph and the examples section, cut at a paragraph within MAX_ANSWER_CHARS."""
    summary = doc.split("\n\n", 1)[0]
    examples = doc.split("Examples\n--------", 1)[-1].strip()
    paragraphs = [f"`{name}`: {' '.join(summary.split())}", "For example:", *examples.split("\n\n")]
    answer = ""
    for paragraph in paragraphs:
        if len(answer) + len(paragraph) + 2 > MAX_ANSWER_CHARS:
            break
        answer = f"{answer}\n\n{paragraph}" if answer else paragraph
    return answer


def conversation(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def build_numpy_docs(path: Path, examples: int = 500, seed: int = 7) -> NewcomerFile:
    """Write a chat JSONL of about `examples` numpy Q/A pairs with defects injected (deterministic)."""
    root = Path(next(iter(numpy.__path__)))
    pairs: dict[str, str] = {}
    for name, doc in documented_functions(root):
        answer = answer_from(name, doc)
        if len(answer) >= MIN_ANSWER_CHARS:
            pairs.setdefault(name, answer)
    names = sorted(pairs, key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())[:examples]
    rng = random.Random(seed)
    rows = [conversation(QUESTIONS[rng.randrange(len(QUESTIONS))].format(name=name), pairs[name]) for name in names]
    for index, sentence in enumerate(PLANTED):
        row = rows[index * 7 + 3]["messages"][1]
        row["content"] = f"{row['content']}\n\n{sentence}"
    exact = [rows[index] for index in range(0, 60, 3)]
    near = []
    for row in rows[40:50]:
        question, answer = row["messages"][0]["content"], row["messages"][1]["content"]
        near.append(conversation(question.replace("`", "") + " Thanks!", answer))
    lines = [orjson.dumps(row).decode() for row in rows + exact + near]
    malformed = ['{"messages": [{"role": "user", "content": "How do I use numpy.pad?"}',  # cut off mid-export
                 ('{"messages": [{"role": "user", "content": "What does numpy.roll do?"}, '
                  '{"role": "assistant", "content": ""}]}'),
                 '{"messages": []}',
                 "<html><body>502 Bad Gateway</body></html>"]
    malformed = malformed[: max(2, examples // 125)]  # under 1% of the lines, as in a careful export
    for offset, line in enumerate(malformed):
        lines.insert(50 + 97 * offset, line)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return NewcomerFile(path=path, rows=len(lines), malformed=len(malformed), exact_duplicates=len(exact),
                        near_duplicates=len(near), personal=len(PLANTED))
