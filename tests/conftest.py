"""Shared test set-up: the markers and tiers, and a small Hugging Face ``tokenizer.json``.

Three tiers: ``make test`` (everything but the stress tests: what CI runs), ``make test-fast``
(``--fast``: no test that starts ranks, DeepSpeed's launcher or Slurm; between edits) and
``make test-stress`` (``--stress``: the stress tests only). A test that starts ranks must be marked
``e2e`` (or ``slurm``): under ``--fast`` an unmarked one that tries fails, naming the marker.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

LAUNCHERS = {"deepspeed", "deepspeed.launcher.runner", "deepspeed.launcher.launch", "torchrun", "torch.distributed.run",
             "srun", "sbatch", "salloc", "cluster.sh"}
"""What starts ranks or Slurm jobs: a program (its file name) or a ``python -m`` module."""


def _programs(argv) -> list[str]:
    """What a command line runs: its program, a ``python -m`` module, each command of a shell script."""
    if isinstance(argv, (str, bytes)):
        return [seg.split()[0] for seg in re.split(r"[;&|\n]+", str(argv)) if seg.split()]
    args = [str(a) for a in argv]
    found = args[:1]
    if "-m" in args[:-1]:
        found.append(args[args.index("-m") + 1])
    if args and Path(args[0]).name in ("bash", "sh") and "-c" in args[:-1]:
        found += _programs(args[args.index("-c") + 1])
    return found


def starts_ranks(argv) -> bool:
    """Whether a command line runs one of :data:`LAUNCHERS`."""
    return any(Path(program).name in LAUNCHERS for program in _programs(argv))


class _NoLaunchPopen(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        if starts_ranks(args):
            raise RuntimeError(f"this test starts ranks or Slurm ({' '.join(map(str, args))[:120]}): mark it "
                               f"@pytest.mark.e2e (or slurm) so that it runs in the full tier, not in make test-fast")
        super().__init__(args, *rest, **kwargs)


def pytest_addoption(parser):
    parser.addoption("--stress", action="store_true",
                     help="run the stress tier only (tests marked stress; make test-stress), never part of make test")
    parser.addoption("--fast", action="store_true",
                     help="the between-edits tier (make test-fast): tests marked e2e, slurm or stress are left out, "
                          "and a test that starts ranks anyway fails")


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: starts ranks, DeepSpeed's launcher or processes of a run (tests/e2e)")
    config.addinivalue_line("markers", "slurm: needs a real Slurm started by slurm/cluster.sh")
    config.addinivalue_line("markers", "stress: slow repeated launches under load; only with --stress")
    config.addinivalue_line("markers", "lm_eval: runs lm-evaluation-harness itself (setup.py's test extra); "
                                       "skipped only where it cannot be imported")


def pytest_collection_modifyitems(config, items):
    """Without ``--stress`` the stress tests are deselected (not skipped: no skip to explain); with it,
    everything else is. ``--fast`` also deselects the e2e and slurm tests. Every test under tests/e2e
    must be marked e2e (the marker is what keeps it out of the fast tier)."""
    unmarked = [item.nodeid for item in items if item.nodeid.startswith("tests/e2e/") and not item.get_closest_marker("e2e")]
    if unmarked:
        raise pytest.UsageError(f"tests under tests/e2e without the e2e marker: {unmarked[:5]}")
    stress, fast = config.getoption("--stress"), config.getoption("--fast")
    keep = [item for item in items if (item.get_closest_marker("stress") is not None) == stress
            and not (fast and (item.get_closest_marker("e2e") or item.get_closest_marker("slurm")))]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


@pytest.fixture(autouse=True)
def _no_rank_launch_in_the_fast_tier(request, monkeypatch):
    if request.config.getoption("--fast"):
        monkeypatch.setattr(subprocess, "Popen", _NoLaunchPopen)


BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"


def write_json_tokenizer(out_dir, texts, vocab_size=400):
    """A Llama-3-style byte-level BPE ``tokenizer.json`` (no pad token; its post-processor
    adds BOS, which flanforge must not use) plus its ``tokenizer_config.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, tok.token_to_id(BOS))])
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    # eos in the AddedToken form older transformers wrote (Llama-2/3 configs), bos as a plain string.
    eos = {"__type": "AddedToken", "content": EOS, "lstrip": False, "normalized": False, "rstrip": False,
           "single_word": False}
    config = {"bos_token": BOS, "eos_token": eos, "tokenizer_class": "PreTrainedTokenizerFast"}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config))
    return out_dir


@pytest.fixture(scope="session")
def json_tokenizer_dir(tmp_path_factory):
    texts = [f"Reverse the words: apple river {i} stone cloud tiger {i * 7}. Answer: yes no" for i in range(300)]
    return write_json_tokenizer(tmp_path_factory.mktemp("json_tokenizer"), texts)
