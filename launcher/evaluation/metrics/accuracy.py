"""``accuracy``: rank classification by summed option log-likelihood (T5X/FLAN), and ``accuracy_norm``
(per character, lm-evaluation-harness's ``acc_norm``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from flanforge.launcher.evaluation.metrics.base import Metric, register


def rank_classification(loglikelihoods: Sequence[float], options: Sequence[str], correct: Sequence[int]) -> tuple[dict[str, float], int]:
    """``accuracy``/``accuracy_norm`` of one example, and the predicted option (summed log-likelihood)."""
    ll = np.asarray(loglikelihoods, dtype=np.float64)
    norm = ll / np.asarray([max(1, len(o)) for o in options], dtype=np.float64)
    pred, pred_norm = int(np.argmax(ll)), int(np.argmax(norm))
    return {"accuracy": 100.0 * (pred in correct), "accuracy_norm": 100.0 * (pred_norm in correct)}, pred


class Accuracy(Metric):
    name = "accuracy"
    reports = ("accuracy", "accuracy_norm")
    needs_options = True

    def score_options(self, loglikelihoods, options, correct):
        return rank_classification(loglikelihoods, options, correct)[0]


register(Accuracy())
