"""The reliability benchmark's pure helpers on tiny inputs: the counts it prints are only as good as these."""

from __future__ import annotations

from benchmarks.reliability import line_outcomes, quarantine_changed, step_gaps, step_gaps_s, validate_verdict
from benchmarks.reliability_leaks import occurrences
from benchmarks.reliability_lines import KEPT, FuzzLine, expected_outcomes, fuzz_lines


def test_step_gaps_finds_missing_and_repeated_steps() -> None:
    assert step_gaps([1, 2, 3], range(1, 4)) == ([], [])
    assert step_gaps([1, 3, 3, 5, 5, 5], range(1, 6)) == ([2, 4], [3, 5])
    assert step_gaps([], range(1, 3)) == ([1, 2], [])


def test_step_gaps_s_gives_the_longest_and_the_median_gap_between_logged_steps() -> None:
    assert step_gaps_s([0, 1000, 2500, 3500, 34000]) == (30.5, 1.25)
    assert step_gaps_s([5000]) == (0.0, 0.0)


def test_validate_verdicts() -> None:
    listed = "config error c.yaml: 2 problem(s)\n  - training.max_steps: must be >= 1\n  - x: unknown key\n"
    assert validate_verdict(2, listed) == "refused"
    assert validate_verdict(2, "config error c.yaml\n") == "unreadable"
    assert validate_verdict(0, "ok c.yaml") == "accepted"
    assert validate_verdict(1, "boom") == "crash"
    assert validate_verdict(2, listed + "Traceback (most recent call last):\n") == "traceback"


def test_line_outcomes_and_changed_quarantine_copies() -> None:
    assert line_outcomes(5, [1, 4, 4], {2: "invalid_json", 1: "empty_line"}) == [
        "twice", "invalid_json", "lost", "twice", "lost"]
    lines = [FuzzLine(b'{"a": 1', "truncated", "invalid_json", False), FuzzLine(b"\xff{}\r", "bad_utf8", "invalid_utf8", False),
             FuzzLine(b"  ", "empty", "empty_line", False)]
    assert quarantine_changed(lines, {1: '{"a": 1', 2: "\\xff{}", 3: ""}) == 0
    assert quarantine_changed(lines, {1: '{"a": ', 2: "{}"}) == 2  # cut short; undecodable byte dropped


def test_occurrences_names_the_blobs_holding_each_needle() -> None:
    blobs = {"db": b"x jane@example.com y", "artifact": "caf\u00e9 hf_abc".encode(), "log": b"clean"}
    assert occurrences(["jane@example.com", "hf_abc", "café", "absent"], blobs) == {
        "jane@example.com": ["db"], "hf_abc": ["artifact"], "café": ["artifact"], "absent": []}


def test_fuzzed_lines_are_seeded_and_mixed() -> None:
    lines = fuzz_lines(300, seed=1)
    assert lines == fuzz_lines(300, seed=1) and lines != fuzz_lines(300, seed=2)
    outcomes = expected_outcomes(lines)
    assert outcomes[KEPT] > 100 and {"invalid_json", "invalid_utf8", "wrong_type", "missing_field"} <= set(outcomes)
    assert any(line.email and line.expected == "invalid_json" for line in lines)  # an email in a malformed line
