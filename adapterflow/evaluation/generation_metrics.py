"""Scores of generated answers against reference answers: ROUGE-L (rouge-score), chrF and BLEU (sacrebleu) and
exact match, per example and over the whole sample.

Scales follow each library: ROUGE-L and exact match are fractions (0-1), chrF and BLEU are sacrebleu's 0-100.
Corpus chrF and BLEU pool n-gram counts over all examples (sacrebleu's corpus scores), which is what papers
report; the per-example scores fill the comparison table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any



def normalise_answer(text: str) -> str:
    """Whitespace trimmed and collapsed: a trailing newline or a double space is no wrong answer."""
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalise_answer(prediction) == normalise_answer(reference))


def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer  # imported when used: it loads nltk's stemmer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def example_scores(predictions: Sequence[str], references: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """One {metric: score} per example, for the comparison table."""
    import sacrebleu

    scorer = _rouge_scorer() if "rouge_l" in metrics else None
    rows = []
    for prediction, reference in zip(predictions, references, strict=True):
        row: dict[str, float] = {}
        if scorer is not None:
            row["rouge_l"] = scorer.score(reference, prediction)["rougeL"].fmeasure
        if "chrf" in metrics:
            row["chrf"] = sacrebleu.sentence_chrf(prediction, [reference]).score
        if "bleu" in metrics:
            row["bleu"] = sacrebleu.sentence_bleu(prediction, [reference]).score
        if "exact_match" in metrics:
            row["exact_match"] = exact_match(prediction, reference)
        rows.append(row)
    return rows


def sample_scores(
    predictions: Sequence[str], references: Sequence[str], metrics: Sequence[str], per_example: list[dict],
) -> dict[str, float]:
    """The sample's scores: corpus chrF and BLEU, mean ROUGE-L and exact match; empty without examples."""
    import sacrebleu

    if not predictions:
        return {}
    scores: dict[str, float] = {}
    for metric in metrics:
        if metric == "chrf":
            scores["chrf"] = sacrebleu.corpus_chrf(list(predictions), [list(references)]).score
        elif metric == "bleu":
            scores["bleu"] = sacrebleu.corpus_bleu(list(predictions), [list(references)]).score
        else:
            scores[metric] = sum(row[metric] for row in per_example) / len(per_example)
    return scores


def generation_scores(
    predictions: Sequence[str], references: Sequence[str], metrics: Sequence[str],
) -> tuple[dict[str, float], list[dict]]:
    """(sample scores, per-example scores) of generated answers against references."""
    per_example = example_scores(predictions, references, metrics)
    return sample_scores(predictions, references, metrics, per_example), per_example
