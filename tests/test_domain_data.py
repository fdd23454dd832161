"""The defaults benchmark's domains (benchmarks/domain_data.py): alpaca rows of the promised shape, the same
rows on every build, long answers in one domain and one-line answers in the other."""

from __future__ import annotations

from benchmarks.domain_data import domain_rows, whole_docstring, words_percentile


def test_domains_are_deterministic_alpaca_rows_of_their_shape() -> None:
    for domain in ("stdlib-docs", "long-technical", "short-factual"):
        rows = domain_rows(domain, max_rows=40)
        assert len(rows) == 40 and rows == domain_rows(domain, max_rows=40)
        assert all(set(row) == {"instruction", "input", "output"} and row["output"] for row in rows)
    long_rows, short_rows = domain_rows("long-technical", 40), domain_rows("short-factual", 40)
    assert words_percentile(long_rows, 0.5) >= 100 and all(len(row["output"]) <= 1500 for row in long_rows)
    assert all(row["instruction"].startswith("Document `") for row in long_rows)
    assert words_percentile(short_rows, 0.95) <= 15 and all("\n" not in row["output"] for row in short_rows)


def test_whole_docstring_keeps_sections_and_cuts_at_a_line_end() -> None:
    doc = "Fit it.\n\n    Parameters\n    ----------\n    x : int\n        The   value.\n\n\n    Returns\n    -------\n    y"
    assert whole_docstring(doc) == "Fit it.\n\nParameters\n----------\nx : int\n    The value.\n\nReturns\n-------\ny"
    text = "word " * 30 + "\n" + "word " * 30
    assert whole_docstring(text, limit=200) == ("word " * 30).strip()
