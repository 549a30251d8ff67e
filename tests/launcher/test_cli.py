"""Expected user mistakes: one-line error on stderr, non-zero exit, no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
FLANFORGE = str(Path(sys.executable).with_name("flanforge"))
DEMO = str(ROOT / "configs" / "demo.yaml")


def flanforge(*args, cwd=None):
    return subprocess.run([FLANFORGE, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_missing_config_file(tmp_path):
    proc = flanforge("train", "--config", str(tmp_path / "missing.yaml"))
    assert_one_line_error(proc, "config file not found", "missing.yaml")


def test_unknown_key_suggests_closest(tmp_path):
    proc = flanforge("train", "--config", DEMO, "train.max_stesp=3", f"output_dir={tmp_path}/run")
    assert_one_line_error(proc, "train.max_stesp", "did you mean 'train.max_steps'")


def test_wrong_type(tmp_path):
    proc = flanforge("train", "--config", DEMO, "train.micro_batch_size=big", f"output_dir={tmp_path}/run")
    assert_one_line_error(proc, "train.micro_batch_size", "expected int")


def test_model_directory_missing(tmp_path):
    proc = flanforge("train", "--config", DEMO, f"model.path={tmp_path}/no-model", f"output_dir={tmp_path}/run")
    assert_one_line_error(proc, "model.path", "no-model")


def test_output_dir_with_a_different_run_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    old = yaml.safe_load(Path(DEMO).read_text())
    old["output_dir"] = str(run)
    old["model"]["hf_config"]["hidden_size"] = 512
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    before = (run / "config.yaml").read_text()
    proc = flanforge("train", "--config", DEMO, f"output_dir={run}")
    assert_one_line_error(proc, "different config", "model.hf_config.hidden_size", "another output_dir")
    assert (run / "config.yaml").read_text() == before  # nothing overwritten


def test_unknown_mixture_lists_closest(tmp_path):
    proc = flanforge("train", "--config", DEMO, "mixture.name=dmeo", f"output_dir={tmp_path}/run")
    assert_one_line_error(proc, "dmeo", "demo")


def test_help_lists_subcommands():
    proc = flanforge("--help")
    assert proc.returncode == 0
    assert "train" in proc.stdout and "inspect" in proc.stdout


def test_only_the_chosen_subcommand_is_imported():
    probe = ("import json, sys; from flanforge.launcher.cli import build_parser; build_parser(sys.argv[1]); "
             "print(json.dumps([m for m in sys.modules if m.startswith('flanforge.launcher.')]))")
    out = subprocess.run([sys.executable, "-c", probe, "inspect"], capture_output=True, text=True, timeout=120)
    loaded = json.loads(out.stdout)
    assert "flanforge.launcher.commands.inspect" in loaded
    assert not {"flanforge.launcher.training.loop", "flanforge.launcher.export.run", "flanforge.launcher.commands.prepare"} & set(loaded)


def test_top_level_help_lists_every_subcommand():
    proc = flanforge("--help")
    assert proc.returncode == 0
    for name in ("train", "inspect", "prepare", "export"):
        assert name in proc.stdout


@pytest.mark.parametrize("override, error", [
    ("train.lr=fast", "override 'train.lr=fast': train.lr: expected float, got 'fast'"),
    ("model.attention=flx", "override 'model.attention=flx': model.attention: 'flx' is not one of ['auto', "),
    ("model.tokenizer_path=README.md", "model.tokenizer_path: README.md: not a SentencePiece model ("),
    ("mixture.weights.nothing=1", "mixture 'demo': no member 'nothing' to override"),
])
def test_train_reports_a_mistake_before_importing_torch(tmp_path, override, error):
    """A typo costs a second: config, paths and mixture are checked before torch, transformers or a rank."""
    probe = ("import json, sys; from flanforge.launcher.cli import main; "
             "code = main(['train', '--config', sys.argv[1], 'output_dir=' + sys.argv[2], sys.argv[3]]); "
             "print(json.dumps([code, 'torch' in sys.modules, 'transformers' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe, str(ROOT / "configs" / "demo.yaml"), str(tmp_path), override],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert json.loads(out.stdout) == [2, False, False]
    assert out.stderr.strip().startswith(f"flanforge train: error: {error}")
