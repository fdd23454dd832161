"""Is a gain more than the noise of a finite eval set? A paired bootstrap over the eval examples.

Both models were scored on the same examples, so every resample draws example indices with replacement and
recomputes the metric of both models on that same draw: what varies is which examples were drawn, never which
model saw them. Pure functions of per-example values (numbers only, as evaluate logs them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from adapterflow.evaluation.metrics import MAX_PERPLEXITY_LOSS
from schemas.registry import Direction

RESAMPLES = 2000
SEED = 0  # one fixed draw: the same values always get the same verdict
CHUNK = 250  # resamples weighed at once: bounds the (resamples x examples) weight matrix
# the per-example values each metric is recomputed from; the others (corpus chrF and BLEU, general-set
# perplexity, forgetting) are not sums over eval examples and are compared as points
EXAMPLE_KEYS: dict[str, tuple[str, ...]] = {
    "perplexity": ("nll", "tokens"), "loss": ("nll", "tokens"), "accuracy": ("correct",),
    "macro_f1": ("label", "predicted"), "rouge_l": ("rouge_l",), "exact_match": ("exact_match",),
}
PerExample = Mapping[str, Sequence[float]]


def better_by(candidate: float, reference: float, direction: Direction) -> float:
    """How much better the candidate is, in the metric's units (negative: worse; NaN when either is); elementwise
    on arrays."""
    return reference - candidate if direction == "lower" else candidate - reference


def relative(amount: float, reference: float) -> float:
    """`amount` as a share of the reference's size; a non-zero amount on a zero reference is infinite; elementwise
    on arrays."""
    amounts, references = np.asarray(amount, dtype=float), np.asarray(reference, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        share = np.where(references != 0, amounts / np.abs(references),
                         np.where(np.isnan(amounts) | (amounts == 0), amounts, np.copysign(np.inf, amounts)))
    return float(share) if share.ndim == 0 else share


@dataclass(frozen=True)
class Interval:
    """The relative improvement on the whole eval set and its one-sided lower bound under resampling."""

    point: float
    lower: float
    confidence: float
    examples: int

    @property
    def detectable(self) -> float:
        """The noise margin: about the smallest improvement this eval size tells apart from none."""
        return self.point - self.lower


def missing_examples(
    metric: str, candidate: PerExample | None, reference: PerExample | None, against: str,
) -> str | None:
    """Why `metric` can't be resampled from these per-example values (None when it can)."""
    keys = EXAMPLE_KEYS.get(metric)
    if keys is None:
        return f"{metric} is not a sum over eval examples"
    for who, values in (("the candidate", candidate), (against, reference)):
        if not values or any(key not in values for key in keys):
            return f"no per-example {metric} values for {who} (a run from before they were logged)"
    sizes = {len(values[key]) for values in (candidate, reference) for key in keys}
    if len(sizes) != 1 or not sizes.pop():
        return f"the per-example {metric} values of the candidate and {against} are not of the same examples"
    return None


def metric_of(metric: str, values: Mapping[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
    """The metric recomputed on each row of `weights` (how often each example was drawn)."""
    if metric in ("perplexity", "loss"):
        loss = (weights @ values["nll"]) / np.maximum(weights @ values["tokens"], 1)
        return np.exp(np.minimum(loss, MAX_PERPLEXITY_LOSS)) if metric == "perplexity" else loss
    if metric == "macro_f1":
        return macro_f1(values["label"], values["predicted"], weights)
    return (weights @ values[EXAMPLE_KEYS[metric][0]]) / weights.sum(axis=1)


def macro_f1(labels: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """scikit-learn's macro-F1 (zero_division=0) per row of weights: the mean F1 of the classes that occur among
    the drawn references or predictions."""
    classes = np.union1d(labels, predicted)
    truth, guess = labels[:, None] == classes, predicted[:, None] == classes
    hits = weights @ (truth & guess).astype(float)
    wrong_guesses, misses = weights @ (guess & ~truth).astype(float), weights @ (truth & ~guess).astype(float)
    denominator = 2 * hits + wrong_guesses + misses
    present = denominator > 0
    f1 = np.where(present, 2 * hits / np.where(present, denominator, 1), 0.0)
    return f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def resampling_weights(examples: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, examples) counts: how often each example is drawn in each resample of the same size."""
    drawn = rng.integers(0, examples, size=(resamples, examples)) + np.arange(resamples)[:, None] * examples
    return np.bincount(drawn.ravel(), minlength=resamples * examples).reshape(resamples, examples).astype(float)


def improvement(metric: str, ours: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray], direction: Direction,
                weights: np.ndarray) -> np.ndarray:
    """The candidate's relative improvement over the reference on each row of `weights`."""
    reference = metric_of(metric, theirs, weights)
    return relative(better_by(metric_of(metric, ours, weights), reference, direction), reference)


def expanded_tail(tail: float, examples: int) -> float:
    """The bootstrap quantile to read for a `tail` bound on `examples` examples: the expanded percentile (Hesterberg,
    "What Teachers Should Know About the Bootstrap", 2015) widens the plain percentile by Student's t and
    sqrt(n / (n - 1)), since the plain one is too narrow on small samples."""
    from scipy.stats import norm, t

    if examples < 2:
        return 0.0
    return float(norm.cdf(math.sqrt(examples / (examples - 1)) * t.ppf(tail, examples - 1)))


def paired_bootstrap(
    metric: str, candidate: PerExample, reference: PerExample, direction: Direction, confidence: float,
    resamples: int = RESAMPLES, seed: int = SEED,
) -> Interval:
    """The candidate's relative improvement over the reference on `metric` and its one-sided lower bound at
    `confidence`; the values must be of the same examples (see `missing_examples`)."""
    keys = EXAMPLE_KEYS[metric]
    ours = {key: np.asarray(candidate[key], dtype=float) for key in keys}
    theirs = {key: np.asarray(reference[key], dtype=float) for key in keys}
    examples = len(ours[keys[0]])
    point = float(improvement(metric, ours, theirs, direction, np.ones((1, examples)))[0])
    rng = np.random.default_rng(seed)
    resampled = np.concatenate([improvement(metric, ours, theirs, direction,
                                            resampling_weights(examples, min(CHUNK, resamples - start), rng))
                                for start in range(0, resamples, CHUNK)])
    lower = float(np.quantile(resampled, expanded_tail(1 - confidence, examples)))  # NaN if any resample is NaN
    return Interval(point=point, lower=lower, confidence=confidence, examples=examples)
