"""MMLU's prompts (read by ``mixtures/sources/mmlu.py``) and lm-evaluation-harness's four categories.

The prompt is the one MMLU's paper and lm-evaluation-harness both use::

    The following are multiple choice questions (with answers) about <subject, underscores as spaces>.

    <exemplar question>
    A. ...
    B. ...
    C. ...
    D. ...
    Answer: <letter>

    ... (``shots`` dev exemplars in file order, each followed by a blank line)

    <test question>
    A. ...
    ...
    Answer:

Questions are stripped of surrounding whitespace (lm-eval's ``question.strip()``);
choices stay as written. Scored by rank classification over the options
``A``-``D`` (the scoring convention adds the space: ``scoring.py``). Each
subject is a task whose cluster is its category; the suite's means weight
subjects by their questions (hendrycks' mean over all questions, lm-eval's
``weight_by_size``), and the unweighted mean over subjects is reported beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from flanforge.launcher.evaluation.tasks import EvalExample, EvalTask
from flanforge.mixtures.sources.mmlu import LETTERS, MMLURow, read_mmlu, read_rows

DEFAULT_SHOTS = 5
DEFAULT_SPLIT = "test"
CATEGORIES: dict[str, tuple[str, ...]] = {
    "stem": (
        "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
        "college_computer_science", "college_mathematics", "college_physics", "computer_security",
        "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
        "high_school_chemistry", "high_school_computer_science", "high_school_mathematics",
        "high_school_physics", "high_school_statistics", "machine_learning",
    ),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history", "high_school_world_history",
        "international_law", "jurisprudence", "logical_fallacies", "moral_disputes", "moral_scenarios",
        "philosophy", "prehistory", "professional_law", "world_religions",
    ),
    "social_sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology", "human_sexuality",
        "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    ),
    "other": (
        "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
        "management", "marketing", "medical_genetics", "miscellaneous", "nutrition", "professional_accounting",
        "professional_medicine", "virology",
    ),
}
"""lm-evaluation-harness's groups of the 57 subjects (``lm_eval/tasks/mmlu/_generate_configs.py``, SUBJECTS).
MMLU's own ``categories.py`` puts anatomy under health (its "other"); lm-eval, and so this map, under stem."""
CATEGORY = {subject: category for category, subjects in CATEGORIES.items() for subject in subjects}


def header(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}."


def question_text(row: MMLURow, with_answer: bool = False) -> str:
    """One question in the prompt's form, ending in ``Answer:`` (with its letter for an exemplar)."""
    lines = [row.question.strip(), *(f"{letter}. {choice}" for letter, choice in zip(LETTERS, row.choices))]
    return "\n".join(lines) + ("\nAnswer: " + row.answer if with_answer else "\nAnswer:")


def prompt(subject: str, exemplars: list[MMLURow], row: MMLURow) -> str:
    return "\n\n".join([header(subject), *(question_text(e, with_answer=True) for e in exemplars), question_text(row)])


def mmlu_tasks(root: Path, *, split: str, shots: int | None, max_examples: int | None,
               encoding: str | None = None, policy: str = "error") -> list[EvalTask]:
    """One task per subject of ``root`` (the original MMLU layout), clustered by category."""
    k = DEFAULT_SHOTS if shots is None else shots
    tasks = []
    for subject in read_mmlu(root, split, k, max_examples, known=tuple(CATEGORY), encoding=encoding, policy=policy):
        examples = [EvalExample(prompt(subject.name, subject.exemplars, row), (row.answer,), LETTERS,
                                (LETTERS.index(row.answer),)) for row in subject.rows]
        tasks.append(EvalTask(subject.name, CATEGORY[subject.name], "accuracy", "fs_opt" if k else "zs_opt", examples,
                              bad_records=subject.bad_records))
    return tasks


def write_lm_eval_task(folder: Path, name: str, subject: str, dev_file: Path, test_file: Path) -> Path:
    """lm-evaluation-harness task ``name`` for one subject, written to ``folder``: lm-eval's own MMLU template
    (its ``tasks/mmlu/default`` YAML; lm-eval builds the prompt) on the subject's files converted to JSONL
    (``question``, ``choices``, ``answer`` index). For the lm-eval parity tests and
    ``benchmarks/eval_vs_lm_eval.py``; returns the YAML's path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, source in (("dev", dev_file), ("test", test_file)):
        files[split] = str(folder / f"{name}_{split}.jsonl")
        Path(files[split]).write_text("".join(json.dumps({"question": r.question, "choices": list(r.choices),
                                                          "answer": LETTERS.index(r.answer)}) + "\n"
                                              for r in read_rows(source)))
    config = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": files},
        "test_split": "test", "fewshot_split": "dev", "fewshot_config": {"sampler": "first_n"},
        "output_type": "multiple_choice", "description": header(subject) + "\n\n",
        "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
                       "D. {{choices[3]}}\nAnswer:",
        "doc_to_choice": list(LETTERS), "doc_to_target": "answer",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    path = folder / f"{name}.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path
