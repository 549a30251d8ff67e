"""A run's ZeRO shards as a Hugging Face model directory (``flanforge export``: ``commands/export.py``).

The weights are DeepSpeed's own consolidation of the sharded checkpoint
(``deepspeed.utils.zero_to_fp32``, the same code as the ``zero_to_fp32.py``
script DeepSpeed leaves next to the checkpoints) of the tag ``latest`` names,
or ``--tag``, read lazily. Their names and shapes are checked, as ``strict=True``
loading would, against the architecture the run's own ``config.yaml`` and tokenizer
describe (``build_model`` on the meta device), so no weight is silently dropped or
left at its random init. They stream into sharded safetensors of ``--max-shard-size``
in ``--dtype`` (default: the run's precision), one shard in memory at a time
(``export/shards.py``); the disk must have room for them before anything
is written. ``DIR`` then holds::

    config.json  generation_config.json  model.safetensors (or model-0000K-of-0000N.safetensors
                                         and model.safetensors.index.json)
    spiece.model                 the run's SentencePiece model, byte for byte
    tokenizer.json               a fast tokenizer converted from spiece.model, checked to
    tokenizer_config.json        encode as it does (T5: appends </s>, as training did)

(a run on a model's ``tokenizer.json`` gets that file and its configs, copied).

and loads offline with ``AutoModelForCausalLM`` (``model.arch: decoder``) or
``AutoModelForSeq2SeqLM`` (``t5``), and ``AutoTokenizer``.

The converted tokenizer encodes text as SentencePiece does, except text that
spells a control or byte piece literally (``</s>``, ``<0x41>``): it reads that
as the piece, SentencePiece as characters. When the conversion is not faithful
(checked on probe texts and the whole vocabulary), only ``spiece.model`` is
written, to be loaded with ``sentencepiece``.

The directory is built next to ``DIR`` and renamed into place (``flanforge/files.py``:
``atomic_directory``), so an export interrupted, or out of disk space, leaves no
half-written model behind: ``DIR`` as it was, or nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import shutil
import sys
from pathlib import Path
from typing import Any

from flanforge.errors import UserError, closest_first
from flanforge.files import atomic_directory
from flanforge.launcher.training import faults
from flanforge.launcher.training.rundir import RunDir

WRAPPER_PREFIX = "hf."  # TrainingModel keeps the HF model as `self.hf`


# --------------------------------------------------------------------------- checks


def resolve_tag(run_dir: RunDir, tag: str | None = None) -> str:
    """The checkpoint tag to export: ``tag`` (a tag name or a step number) or the one ``latest`` names."""
    run_dir.check_is_run()
    root = run_dir.checkpoints
    tags = run_dir.complete_tags()
    if not tags and tag is None:
        raise UserError(f"{run_dir.root} has no checkpoints yet ({root} holds no complete checkpoint)")
    if tag is None:
        found = run_dir.latest_tag()  # a UserError when `latest` names a missing or incomplete tag
        if found is None:
            raise UserError(f"{root} has no 'latest' file; pick a checkpoint with --tag: {', '.join(reversed(tags))}")
        return found
    if tag.isdigit():
        tag = RunDir.tag_for(int(tag))
    if tag in tags:
        return tag
    if (root / tag).is_dir():
        raise UserError(f"checkpoint {root / tag} is incomplete (its save was interrupted); "
                        f"complete ones: {', '.join(reversed(tags)) or 'none'}")
    listed = ", ".join(closest_first(tag, tags)) if tags else "none"
    raise UserError(f"no checkpoint '{tag}' in {root}; available (closest first): {listed}")


def check_out_dir(out_dir: str | Path, run_dir: RunDir, overwrite: bool) -> Path:
    """``out_dir`` as an absolute path, refused when it exists and is not empty (unless ``overwrite``)."""
    out, run = Path(out_dir).resolve(), run_dir.root.resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a directory")
    if out == run or out in run.parents or run in out.parents:
        raise UserError(f"--out {out_dir} must lie outside the run directory {run_dir.root}")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out_dir} exists and is not empty; choose another directory or pass --overwrite")
    return out


# --------------------------------------------------------------------------- weights


@contextlib.contextmanager
def _reading(run_dir: RunDir, tag: str):
    """A shard that cannot be read (cut short, damaged) becomes one UserError naming the checkpoint."""
    from flanforge.launcher.training.checkpoint import UNREADABLE, unreadable

    try:
        yield
    except UNREADABLE as err:
        raise unreadable(run_dir, tag, err) from None


def lazy_state(run_dir: RunDir, tag: str) -> dict[str, Any]:
    """The tag's fp32 weights as DeepSpeed's lazy tensors (keys as in the engine's module: ``hf.*``);
    ``.contiguous()`` reads one. Names DeepSpeed recorded as shared share one lazy tensor."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    root = run_dir.checkpoints
    if not any((root / tag).glob("*_optim_states.pt")):
        raise UserError(f"{root / tag} holds no ZeRO optimizer shards (*_optim_states.pt): "
                        f"export reads checkpoints of ZeRO stage 1, 2 or 3 runs")
    # DeepSpeed reports what it reads with print(): keep stdout for the result.
    with _reading(run_dir, tag), contextlib.redirect_stdout(sys.stderr):
        return get_fp32_state_dict_from_zero_checkpoint(str(root), tag=tag, lazy_mode=True)


def consolidate(run_dir: RunDir, tag: str) -> dict[str, Any]:
    """One fp32 state dict (keys as in the engine's module: ``hf.*``) from the tag's ZeRO shards."""
    from tqdm import tqdm

    lazy = lazy_state(run_dir, tag)
    # Materialise tensor by tensor (ZeRO-3: gather the partitions) behind a progress
    # bar; names DeepSpeed recorded as shared keep sharing one tensor, as its own
    # `to_torch_tensor` does.
    state: dict[str, Any] = {}
    done: dict[int, str] = {}
    with _reading(run_dir, tag):
        for name, lazy_tensor in tqdm(lazy.items(), desc=f"consolidating {tag}", unit="tensor", file=sys.stderr):
            first = done.setdefault(id(lazy_tensor), name)
            state[name] = state[first] if first != name else lazy_tensor.contiguous()
    return state


def hf_sources(state: dict[str, Any], model, materialise=lambda tensor: tensor) -> dict[str, str]:
    """Each of the HF model's keys -> the key of ``state`` (engine keys, ``hf.*``) its weight comes from.

    Keys outside ``hf.`` must be second names of an ``hf.`` tensor (TrainingModel
    holds the LM head as ``head`` too). Names the HF model ties to one parameter
    (input/output embeddings with ``tie_word_embeddings``, T5's ``shared``) are
    filled from whichever of them the checkpoint holds; two different values for
    one tied parameter (compared after ``materialise``) are an error, not a silent pick.
    """
    import torch

    hf = {k[len(WRAPPER_PREFIX):]: k for k in state if k.startswith(WRAPPER_PREFIX)}
    ids = {id(state[k]) for k in hf.values()}
    stray = [k for k, v in state.items() if not k.startswith(WRAPPER_PREFIX) and id(v) not in ids]
    if stray:
        raise UserError(f"the checkpoint holds weights outside the model (not under '{WRAPPER_PREFIX}'): "
                        f"{', '.join(sorted(stray)[:5])}")
    for names in tied_groups(model):
        present = [n for n in names if n in hf]
        if not present or len(names) == 1:
            continue
        ref = state[hf[present[0]]]
        for other in present[1:]:
            value = state[hf[other]]
            if value is not ref and not torch.equal(materialise(value), materialise(ref)):
                raise UserError(f"tied weights {present[0]} and {other} differ in the checkpoint")
        for name in names:
            hf.setdefault(name, hf[present[0]])
    return hf


def tied_groups(model) -> list[list[str]]:
    """The model's state-dict keys grouped by the tensor they name (tied weights share a group), in order."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return list(groups.values())


def to_hf_state_dict(state: dict[str, Any], model) -> dict[str, Any]:
    """Engine keys (``hf.*``) to the HF model's keys, with every tied name filled in (:func:`hf_sources`)."""
    return {name: state[source] for name, source in hf_sources(state, model).items()}


def _mismatch(model, names) -> str:
    """The keys ``names`` lacks or has beyond the model's, in a few words ("" when they match)."""
    missing = sorted(set(model.state_dict()) - set(names))
    unexpected = sorted(set(names) - set(model.state_dict()))
    return "; ".join(part for part in (
        f"missing {', '.join(missing[:5])}" if missing else "",
        f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
    ) if part)


def load_strict(model, state: dict[str, Any]) -> None:
    """``load_state_dict(strict=True)``, its complaint reported in one line."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise _unfit(_mismatch(model, state) or str(err).splitlines()[0]) from None


def _unfit(detail: str) -> UserError:
    return UserError(f"the checkpoint does not fit the model the run's config describes: {detail}")


def check_fit(model, lazy: dict[str, Any], sources: dict[str, str]) -> None:
    """What ``load_state_dict(strict=True)`` checks, without reading a weight: the keys and the shapes."""
    detail = _mismatch(model, sources)
    shapes = model.state_dict()
    wrong = [f"{name} {tuple(lazy[src].shape)} (the model's: {tuple(shapes[name].shape)})"
             for name, src in sources.items() if tuple(lazy[src].shape) != tuple(shapes[name].shape)]
    if detail or wrong:
        raise _unfit(detail or f"shape of {wrong[0]}")


# --------------------------------------------------------------------------- export


def load_run(run_dir: RunDir):
    """``(config, tokenizer)`` of the run in ``run_dir``, the tokenizer found as training found it."""
    from flanforge.errors import ConfigError
    from flanforge.launcher.config import load_config
    from flanforge.model.load import load_configured_tokenizer
    from flanforge.model.tokenizer import load_tokenizer

    try:
        cfg = load_config(run_dir.config)
    except ConfigError as err:
        raise UserError(f"{run_dir.config} no longer loads: {err}") from None
    # launcher/training/data.py: prepare_tokenizer
    try:
        tokenizer = load_configured_tokenizer(cfg.model) or load_tokenizer(run_dir.tokenizer)
    except FileNotFoundError:
        raise UserError(f"the run's tokenizer is missing: {run_dir.tokenizer}") from None
    return cfg, tokenizer


def checkpoint_model(run_dir: RunDir, tag: str):
    """``(model, config, tokenizer)``: the run's architecture with checkpoint ``tag``'s consolidated weights."""
    from flanforge.model.load import build_model

    cfg, tokenizer = load_run(run_dir)
    state = consolidate(run_dir, tag)
    # Architecture only: the weights all come from the checkpoint.
    model = build_model(dataclasses.replace(cfg.model, gradient_checkpointing=False), tokenizer, cfg.seed,
                        training=False)
    load_strict(model, to_hf_state_dict(state, model))
    return model.eval(), cfg, tokenizer


DEFAULT_SHARD_SIZE = "5GB"


def check_disk(out: Path, needed: int, largest: int) -> None:
    """Refuse before writing when the disk that will hold ``out`` has fewer than ``needed`` bytes free,
    or a file of ``largest`` bytes is over this process's file-size limit (``ulimit -f``)."""
    free = shutil.disk_usage(out.parent).free
    if free < needed:
        raise UserError(f"--out {out}: the export needs {needed} bytes ({needed / 1e9:.2f} GB), "
                        f"its disk has {free} free")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and largest > limit:
        raise UserError(f"--out {out}: the export writes a file of {largest} bytes, over the file-size limit "
                        f"(ulimit -f) of {limit} bytes; raise the limit or lower --max-shard-size")


def _weights(run_dir: RunDir, tag: str, model):
    """``(lazy, sources, shapes)``: the tag's lazy tensors, the model's key -> checkpoint key, and the
    shape of each key to write (one name per tied group), checked against ``model``."""
    lazy = lazy_state(run_dir, tag)
    sources = hf_sources(lazy, model, materialise=lambda lazy_tensor: lazy_tensor.contiguous())
    check_fit(model, lazy, sources)
    return lazy, sources, {names[0]: tuple(lazy[sources[names[0]]].shape) for names in tied_groups(model)}


def _write_model(model, weights, tmp: Path, dtype: str, max_bytes: int, progress: str) -> None:
    """The weights (:func:`_weights`, as sharded safetensors) and the model's configs into ``tmp``."""
    from flanforge.launcher.export.shards import DTYPES, write_shards

    lazy, sources, shapes = weights
    write_shards(tmp, shapes, lambda name: lazy[sources[name]].contiguous(), DTYPES[dtype], max_bytes, progress)
    model.config.dtype = DTYPES[dtype]
    model.config.architectures = [type(model).__name__]  # as save_pretrained records it
    model.config.save_pretrained(tmp)
    if model.can_generate():
        model.generation_config.save_pretrained(tmp)


def export_run(run_dir: RunDir, out_dir: str | Path, tag: str | None = None, *, overwrite: bool = False,
               dtype: str | None = None, max_shard_size: str = DEFAULT_SHARD_SIZE) -> Path:
    """Export checkpoint ``tag`` (default: ``latest``) of the run in ``run_dir`` to ``out_dir`` as
    ``dtype`` (default: the run's ``train.precision``, ``auto`` resolved on this machine) safetensors shards of at most ``max_shard_size``
    (a larger tensor has a shard of its own); returns ``out_dir``. The weights stream from the ZeRO
    shards into one output shard at a time (``export/shards.py``)."""
    from flanforge.sizes import parse_bytes
    from flanforge.launcher.export.shards import DTYPES, plan_shards, tensor_bytes
    from flanforge.launcher.export.tokenizer import write_tokenizer
    from flanforge.model.load import build_model, count_parameters

    tag = resolve_tag(run_dir, tag)
    out = check_out_dir(out_dir, run_dir, overwrite)
    max_bytes = parse_bytes(max_shard_size, "--max-shard-size")
    cfg, tokenizer = load_run(run_dir)
    if dtype is None:  # the run's precision; ``auto`` as it resolves here (bf16 on a GPU node that has it)
        import torch

        from flanforge.launcher.training.engine import training_precision

        dtype = training_precision(cfg.train.precision, "cuda" if torch.cuda.is_available() else "cpu")
    # The architecture only, on the meta device: its keys, shapes, ties and configs.
    model = build_model(dataclasses.replace(cfg.model, gradient_checkpointing=False), tokenizer, cfg.seed,
                        training=False, meta=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    weights = _weights(run_dir, tag, model)
    sizes = tensor_bytes(weights[2], DTYPES[dtype])
    check_disk(out, sum(sizes.values()), max(sum(sizes[n] for n in names) for names in plan_shards(sizes, max_bytes)))
    with atomic_directory(out, replace=True) as tmp:  # an existing out is empty, or --overwrite
        with _reading(run_dir, tag):
            _write_model(model, weights, tmp, dtype, max_bytes, progress=f"consolidating {tag}")
        faults.signal_mid_write()
        has_json = write_tokenizer(tokenizer, tmp, cfg.model.arch, cfg.mixture.seq_len)
    print(f"flanforge export: {run_dir.root} @ {tag} (ZeRO-{cfg.deepspeed.zero_stage}, {cfg.model.arch}, "
          f"{count_parameters(model) / 1e6:.2f}M parameters, {dtype}) -> {out}"
          + ("" if has_json else f" (tokenizer: {tokenizer.path.name} only)"), file=sys.stderr)
    return out
