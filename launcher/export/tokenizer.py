"""The run's tokenizer in an exported model directory (``export/run.py``): copied, and
a ``tokenizer.json`` converted from a SentencePiece model when it encodes exactly as SentencePiece does."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

# Strings the converted tokenizer must encode exactly as SentencePiece does
# before tokenizer.json is written (plus a sample of the vocabulary itself).
_TOKENIZER_PROBES = (
    "Question: what is 12 + 30? Answer: 42",
    "  Leading spaces,\ttabs\nand new lines  ",
    "Unicode: naïve café, Ωmega, 中文, emoji 🙂, full-width ＡＢＣ, ligature ﬁ.",
    "",
)


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
