"""Generation scores: ROUGE-L, chrF, BLEU and exact match per example and over the sample."""

from __future__ import annotations

import math

import pytest
import sacrebleu

from adapterflow.evaluation.generation_metrics import exact_match, generation_scores
from schemas.evaluation import GENERATION_METRICS

ALL = list(GENERATION_METRICS)


def test_a_perfect_answer_scores_full_marks_on_every_metric() -> None:
    sample, rows = generation_scores(["Return the sum of the numbers."], ["Return the sum of the numbers."], ALL)
    assert sample == pytest.approx({"rouge_l": 1.0, "chrf": 100.0, "bleu": 100.0, "exact_match": 1.0})
    assert rows == [pytest.approx({"rouge_l": 1.0, "chrf": 100.0, "bleu": 100.0, "exact_match": 1.0})]


def test_exact_match_ignores_surrounding_and_repeated_whitespace_only() -> None:
    assert exact_match("  Paris\n", "Paris") == 1.0
    assert exact_match("Paris  is big", "Paris is big") == 1.0
    assert exact_match("paris", "Paris") == 0.0


def test_partial_answers_score_between_unrelated_and_perfect() -> None:
    reference = "The function returns a sorted copy of the list."
    close = "The function returns a sorted copy."
    unrelated = "Bananas are yellow fruit."
    _, rows = generation_scores([reference, close, unrelated], [reference] * 3, ALL)
    for metric in ("rouge_l", "chrf"):
        assert rows[0][metric] > rows[1][metric] > rows[2][metric], metric
    assert rows[1]["exact_match"] == rows[2]["exact_match"] == 0.0
    # ROUGE-L F: the longest common subsequence is all 6 words of the close answer, out of 6 and 9 words
    assert rows[1]["rouge_l"] == pytest.approx(2 * (6 / 6) * (6 / 9) / (6 / 6 + 6 / 9))


def test_sample_chrf_and_bleu_are_sacrebleus_corpus_scores_not_means_of_sentences() -> None:
    predictions = ["the cat sat on the mat", "a dog barked loudly at night"]
    references = ["the cat sat on a mat", "the dog barked at night"]
    sample, rows = generation_scores(predictions, references, ["bleu", "chrf", "rouge_l"])
    assert sample["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    assert sample["chrf"] == pytest.approx(sacrebleu.corpus_chrf(predictions, [references]).score)
    assert sample["rouge_l"] == pytest.approx((rows[0]["rouge_l"] + rows[1]["rouge_l"]) / 2)
    assert not math.isclose(sample["bleu"], (rows[0]["bleu"] + rows[1]["bleu"]) / 2)


def test_only_the_configured_metrics_are_computed_and_no_answers_give_no_scores() -> None:
    sample, rows = generation_scores(["yes"], ["yes"], ["exact_match"])
    assert sample == {"exact_match": 1.0} and rows == [{"exact_match": 1.0}]
    assert generation_scores([], [], ALL) == ({}, [])
