"""Checks ``flanforge train`` makes before it starts any rank: a typo costs a second, not a launch.

The config has loaded by then (keys, types, ranges). Here: the model and
tokenizer paths (the tokenizer is loaded, so a path that is not a tokenizer
fails now), the run directory (its config may be resumed, ``latest`` names a
readable checkpoint), and the whole mixture: every task loads, every
template compiles, every source of every split opens and reads, every task
has usable training records (one without any, under the ``skip`` policy and beside other tasks, is skipped
and counted: :func:`usable`), and the rates are finite with some positive; remote shards
(``mixture.shards_dir=s3://...``): the endpoint answers, the credentials are accepted, the bucket
holds a set prepared for this mixture. (The command adds the
metric check and, with ``launch.gpu_memory`` set, the memory plan's: ``commands/train.py``.)
"""

from __future__ import annotations

from flanforge.launcher.training.rundir import RunDir, check_run_dir
from flanforge.launcher.config import Config
from flanforge.mixtures.mixture import Mixture
from flanforge.mixtures.storage import is_remote, open_store
from flanforge.errors import TaskError
from flanforge.mixtures.task import SPLITS


def usable(mixture: Mixture) -> tuple[Mixture, list[str]]:
    """The mixture without its tasks that have no usable train records, and their names: such a task is
    skipped (and counted) when its source's policy is ``skip`` and other tasks remain, else an error naming it."""
    tasks = mixture.tasks()
    empty = [t for t in tasks if t.num_examples("train") == 0]
    for task in empty:
        if getattr(task.source, "policy", "error") != "skip" or len(empty) == len(tasks):
            skipped = f" ({task.bad_records} bad records skipped)" if task.bad_records else ""
            raise TaskError(f"mixture '{mixture.name}': task '{task.name}' has no usable train records{skipped}")
    names = [t.name for t in empty]
    return mixture.without(set(names)) or mixture, names


def check_mixture(mixture: Mixture, weights: dict[str, float] | None = None) -> Mixture:
    """Read every task's records (every split) and check the rates; a :class:`TaskError` names the culprit.
    Returns the mixture the run trains on (:func:`usable`)."""
    for task in mixture.tasks():
        for split in SPLITS:
            task.records(split)
    mixture, _ = usable(mixture)
    mixture.rates(weights or None)  # finite, >= 0, not all zero
    return mixture


def run_checks(cfg: Config, run_dir: RunDir) -> Mixture:
    """Everything that can be checked without starting a rank; returns the loaded mixture.

    Cheap checks first: the run directory, the model and tokenizer paths and the
    mixture need neither torch nor transformers, whose imports take seconds.
    """
    from flanforge.mixtures.registry import load_mixture
    from flanforge.model.paths import check_paths

    check_run_dir(cfg, run_dir)
    tag = run_dir.latest_tag()
    check_paths(cfg.model)  # loads the configured tokenizer
    mixture = check_mixture(load_mixture(cfg.mixture.name, cfg.mixture.on_bad_record, cfg.mixture.data_dir),
                            cfg.mixture.weights)
    if is_remote(run_dir.shards):  # endpoint, credentials, bucket, and a prepared set of this mixture
        from flanforge.mixtures.streaming.shards import ensure_prepared

        open_store(run_dir.shards, cfg.storage).check_access()
        ensure_prepared(mixture, run_dir.shards, on_bad_member=cfg.mixture.on_bad_record, storage=cfg.storage)

    from flanforge.launcher.training import checkpoint
    from flanforge.model.load import choose_attention

    choose_attention(cfg.model)
    if tag is not None:
        checkpoint.trainer_state(run_dir, tag)
    return mixture
