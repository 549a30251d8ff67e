"""A run's ZeRO shards as a Hugging Face model directory (``flanforge export``: ``commands/export.py``).

The weights are DeepSpeed's own consolidation of the sharded checkpoint
(``deepspeed.utils.zero_to_fp32``, the same code as the ``zero_to_fp32.py``
script DeepSpeed leaves next to the checkpoints) of the tag ``latest`` names,
or ``--tag``. They are loaded with ``strict=True`` into the architecture that
the run's own ``config.yaml`` and tokenizer describe (``build_model``), so no
weight is silently dropped or left at its random init, and written with
``save_pretrained`` as safetensors. ``DIR`` then holds::

    config.json  generation_config.json  model.safetensors
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

The directory is built next to ``DIR`` and renamed into place, so an
interrupted export leaves no half-written model behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from flanforge.errors import UserError, closest_first
from flanforge.launcher.training.rundir import RunDir

WRAPPER_PREFIX = "hf."  # TrainingModel keeps the HF model as `self.hf`
# Strings the converted tokenizer must encode exactly as SentencePiece does
# before tokenizer.json is written (plus a sample of the vocabulary itself).
_TOKENIZER_PROBES = (
    "Question: what is 12 + 30? Answer: 42",
    "  Leading spaces,\ttabs\nand new lines  ",
    "Unicode: naïve café, Ωmega, 中文, emoji 🙂, full-width ＡＢＣ, ligature ﬁ.",
    "",
)


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


def consolidate(run_dir: RunDir, tag: str) -> dict[str, Any]:
    """One fp32 state dict (keys as in the engine's module: ``hf.*``) from the tag's ZeRO shards."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from tqdm import tqdm

    from flanforge.launcher.training.checkpoint import UNREADABLE, unreadable

    root = run_dir.checkpoints
    if not any((root / tag).glob("*_optim_states.pt")):
        raise UserError(f"{root / tag} holds no ZeRO optimizer shards (*_optim_states.pt): "
                        f"export reads checkpoints of ZeRO stage 1, 2 or 3 runs")
    try:
        # DeepSpeed reports what it reads with print(): keep stdout for the result.
        with contextlib.redirect_stdout(sys.stderr):
            lazy = get_fp32_state_dict_from_zero_checkpoint(str(root), tag=tag, lazy_mode=True)
        # Materialise tensor by tensor (ZeRO-3: gather the partitions) behind a progress
        # bar; names DeepSpeed recorded as shared keep sharing one tensor, as its own
        # `to_torch_tensor` does.
        state: dict[str, Any] = {}
        done: dict[int, str] = {}
        for name, lazy_tensor in tqdm(lazy.items(), desc=f"consolidating {tag}", unit="tensor", file=sys.stderr):
            first = done.setdefault(id(lazy_tensor), name)
            state[name] = state[first] if first != name else lazy_tensor.contiguous()
    except UNREADABLE as err:
        raise unreadable(run_dir, tag, err) from None
    return state


def to_hf_state_dict(state: dict[str, Any], model) -> dict[str, Any]:
    """Engine keys (``hf.*``) to the HF model's keys, with every tied name filled in.

    Keys outside ``hf.`` must be second names of an ``hf.`` tensor (TrainingModel
    holds the LM head as ``head`` too). Names the HF model ties to one parameter
    (input/output embeddings with ``tie_word_embeddings``, T5's ``shared``) are
    filled from whichever of them the checkpoint holds; two different values for
    one tied parameter are an error, not a silent pick.
    """
    import torch

    hf = {k[len(WRAPPER_PREFIX):]: v for k, v in state.items() if k.startswith(WRAPPER_PREFIX)}
    ids = {id(v) for v in hf.values()}
    stray = [k for k, v in state.items() if not k.startswith(WRAPPER_PREFIX) and id(v) not in ids]
    if stray:
        raise UserError(f"the checkpoint holds weights outside the model (not under '{WRAPPER_PREFIX}'): "
                        f"{', '.join(sorted(stray)[:5])}")
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    for names in groups.values():
        present = [n for n in names if n in hf]
        if not present or len(names) == 1:
            continue
        ref = hf[present[0]]
        for other in present[1:]:
            if hf[other] is not ref and not torch.equal(hf[other], ref):
                raise UserError(f"tied weights {present[0]} and {other} differ in the checkpoint")
        for name in names:
            hf.setdefault(name, ref)
    return hf


def load_strict(model, state: dict[str, Any]) -> None:
    """``load_state_dict(strict=True)``, its complaint reported in one line."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        missing = sorted(set(model.state_dict()) - set(state))
        unexpected = sorted(set(state) - set(model.state_dict()))
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:5])}" if missing else "",
            f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
        ) if part) or str(err).splitlines()[0]
        raise UserError(f"the checkpoint does not fit the model the run's config describes: {detail}") from None


# --------------------------------------------------------------------------- tokenizer


def hf_tokenizer(spm_file: Path, arch: str, model_max_length: int):
    """A fast HF tokenizer converted from the SentencePiece model (check it with :func:`first_mismatch`),
    stating the tokens a sequence may hold (``model_max_length``: other tools would warn and guess)."""
    import sentencepiece as spm
    from tokenizers import decoders, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SpmConverter

    from flanforge.model.tokenizer import load_tokenizer

    class _Spm:  # what SpmConverter reads from a slow tokenizer
        vocab_file = str(spm_file)

    class _Converter(SpmConverter):
        handle_byte_fallback = True  # flanforge trains SentencePiece with byte fallback

        def decoder(self, replacement, add_prefix_space):
            return decoders.Sequence([decoders.Replace(replacement, " "), decoders.ByteFallback(),
                                      decoders.Fuse(), decoders.Strip(content=" ", left=1)])

    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    ids = load_tokenizer(spm_file)
    backend = _Converter(_Spm()).converted()
    eos = sp.id_to_piece(ids.eos_id)
    if arch == "t5":
        # T5 inputs end with </s> in training (mixtures/streaming/packing.py); tokenizer(text) does the same.
        backend.post_processor = processors.TemplateProcessing(
            single=["$A", eos], pair=["$A", eos, "$B", eos], special_tokens=[(eos, ids.eos_id)])
    piece = lambda i: sp.id_to_piece(i) if i >= 0 else None  # noqa: E731  (-1: the model has none)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=piece(ids.pad_id), eos_token=eos,
        bos_token=piece(ids.bos_id), unk_token=piece(ids.unk_id), model_max_length=model_max_length,
    )


def first_mismatch(tok, spm_file: Path) -> str | None:
    """The first probe text ``tok`` encodes differently from SentencePiece, or None."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_file))
    # Every piece spelled out, but for control and byte pieces ("</s>", "<0x41>"):
    # SentencePiece never reads those from text, the converted tokenizer does.
    vocab = " ".join(sp.id_to_piece(i).replace("\u2581", " ") for i in range(sp.get_piece_size())
                     if not (sp.is_control(i) or sp.is_byte(i) or sp.is_unknown(i)))
    for text in (*_TOKENIZER_PROBES, vocab):
        if tok(text, add_special_tokens=False)["input_ids"] != sp.encode(text):
            return text
    return None


def write_tokenizer(tokenizer, out: Path, arch: str, model_max_length: int) -> bool:
    """Write the run's tokenizer to ``out``; True if that includes a ``tokenizer.json``.

    A ``tokenizer.json`` tokenizer is copied with the configs beside it (its
    ``tokenizer_config.json`` given ``model_max_length`` where it states none). A
    SentencePiece model is copied, and a ``tokenizer.json`` converted from it is
    added when the conversion encodes exactly as SentencePiece does.
    """
    from flanforge.model.tokenizer import JSON_CONFIGS, JSON_FILE, SPM_FILE, JsonTokenizer

    if isinstance(tokenizer, JsonTokenizer):
        for name in (JSON_FILE, *JSON_CONFIGS):
            if tokenizer.path.with_name(name).is_file():
                shutil.copyfile(tokenizer.path.with_name(name), out / name)
        config_file = out / JSON_CONFIGS[0]  # tokenizer_config.json
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        if "model_max_length" not in config:
            config_file.write_text(json.dumps({**config, "model_max_length": model_max_length}, indent=2) + "\n")
        return True
    spm_file = tokenizer.path
    shutil.copyfile(spm_file, out / SPM_FILE)
    try:
        tok = hf_tokenizer(spm_file, arch, model_max_length)
        bad = first_mismatch(tok, spm_file)
    except Exception as err:  # an spm model the converter does not handle
        bad = f"conversion failed: {type(err).__name__}: {err}"
    if bad is not None:
        print(f"flanforge export: note: no tokenizer.json, the converted tokenizer does not encode "
              f"{bad[:60]!r} as {SPM_FILE} does; load {SPM_FILE} with sentencepiece", file=sys.stderr)
        return False
    tok.save_pretrained(out)
    return True


# --------------------------------------------------------------------------- export


def _default_permissions(directory: Path) -> None:
    """mkdtemp makes a private directory; give it (and its files) the modes a plain mkdir/open would."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.iterdir():
        path.chmod(0o666 & ~umask)


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


def export_run(run_dir: RunDir, out_dir: str | Path, tag: str | None = None, *, overwrite: bool = False) -> Path:
    """Export checkpoint ``tag`` (default: ``latest``) of the run in ``run_dir`` to ``out_dir``; returns ``out_dir``."""
    from flanforge.model.load import count_parameters

    tag = resolve_tag(run_dir, tag)
    out = check_out_dir(out_dir, run_dir, overwrite)
    model, cfg, tokenizer = checkpoint_model(run_dir, tag)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        has_json = write_tokenizer(tokenizer, tmp, cfg.model.arch, cfg.mixture.seq_len)
        _default_permissions(tmp)
        if out.exists():
            shutil.rmtree(out)  # empty, or --overwrite
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"flanforge export: {run_dir.root} @ {tag} (ZeRO-{cfg.deepspeed.zero_stage}, {cfg.model.arch}, "
          f"{count_parameters(model) / 1e6:.2f}M parameters) -> {out}"
          + ("" if has_json else f" (tokenizer: {tokenizer.path.name} only)"), file=sys.stderr)
    return out
