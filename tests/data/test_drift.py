"""The data profile and the drift report on small synthetic row sets: exact row counts, an unchanged retrain at
zero, another domain moving the vocabulary and the length test."""

from __future__ import annotations

import random

import pytest

from adapterflow.data.drift import FEATURES, NO_CHAMPION_PROFILE, drift_report, example_keys, row_changes
from adapterflow.data.profile import EXAMPLES_PER_SOURCE, data_profile, previews_by_prompt, row_identity

COUNTS = {"input_rows": 100, "quarantined": 2, "stages": {"clean": 98}, "pii": {"rows": 5}}
WORDS = "list dict tuple set string integer float module import function class method return value".split()


def chat(prompt: str, answer: str, source: str = "/data/docs.jsonl") -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            "source": source, "line": 1}


def python_rows(count: int, seed: int = 0) -> list[dict]:
    generator = random.Random(seed)
    return [chat(f"How do I use {generator.choice(WORDS)} number {index}?",
                 " ".join(generator.choices(WORDS, k=generator.randint(5, 30)))) for index in range(count)]


def cooking_rows(count: int) -> list[dict]:
    generator = random.Random(7)
    foods = "tomato basil garlic onion simmer roast bake flour butter sugar oven pan salt pepper".split()
    return [chat(f"Recipe {index}: " + " ".join(generator.choices(foods, k=generator.randint(20, 40))),
                 " ".join(generator.choices(foods, k=generator.randint(60, 120))), "/data/recipes.jsonl")
            for index in range(count)]


def profile(rows: list[dict], counts: dict = COUNTS, eval_set: str = "e1") -> dict:
    return data_profile(rows, counts, eval_set, "store/datasets/x")


def test_the_profile_counts_sources_rates_lengths_and_keeps_a_few_examples_per_source() -> None:
    rows = python_rows(40) + cooking_rows(10)
    found = profile(rows)
    assert found["train_rows"] == 50 and sum(len(digests) for digests in found["rows"].values()) == 50
    assert found["sources"] == {"docs.jsonl": 40, "recipes.jsonl": 10}  # by file name: folders differ by machine
    assert found["quarantine_rate"] == pytest.approx(0.02) and found["pii_rate"] == pytest.approx(5 / 98)
    assert found["lengths"]["unit"] == "words" and found["lengths"]["answer"]["p95"] > found["lengths"]["answer"]["p50"]
    assert {len(examples) for examples in found["examples"].values()} == {EXAMPLES_PER_SOURCE}
    assert found["examples"]["recipes.jsonl"][0]["prompt"].startswith("Recipe")
    assert found["eval_set"] == "e1" and found["vocabulary"]["words"] > 0
    assert profile(list(reversed(rows))) == found  # the order rows arrive in changes nothing


def test_added_removed_and_changed_rows_are_counted_exactly() -> None:
    old_rows = python_rows(30)
    new_rows = [*old_rows[5:], *python_rows(4, seed=1)]  # 5 removed, 4 added ...
    for index in (10, 11, 12):  # ... and 3 answers edited: same prompt, other content
        new_rows[index] = chat(new_rows[index]["messages"][0]["content"], "an edited answer")
    report = drift_report(profile(old_rows), profile(new_rows))
    assert {key: report["rows"][key] for key in ("before", "after", "added", "removed", "changed")} == \
        {"before": 30, "after": 29, "added": 4, "removed": 5, "changed": 3}
    assert report["scores"]["rows_added"] == pytest.approx(4 / 29)
    assert report["scores"]["rows_removed"] == pytest.approx(5 / 30)
    assert report["scores"]["rows_changed"] == pytest.approx(3 / 30)


def test_a_prompt_with_several_rows_counts_each_row() -> None:
    old = {"p": ["a", "b"], "q": ["c"]}
    new = {"p": ["a", "x", "y"], "r": ["d"]}
    assert row_changes(old, new) == {"added": ["p", "r"], "removed": ["q"], "changed": ["p"]}
    assert example_keys({"added": ["k"] * 5 + ["l", "m", "n"]})["added"] == ["k", "l", "m"]


def test_an_unchanged_retrain_reports_nothing_changed() -> None:
    rows = python_rows(60)
    report = drift_report(profile(rows), profile(python_rows(60)))
    assert (report["rows"]["added"], report["rows"]["removed"], report["rows"]["changed"]) == (0, 0, 0)
    assert report["scores"] == {feature: 0.0 for feature in FEATURES}
    assert report["eval_set"]["same"] and report["lengths"]["prompt"]["ks_pvalue"] == pytest.approx(1.0)


def test_rows_from_another_domain_move_the_vocabulary_lengths_and_sources() -> None:
    old_rows = python_rows(200)
    report = drift_report(profile(old_rows), profile([*old_rows, *cooking_rows(100)]))
    scores = report["scores"]
    assert report["rows"]["added"] == 100 and scores["rows_added"] == pytest.approx(100 / 300)
    assert scores["vocabulary"] > 0.1  # a third of the rows speak of food: the word distribution moved
    assert scores["answer_length"] > 0.3 and report["lengths"]["answer"]["ks_pvalue"] < 1e-6
    assert report["lengths"]["answer"]["p95_shift"] > 0 and scores["prompt_length"] > 0.2
    assert scores["sources"] == pytest.approx(1 / 3)
    assert report["sources"]["recipes.jsonl"] == {"before": 0, "after": 100, "change": 100}
    same_domain = drift_report(profile(old_rows), profile([*old_rows, *python_rows(100, seed=3)]))["scores"]
    assert same_domain["vocabulary"] < scores["vocabulary"] / 10


def test_rates_and_the_eval_set_are_compared() -> None:
    worse = {**COUNTS, "quarantined": 12, "pii": {"rows": 15}}
    report = drift_report(profile(python_rows(20)), profile(python_rows(20), worse, eval_set="e2"))
    assert report["rates"]["quarantine_rate"]["change"] == pytest.approx(0.10)
    assert report["scores"]["pii_rate"] == pytest.approx(10 / 98)
    assert report["scores"]["eval_set"] == 1.0 and report["eval_set"] == {"before": "e1", "after": "e2", "same": False}


def test_without_a_champion_profile_the_report_says_so() -> None:
    assert drift_report(None, profile(python_rows(5))) == {"compared_with": None, "note": NO_CHAMPION_PROFILE,
                                                           "scores": {}}


def test_examples_are_quoted_by_prompt_hash() -> None:
    rows = python_rows(5)
    key = row_identity(rows[2])[0]
    assert previews_by_prompt(rows, {key}) == {key: {"prompt": rows[2]["messages"][0]["content"],
                                                     "answer": rows[2]["messages"][1]["content"]}}
    report = drift_report(profile(rows), profile(rows[1:]), {"removed": [{"prompt": "p", "answer": "a"}] * 5})
    assert report["examples"] == {"added": [], "removed": [{"prompt": "p", "answer": "a"}] * 3, "changed": []}
