"""Metrics: SQuAD normalisation, exact match, CoT extraction, ROUGE as rouge_score computes it, intervals."""


import pytest
from rouge_score import rouge_scorer, scoring

from flanforge.launcher.evaluation.metrics.accuracy import rank_classification
from flanforge.launcher.evaluation.metrics.base import summarize
from flanforge.launcher.evaluation.metrics.exact_match import exact_match, normalize_answer
from flanforge.launcher.evaluation.metrics.rouge import rouge
from flanforge.mixtures.formats import COT_ANSWER, extract_answer


@pytest.mark.parametrize("text, expected", [
    ("The Cat", "cat"),
    ("  an apple, a pear! ", "apple pear"),
    ("(B)", "b"),
    ("(A)", ""),  # as SQuAD's: "a" is an article
    ("Theatre", "theatre"),  # "the" only as a word
    ("1,000.", "1000"),
    ("a\tb\n\nc", "b c"),
    ("", ""),
])
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_best_reference_and_strict():
    assert exact_match("the Paris.", ["London", "Paris"]) == {"exact_match": 100.0, "exact_match_strict": 0.0}
    assert exact_match(" Paris ", ["London", "Paris"]) == {"exact_match": 100.0, "exact_match_strict": 100.0}
    assert exact_match("Pari", ["Paris"]) == {"exact_match": 0.0, "exact_match_strict": 0.0}


@pytest.mark.parametrize("generation, expected", [
    ("3 + 4 = 7. So the answer is 7.", "7"),
    ("The answer is (B).", "(B)"),
    ("So the answer is 5. Wait, the answer is 6.", "6"),  # the last statement counts
    ("Therefore, the answer is blue\nQ: next", "blue"),  # the rest of that line only
    ("So, the final answer is: 12.", "12"),
    ("I think it is 7.", None),  # no answer phrase: unparsable
    ("So the answer is", None),  # nothing after it
    ("", None),
])
def test_extract_cot_answer(generation, expected):
    assert extract_answer(generation, COT_ANSWER) == expected


def test_extract_direct_answer():
    assert extract_answer("  Paris \n", None) == "Paris"
    assert extract_answer("   ", None) is None


PAIRS = [
    ("the cat sat on the mat . it was happy .", ["the cat was on the mat . it sat happily ."]),
    ("police killed the gunman", ["police kill the gunman", "the gunman was shot"]),
    ("completely unrelated words here", ["nothing in common"]),
    ("running dogs ran", ["the dog runs"]),  # no stemmer: run/ran/runs do not match
]


@pytest.mark.parametrize("prediction, references", PAIRS)
def test_rouge_equals_rouge_score(prediction, references):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=False)
    expected = {}
    for key in ("rouge1", "rouge2", "rougeLsum"):
        expected[key] = max(
            100 * scorer.score(r.replace(" . ", " .\n"), prediction.replace(" . ", " .\n"))[key].fmeasure
            for r in references)
    assert rouge(prediction, references) == pytest.approx(expected, abs=1e-9)


def test_rouge_mean_matches_t5_bootstrap_mid():
    """T5 reports the bootstrap mid F-measure; over these pairs it equals the mean we report, within noise."""
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeLsum"], use_stemmer=False)
    aggregator = scoring.BootstrapAggregator()
    for prediction, references in PAIRS:
        aggregator.add_scores(scorer.score(references[0], prediction))
    mid = aggregator.aggregate()["rouge1"].mid.fmeasure * 100
    means, _ = summarize([rouge(p, r[:1]) for p, r in PAIRS], ["rouge1"])
    assert means["rouge1"] == pytest.approx(mid, abs=3.0)


def test_rougelsum_splits_sentences_on_new_lines():
    # Two sentences in swapped order: rougeLsum (per sentence) scores them fully, rougeL would not.
    scores = rouge("b c d . a e f .", ["a e f . b c d ."])
    assert scores["rougeLsum"] == pytest.approx(100.0)


def test_rank_classification_sum_and_per_character():
    # Option 0 has the higher sum, option 1 the higher log-likelihood per character.
    score, pred = rank_classification([-2.0, -3.0], ["no", "absolutely"], correct=[1])
    assert pred == 0 and score == {"accuracy": 0.0, "accuracy_norm": 100.0}
    score, pred = rank_classification([-5.0, -1.0], ["a", "b"], correct=[1])
    assert pred == 1 and score == {"accuracy": 100.0, "accuracy_norm": 100.0}


def test_summarize_mean_and_interval_reproducible():
    scores = [{"exact_match": v} for v in (100.0, 0.0, 100.0, 100.0, 0.0, 100.0, 100.0, 0.0)]
    means, ci = summarize(scores, ["exact_match"])
    assert means["exact_match"] == pytest.approx(62.5)
    lo, hi = ci["exact_match"]
    assert 0.0 <= lo < 62.5 < hi <= 100.0
    assert summarize(scores, ["exact_match"]) == (means, ci)
    with pytest.raises(ValueError, match="no scores"):  # never a NaN: an EvalTask without examples is refused
        summarize([], ["exact_match"])
