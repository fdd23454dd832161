"""The demo data source: docstrings become Q/A pairs without importing the package."""

from __future__ import annotations

from pathlib import Path

from adapterflow.data.python_docs import build_python_docs, docstring_pairs, first_paragraph


def test_pairs_from_a_module_without_importing_it(tmp_path: Path) -> None:
    module = tmp_path / "calc.py"
    module.write_text(
        '"""Arithmetic helpers for the accounting team."""\n'
        "raise SystemExit('importing this module would exit')\n"
        "def add(a, b=1):\n    '''Return the sum of a and b, rounded to cents.'''\n"
        "def _private():\n    '''Hidden.'''\n"
        "class Ledger:\n    '''A ledger of postings.'''\n"
        "    def post(self, amount):\n        '''Record a posting of the given amount in the ledger.'''\n"
    )
    pairs = dict(docstring_pairs(module, "calc"))
    assert pairs["What is the `calc` module for?"] == "Arithmetic helpers for the accounting team."
    assert pairs["What does `calc.add` do?"] == "`calc.add(a, b=1)`: Return the sum of a and b, rounded to cents."
    assert pairs["What does the `post` method of `calc.Ledger` do?"].startswith("`Ledger.post(amount)`")
    assert not any("_private" in question for question in pairs)


def test_first_paragraph_is_one_line() -> None:
    assert first_paragraph("Do a thing.\n    Across lines.\n\n    Details.") == "Do a thing. Across lines."


def test_stdlib_sample_is_deterministic_and_alpaca_shaped() -> None:
    first = build_python_docs("stdlib", 50, include_topics=True, seed=3)
    assert first == build_python_docs("stdlib", 50, include_topics=True, seed=3)
    assert len(first) == 50 and set(first[0]) == {"instruction", "input", "output"}
    assert first != build_python_docs("stdlib", 50, include_topics=True, seed=4)
