"""Evaluation metrics, with the conventions of the anchors (all scores in 0-100).

=====================  ===============================================================
metric                 how a prediction is scored
=====================  ===============================================================
``accuracy``           rank classification: the option with the highest *summed* target
                       log-likelihood wins (T5X/FLAN); right if it is a correct option
``accuracy_norm``      the same with each log-likelihood divided by the option's length in
                       characters (lm-evaluation-harness's ``acc_norm``)
``exact_match``        equal after SQuAD normalisation (T5's ``squad`` metric: lowercase,
                       no punctuation, no articles, whitespace collapsed); best reference
``exact_match_strict`` equal after stripping surrounding whitespace; best reference
``rouge1/2/Lsum``      ``rouge-score`` F-measure, no stemmer, sentences on new lines for
                       ``rougeLsum`` (T5's ``rouge``); best reference per prediction
=====================  ===============================================================

A chain-of-thought generation is scored on its answer: the text after the last
"So the answer is" (or a task's own pattern). An empty or unparsable
generation scores 0 and is counted as ``invalid``, never dropped.
"""

from __future__ import annotations

import re
import string
from typing import Sequence

import numpy as np


REPORTED = {  # a task's metric (task.TASK_METRICS) -> the metrics it reports
    "accuracy": ("accuracy", "accuracy_norm"),
    "exact_match": ("exact_match", "exact_match_strict"),
    "rouge": ("rouge1", "rouge2", "rougeLsum"),
}
METRICS = tuple(m for names in REPORTED.values() for m in names)
ROUGE_KEYS = REPORTED["rouge"]
COT_ANSWER = re.compile(r"answer is:?[ \t]*", re.IGNORECASE)
"""A chain of thought states its answer after the last "(So the) answer is", up to the end of that line."""
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def normalize_answer(text: str) -> str:
    """SQuAD normalisation as T5's ``squad`` metric does it: lowercase, drop punctuation and
    the articles a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """``exact_match`` (normalised) and ``exact_match_strict`` of one prediction, best reference."""
    norm = normalize_answer(prediction)
    return {
        "exact_match": 100.0 * any(norm == normalize_answer(r) for r in references),
        "exact_match_strict": 100.0 * any(prediction.strip() == r.strip() for r in references),
    }


def extract_answer(generation: str, pattern: re.Pattern[str] | None = COT_ANSWER) -> str | None:
    """The answer a generation states: the rest of the line after the last match of ``pattern`` (CoT),
    else (no pattern) the text itself.

    None when there is nothing to score (an empty generation, or a CoT without the answer phrase).
    """
    text = generation.strip()
    if pattern is not None:
        matches = list(pattern.finditer(text))
        if not matches:
            return None
        text = text[matches[-1].end():].split("\n", 1)[0].strip()
        text = text[:-1].strip() if text.endswith(".") else text
    return text or None


def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=False)


def _sentences_on_lines(text: str) -> str:
    # T5 puts a new line after each " . " so that rougeLsum sees sentences.
    return text.replace(" . ", " .\n")


def rouge(prediction: str, references: Sequence[str], scorer=None) -> dict[str, float]:
    """ROUGE-1/2/Lsum F-measure x 100 of one prediction, best reference per metric."""
    scorer = scorer or _rouge_scorer()
    best = dict.fromkeys(ROUGE_KEYS, 0.0)
    for ref in references:
        scores = scorer.score(_sentences_on_lines(ref), _sentences_on_lines(prediction))
        for key in ROUGE_KEYS:
            best[key] = max(best[key], 100.0 * scores[key].fmeasure)
    return best


def rank_classification(loglikelihoods: Sequence[float], options: Sequence[str], correct: Sequence[int]) -> tuple[dict[str, float], int]:
    """``accuracy``/``accuracy_norm`` of one example, and the predicted option (summed log-likelihood)."""
    ll = np.asarray(loglikelihoods, dtype=np.float64)
    norm = ll / np.asarray([max(1, len(o)) for o in options], dtype=np.float64)
    pred, pred_norm = int(np.argmax(ll)), int(np.argmax(norm))
    return {"accuracy": 100.0 * (pred in correct), "accuracy_norm": 100.0 * (pred_norm in correct)}, pred


def summarize(scores: Sequence[dict[str, float]], metrics: Sequence[str]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Mean of each metric over examples, and its 95% bootstrap interval (seeded: reproducible)."""
    means, intervals = {}, {}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n = len(scores)
    picks = rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n)) if n else None
    for metric in metrics:
        values = np.asarray([s[metric] for s in scores], dtype=np.float64)
        if not n:
            means[metric], intervals[metric] = float("nan"), [float("nan"), float("nan")]
            continue
        boot = values[picks].mean(axis=1)
        means[metric] = float(values.mean())
        intervals[metric] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    return means, intervals
