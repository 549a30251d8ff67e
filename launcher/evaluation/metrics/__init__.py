"""The metric registry: a task's ``metric`` names a registered :class:`~.base.Metric` (all scores 0-100).

=====================  ===============================================================
metric (reports)       how a prediction is scored
=====================  ===============================================================
``accuracy``           rank classification: the option with the highest *summed* target
                       log-likelihood wins (T5X/FLAN); right if it is a correct option
  ``accuracy_norm``    the same with each log-likelihood divided by the option's length in
                       characters (lm-evaluation-harness's ``acc_norm``)
``exact_match``        equal after SQuAD normalisation (T5's ``squad`` metric: lowercase,
                       no punctuation, no articles, whitespace collapsed); best reference
  ``exact_match_strict`` equal after stripping surrounding whitespace; best reference
``rouge``              ``rouge1``, ``rouge2``, ``rougeLsum``: ``rouge-score`` F-measure, no
                       stemmer, sentences on new lines for ``rougeLsum`` (T5's ``rouge``);
                       best reference per prediction
=====================  ===============================================================

A chain-of-thought generation is scored on its answer: the text after the last
"So the answer is" (or a task's own pattern). An empty or unparsable
generation scores 0 and is counted as ``invalid``, never dropped.

Adding a metric is one file with a :class:`~.base.Metric` subclass ending with one :func:`register` call
(a built-in is also imported below); nothing else dispatches on metric names.
"""

from __future__ import annotations

from flanforge.launcher.evaluation.metrics.base import (Generation, Metric, get, higher_is_better, names, register,
                                                      reported_names, unregister)
# The built-ins, one file each, each registering itself (in this order: the order of ``names()``).
from flanforge.launcher.evaluation.metrics import accuracy, exact_match, rouge  # noqa: E402,F401

__all__ = ["Generation", "Metric", "get", "higher_is_better", "names", "register", "reported_names", "unregister"]
