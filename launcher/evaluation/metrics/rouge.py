"""``rouge``: ROUGE-1/2/Lsum F-measure x 100 as T5 computes it (``rouge-score``, no stemmer, sentences on
new lines for ``rougeLsum``); the best reference per number. Scored on the whole generation."""

from __future__ import annotations

from typing import Sequence

from flanforge.launcher.evaluation.metrics.base import Generation, Metric, register

ROUGE_KEYS = ("rouge1", "rouge2", "rougeLsum")


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


class Rouge(Metric):
    name = "rouge"
    reports = ROUGE_KEYS

    def score_generation(self, generation: Generation, references: Sequence[str]) -> dict[str, float]:
        return rouge(generation.text, references)


register(Rouge())
