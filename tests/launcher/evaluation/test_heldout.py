"""The Flan 2022 held-out suite (components from --data or eval.data, one table, not-run listed) and
MMLU's chain of thought (Flan's exemplars from --cot-prompts, the answer after "answer is")."""

import json

import pytest

from flanforge.launcher.config import EvalConfig
from flanforge.launcher.evaluation import metrics
from flanforge.launcher.evaluation.metrics import Generation
from flanforge.launcher.evaluation.suites import build_suite
from flanforge.mixtures.formats import extract_answer
from flanforge.mixtures.task import TaskError
from flanforge.model.config import ModelConfig

from ...mixtures.test_mmlu_reader import write_subject
from .conftest import TINY, evaluate, make_run
from .test_mmlu import write_fixture
from .test_run import error_of
from .test_suites import _bbh

COT_PROMPTS = {  # lm-eval's flan_cot_fewshot layout: subject -> header and worked exemplars
    "college_physics": "The following are multiple choice questions (with answers) about college physics.\n\n"
                       "Q: What is c?\n(A) 1 (B) 2 (C) 3 (D) 4\nA: Let's think step by step. Light. The answer is (C).",
    "philosophy": "The following are multiple choice questions (with answers) about philosophy.\n\n"
                  "Q: P?\n(A) a (B) b (C) c (D) d\nA: Let's think step by step. Think. The answer is (B).",
}


def cot_file(tmp_path, prompts=COT_PROMPTS):
    path = tmp_path / "cot_prompts.json"
    path.write_text(json.dumps(prompts))
    return path


def test_mmlu_cot_prompts_and_answers(tmp_path):
    root = write_fixture(tmp_path / "mmlu")
    suite = build_suite(f"mmlu_cot:{root}", cot_prompts=str(cot_file(tmp_path)))
    physics = next(t for t in suite.tasks if t.name == "college_physics")
    [example] = physics.examples
    assert example.prompt == (COT_PROMPTS["college_physics"] + "\n\nQ: Which is a vector?\n(A) mass (B) None "
                              "(C) velocity\nor speed (D) time\nA: Let's think step by step.")
    assert example.references == ("(C)",) and physics.cluster == "stem" and suite.weighted
    metric = metrics.get(physics.metric)
    for generation, right in ((" It has a direction. The answer is (C).", True), (" So the answer is (c)", True),
                              (" The answer is (A).", False), (" (C) it is.", False)):
        scored = metric.score(example, Generation(generation, extract_answer(generation, physics.answer_pattern)))
        assert (scored["exact_match"] == 100.0) is right, generation


def test_mmlu_cot_needs_its_exemplars(tmp_path):
    root = write_fixture(tmp_path / "mmlu")
    with pytest.raises(TaskError, match=r"suite 'mmlu_cot' needs .*--cot-prompts FILE"):
        build_suite(f"mmlu_cot:{root}")
    with pytest.raises(TaskError, match=r"no exemplars for MMLU subject 'philosophy'"):
        build_suite(f"mmlu_cot:{root}", cot_prompts=str(cot_file(tmp_path, {"college_physics": "x"})))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(TaskError, match=r"bad.json: expected a JSON object of subject -> prompt text"):
        build_suite(f"mmlu_cot:{root}", cot_prompts=str(tmp_path / "bad.json"))


def test_one_table_from_the_runs_eval_data_with_the_missing_components_not_run(tokenizer_dir, tmp_path, capsys):
    mmlu, bbh = tmp_path / "mmlu", tmp_path / "bbh_data"
    for subject, n in (("philosophy", 2), ("virology", 3)):  # 5-shot: five dev rows each
        write_subject(mmlu, "dev", subject, [[f"{subject} {i}?", "a", "b", "c", "d", "B"] for i in range(5)])
        write_subject(mmlu, "test", subject, [[f"Q{i}", "a", "b", "c", "d", "ABCD"[i]] for i in range(n)])
    bbh.mkdir()
    _bbh(bbh)
    run = make_run(tmp_path / "run", tokenizer_dir, ModelConfig(vocab_size=500, hf_config=dict(TINY)),
                   eval=EvalConfig(data={"mmlu": str(mmlu), "bbh": str(bbh)}))
    out = tmp_path / "out"
    assert evaluate(capsys, f"untuned:{run}", "--suites", "flan2022_heldout", "--max-examples", 2, "--out", out) == 0
    results = json.loads((out / "results.json").read_text())
    table = results["composites"]["flan2022_heldout"]
    assert list(table["components"]) == ["mmlu", "bbh", "bbh_cot"] and set(results["suites"]) == {"mmlu", "bbh", "bbh_cot"}
    for name, component in table["components"].items():
        assert component["value"] == results["suites"][name]["mean"][component["metric"]]
    assert table["components"]["mmlu"]["metric"] == "accuracy" and table["components"]["bbh"]["metric"] == "exact_match"
    assert table["mean"] == pytest.approx(sum(c["value"] for c in table["components"].values()) / 3)
    assert set(table["not_run"]) == {"mmlu_cot", "gsm8k"} and "--cot-prompts" in table["not_run"]["mmlu_cot"]
    assert results["suites"]["mmlu"]["tasks"]["virology"]["n"] == 2  # --max-examples applies to every component
    report = (out / "report.md").read_text()
    assert "## flan2022_heldout" in report and "| mean of 3 |" in report and "Not run: mmlu_cot" in report


def test_bad_data(hf_dir, tmp_path, capsys):
    base = [hf_dir, "--suites", "flan2022_heldout", "--out", tmp_path / "out", "--data"]
    err = error_of(capsys, *base, f"mmlx={tmp_path}")
    assert "unknown benchmark 'mmlx'" in err and "mmlu, bbh, gsm8k" in err and "did you mean 'mmlu'" in err
    assert "gives 'bbh' twice" in error_of(capsys, *base, f"bbh={tmp_path}", f"bbh={tmp_path}")
    assert "expected BENCHMARK=DIR" in error_of(capsys, *base, str(tmp_path))
    assert f"bbh data directory {tmp_path / 'nope'} does not exist" in error_of(capsys, *base, f"bbh={tmp_path / 'nope'}")
    unread = [hf_dir, "--suites", "demo", "--out", tmp_path / "out"]
    assert "--data is read by the flan2022_heldout suite only" in error_of(capsys, *unread, "--data", f"bbh={tmp_path}")
    assert "--cot-prompts is read by" in error_of(capsys, *unread, "--cot-prompts", cot_file(tmp_path))


def test_eval_data_in_the_config_is_checked():
    from flanforge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"eval.data: unknown benchmark 'bhh' \(benchmarks: mmlu, bbh, gsm8k\).*'bbh'"):
        EvalConfig(data={"bhh": "/data/bbh"})
    assert EvalConfig(data={"bbh": "/data/bbh"}).data == {"bbh": "/data/bbh"}


def test_the_periodic_evaluation_runs_the_components_and_logs_their_mean(tokenizer_dir, tmp_path):
    """``eval.suites: [flan2022_heldout]`` during training: its components from eval.data, and the table's mean
    as ``eval/flan2022_heldout/mean`` beside each component's."""
    from flanforge.launcher.config import Config
    from flanforge.launcher.evaluation.periodic import PeriodicEval, scalars
    from flanforge.launcher.ranks.layout import RankLayout
    from flanforge.launcher.training.context import RunContext
    from flanforge.launcher.training.rundir import RunDir
    from flanforge.mixtures.registry import load_mixture
    from flanforge.model.tokenizer import load_tokenizer

    bbh = tmp_path / "bbh_data"
    bbh.mkdir()
    _bbh(bbh)
    cfg = Config(output_dir=str(tmp_path / "run"), eval=EvalConfig(suites=["flan2022_heldout"], data={"bbh": str(bbh)}))
    layout = RankLayout(rank=0, world_size=1, local_rank=0, local_world_size=1, node_rank=0,
                        master_addr="127.0.0.1", master_port=0, launcher="single")
    hook = PeriodicEval(RunContext(cfg, RunDir(tmp_path / "run"), layout, None), load_mixture("demo"),
                        load_tokenizer(tokenizer_dir))
    hook._build()
    assert [s.name for s in hook.suites] == ["bbh", "bbh_cot"]
    assert set(hook.plans["flan2022_heldout"].not_run) == {"mmlu", "mmlu_cot", "gsm8k"}
    table = {"components": {"bbh": {"metric": "exact_match", "value": 40.0},
                            "bbh_cot": {"metric": "exact_match", "value": 20.0}}, "mean": 30.0, "not_run": {}}
    assert scalars([], {"all": 1.5}, {"flan2022_heldout": table}) == {"eval/flan2022_heldout/mean": 30.0,
                                                                      "val/loss": 1.5}
    assert "eval/flan2022_heldout/mean" not in scalars([], {}, {"flan2022_heldout": {**table, "mean": None}})
