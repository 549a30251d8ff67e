"""Evaluation, in one place: suites (what is evaluated), scoring (log-likelihoods, generation, prefix
tries), the metric registry, the evaluator, results and reports, and the periodic hook of training."""
