"""Parity with lm-evaluation-harness itself (lm-eval, pinned in setup.py's ``test`` extra): the same model
directory scored by lm-eval's own API (``simple_evaluate`` with its ``HFLM`` model) and by ``flanforge eval
--convention lm-eval`` gives the same prompts, the same per-example log-likelihoods (within 1e-4), the
same predictions and the same accuracy; and greedy generation gives the same text.

The model is a tiny random decoder (and a tiny T5) saved as a Hugging Face directory with the tokenizer
written by flanforge's export (``write_tokenizer``: spiece.model plus the converted ``tokenizer.json``
that lm-eval loads); the data are a few subjects of ../shared/data/mmlu_redux, copied into the test's
temporary folder (where that checkout is absent, subjects written here in MMLU's layout: the parity is of
the scoring, not of the questions), and lm-eval reads them through a task YAML written here with MMLU's
prompt.
"""

import csv
import json
import shutil
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (setup.py's test extra pins it)")

from flanforge.launcher.evaluation.mmlu import write_lm_eval_task  # noqa: E402
from flanforge.launcher.export.tokenizer import write_tokenizer  # noqa: E402
from flanforge.model.config import ModelConfig  # noqa: E402
from flanforge.model.load import build_model  # noqa: E402
from flanforge.model.tokenizer import train_tokenizer  # noqa: E402

from .conftest import TINY, TINY_T5, evaluate  # noqa: E402
from ...mixtures.test_mmlu_reader import REDUX  # noqa: E402

SUBJECTS = ("abstract_algebra", "high_school_geography")
PER_SUBJECT = 6

pytestmark = pytest.mark.lm_eval


def write_subject(path: Path, subject: str, rows: int, start: int) -> None:
    """``rows`` questions of MMLU's layout (question, A-D, answer letter), generated from ``subject``."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        for i in range(start, start + rows):
            options = [str(i + k) for k in range(4)]
            writer.writerow([f"In {subject.replace('_', ' ')}, which number follows {i + 1 + i % 3 - 1}?",
                             *options, "ABCD"[(i + 1) % 4]])


@pytest.fixture(scope="module")
def mmlu_dir(tmp_path_factory):
    """The subjects' dev and test files in the test's temporary folder: MMLU-Redux's, or generated."""
    root = tmp_path_factory.mktemp("mmlu")
    for split in ("dev", "test"):
        (root / "data" / split).mkdir(parents=True)
        for subject in SUBJECTS:
            target = root / "data" / split / f"{subject}_{split}.csv"
            if REDUX.is_dir():
                shutil.copyfile(REDUX / "data" / split / f"{subject}_{split}.csv", target)
            else:
                write_subject(target, subject, 5 if split == "dev" else PER_SUBJECT, 0 if split == "dev" else 10)
    return root


def write_lm_eval_tasks(root: Path) -> Path:
    """One lm-eval task YAML per subject: lm-eval's own MMLU template on the same files."""
    for subject in SUBJECTS:
        write_lm_eval_task(root / "lm_eval_tasks", f"ff_mmlu_{subject}", subject,
                           root / "data" / "dev" / f"{subject}_dev.csv", root / "data" / "test" / f"{subject}_test.csv")
    return root / "lm_eval_tasks"


def export_tiny(root: Path, arch: str, data: Path, seed: int = 0) -> Path:
    """A tiny random model (drawn from ``seed``) and a tokenizer trained on the data's text (its CSV and JSONL
    files), written as flanforge exports them."""
    files = sorted([*data.glob("data/*/*.csv"), *data.glob("*.jsonl")])
    texts = [line for p in files for line in p.read_text().splitlines()]
    tokenizer = train_tokenizer(texts, root / "tok", vocab_size=600)
    hf_config = dict(TINY, max_position_embeddings=4096) if arch == "decoder" else dict(TINY_T5)
    model = build_model(ModelConfig(arch=arch, vocab_size=tokenizer.vocab_size, hf_config=hf_config), tokenizer, seed,
                        training=False)
    out = root / "model"
    model.save_pretrained(out)
    assert write_tokenizer(tokenizer, out, arch, 4096)  # the converted tokenizer.json encodes as SentencePiece does
    return out


def run_lm_eval(model_dir: Path, arch: str, tasks: Path, names: list[str], shots: int, limit: int):
    """lm-eval's per-task samples (by document) and results for the task YAMLs in ``tasks``."""
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    # a decoder's prompts carry no BOS in flanforge; T5's encoder input ends with EOS in both (its tokenizer's)
    extra = {"add_bos_token": False} if arch == "decoder" else {}
    model = HFLM(pretrained=str(model_dir), backend="causal" if arch == "decoder" else "seq2seq", device="cpu",
                 batch_size=4, dtype="float32", **extra)
    out = lm_eval.simple_evaluate(model=model, tasks=names, num_fewshot=shots, limit=limit, log_samples=True,
                                  bootstrap_iters=0, task_manager=TaskManager(include_path=str(tasks)))
    return {n: sorted(out["samples"][n], key=lambda r: r["doc_id"]) for n in names}, out["results"]


def assert_same_scores(ours: list[dict], theirs: list[dict]) -> None:
    """Per example: the same context, log-likelihoods within 1e-4, the same prediction."""
    assert len(ours) == len(theirs) > 0
    for mine, their in zip(ours, theirs):
        assert [arg[0] for arg in their["arguments"]] == [mine["prompt"]] * len(mine["options"])  # byte for byte
        their_ll = [resp[0][0] for resp in their["resps"]]
        assert mine["loglikelihoods"] == pytest.approx(their_ll, abs=1e-4)
        assert mine["options"].index(mine["prediction"]) == max(range(len(their_ll)), key=their_ll.__getitem__)


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("arch", ["decoder", "t5"])
@pytest.mark.parametrize("shots", [0, 5])
def test_mmlu_matches_lm_eval(mmlu_dir, tmp_path, capsys, arch, shots):
    model_dir = export_tiny(tmp_path, arch, mmlu_dir)
    names = [f"ff_mmlu_{s}" for s in SUBJECTS]
    samples, lm_results = run_lm_eval(model_dir, arch, write_lm_eval_tasks(mmlu_dir), names, shots, PER_SUBJECT)

    out = tmp_path / "eval"
    assert evaluate(capsys, model_dir, "--suites", f"mmlu:{mmlu_dir}", "--shots", shots, "--convention", "lm-eval",
                    "--max-examples", PER_SUBJECT, "--out", out) == 0
    results = json.loads((out / "results.json").read_text())
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for subject in SUBJECTS:
        ours = sorted((r for r in records if r["task"] == subject), key=lambda r: r["index"])
        assert len(ours) == PER_SUBJECT
        assert_same_scores(ours, samples[f"ff_mmlu_{subject}"])
        accuracy = results["suites"]["mmlu"]["tasks"][subject]["metrics"]["accuracy"]
        assert accuracy == pytest.approx(100 * lm_results[f"ff_mmlu_{subject}"]["acc,none"])


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_a_binary_choice_task_matches_lm_eval(mmlu_dir, tmp_path, capsys, arch):
    """A flanforge task YAML (options from a field, zero-shot with options) against lm-eval on the prompts
    flanforge rendered (the same text in both), with lm-eval's acc and acc_norm."""
    import yaml

    from flanforge.launcher.evaluation.suites import build_suite
    from flanforge.mixtures import registry

    registry.reset()  # the task YAML registers its task; each parametrisation loads its own file
    words = ["good", "bad", "fine", "awful", "great", "poor", "lovely", "dull", "superb", "weak", "nice", "grim"]
    rows = [{"text": f"The film was {w}.", "label": "positive" if i % 2 == 0 else "negative",
             "opts": "positive|||negative"} for i, w in enumerate(words)]
    (tmp_path / "sst.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "sst.yaml").write_text(yaml.safe_dump({
        "task": "tiny_sst", "source": {"path": "sst.jsonl", "holdout": {"validation": 8}}, "metric": "accuracy",
        "options_field": "opts", "templates": [{"id": "t", "input": "Review: {{ text }}\nSentiment:",
                                                 "target": "{{ label }}"}]}))
    [task] = build_suite(str(tmp_path / "sst.yaml")).tasks
    lm_dir = tmp_path / "lm_eval_tasks"
    lm_dir.mkdir()
    with open(tmp_path / "sst_rendered.jsonl", "w") as fh:
        for ex in task.examples:
            fh.write(json.dumps({"prompt": ex.prompt, "options": list(ex.options), "label": ex.correct[0]}) + "\n")
    (lm_dir / "tiny_sst.yaml").write_text(json.dumps({
        "task": "ff_tiny_sst", "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(tmp_path / "sst_rendered.jsonl")}}, "test_split": "test",
        "output_type": "multiple_choice", "doc_to_text": "{{prompt}}", "doc_to_choice": "{{options}}",
        "doc_to_target": "label",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")]}))
    model_dir = export_tiny(tmp_path, arch, mmlu_dir)
    samples, lm_results = run_lm_eval(model_dir, arch, lm_dir, ["ff_tiny_sst"], 0, None)

    out = tmp_path / "eval"
    assert evaluate(capsys, model_dir, "--suites", tmp_path / "sst.yaml", "--convention", "lm-eval", "--out", out) == 0
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert_same_scores(sorted(records, key=lambda r: r["index"]), samples["ff_tiny_sst"])
    metrics = json.loads((out / "results.json").read_text())["suites"]["tiny_sst"]["tasks"]["tiny_sst"]["metrics"]
    assert metrics["accuracy"] == pytest.approx(100 * lm_results["ff_tiny_sst"]["acc,none"])
    assert metrics["accuracy_norm"] == pytest.approx(100 * lm_results["ff_tiny_sst"]["acc_norm,none"])


def without_byte_pieces(model_dir: Path) -> Path:
    """The exported decoder with its byte-fallback pieces' output rows zeroed, so that greedy never writes one:
    a random model writes stray UTF-8 bytes, which SentencePiece (flanforge) and tokenizer.json (lm-eval)
    decode to different replacement characters: a difference of decoding invalid text, not of generation."""
    import sentencepiece
    import torch
    from transformers import AutoModelForCausalLM

    pieces = sentencepiece.SentencePieceProcessor(model_file=str(model_dir / "spiece.model"))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight[[i for i in range(pieces.get_piece_size()) if pieces.is_byte(i)]] = 0.0
    model.save_pretrained(model_dir)
    return model_dir


def test_greedy_generation_matches_lm_eval(tmp_path, capsys):
    """GSM8K-style chain of thought, 3-shot (flanforge's rendered prompts in both), greedy on a decoder: the
    same text from lm-eval's ``generate_until`` (cut at the same stop string) as from ``flanforge eval``."""
    from flanforge.launcher.evaluation.suites import build_suite

    data = tmp_path / "gsm8k"
    data.mkdir()
    for split, numbers in (("train", range(3)), ("test", range(10, 16))):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(
            {"question": f"Tom has {i} apples and buys {i + 2} more. How many apples does he have?",
             "answer": f"He has {i} + {i + 2} = <<{i}+{i + 2}={2 * i + 2}>>{2 * i + 2} apples.\n#### {2 * i + 2}"})
            + "\n" for i in numbers))
    [task] = build_suite(f"gsm8k:{data}").tasks
    (tmp_path / "gsm8k_rendered.jsonl").write_text("".join(json.dumps({"prompt": e.prompt, "label": e.references[0]})
                                                           + "\n" for e in task.examples))
    lm_dir = tmp_path / "lm_eval_tasks"
    lm_dir.mkdir()
    (lm_dir / "gsm8k.yaml").write_text(json.dumps({
        "task": "ff_gsm8k", "dataset_path": "json", "test_split": "test",
        "dataset_kwargs": {"data_files": {"test": str(tmp_path / "gsm8k_rendered.jsonl")}},
        "output_type": "generate_until", "doc_to_text": "{{prompt}}", "doc_to_target": "label",
        "generation_kwargs": {"until": list(task.stops), "do_sample": False, "max_gen_toks": task.max_new_tokens},
        "metric_list": [{"metric": "exact_match"}]}))
    # A draw whose greedy text depends on its prompt: about half the draws of this tiny random model write
    # one text whatever the prompt, which the last assertion would refuse as a comparison of nothing.
    model_dir = without_byte_pieces(export_tiny(tmp_path, "decoder", data, seed=2))
    samples, _ = run_lm_eval(model_dir, "decoder", lm_dir, ["ff_gsm8k"], 0, None)

    out = tmp_path / "eval"
    assert evaluate(capsys, model_dir, "--suites", f"gsm8k:{data}", "--out", out) == 0
    records = sorted((json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()),
                     key=lambda r: r["index"])
    theirs = [s["resps"][0][0].strip() for s in samples["ff_gsm8k"]]
    assert [r["prompt"] for r in records] == [s["arguments"][0][0] for s in samples["ff_gsm8k"]]
    assert [r["generation"] for r in records] == theirs
    assert len(set(theirs)) > 1 and any(len(t) > 20 for t in theirs)  # the texts depend on the prompt, and run on
