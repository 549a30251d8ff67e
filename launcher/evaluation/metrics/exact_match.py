"""``exact_match``: equal after SQuAD normalisation (T5's ``squad`` metric), and ``exact_match_strict``
(equal after stripping surrounding whitespace); the best reference counts."""

from __future__ import annotations

import re
import string
from typing import Sequence

from flanforge.launcher.evaluation.metrics.base import Generation, Metric, register


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


class ExactMatch(Metric):
    name = "exact_match"
    reports = ("exact_match", "exact_match_strict")

    def score_generation(self, generation: Generation, references: Sequence[str]) -> dict[str, float]:
        return exact_match(generation.answer, references)


register(ExactMatch())
