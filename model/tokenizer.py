"""Tokenizers: a SentencePiece model trained on the mixture's text on first use,
or a model's own tokenizer (a SentencePiece model, or a Hugging Face ``tokenizer.json``).

The trained model is saved under ``<output_dir>/tokenizer/`` so a resumed or
exported run uses exactly the same vocabulary.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

from flanforge.files import atomic_write

PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3
SPM_FILE = "spiece.model"
# What a model directory may hold, in the order they are looked for: the
# SentencePiece model is the original wherever both exist (T5, Llama-2).
SPM_FILES = (SPM_FILE, "tokenizer.model")
JSON_FILE = "tokenizer.json"
JSON_CONFIGS = ("tokenizer_config.json", "special_tokens_map.json")
SPECIAL_TOKENS = ("eos_token", "bos_token", "unk_token", "pad_token")  # config keys, in _set_special_ids order


class Tokenizer:
    """What the stream and the model need of a tokenizer: text to ids without
    special tokens, and the special ids (-1 where the tokenizer has none).

    A tokenizer without a pad token (Llama style) pads with EOS: padding is never
    attended to nor trained on.
    """

    path: Path
    vocab_size: int
    eos_id: int
    bos_id: int
    unk_id: int
    pad_id: int

    def _set_special_ids(self, eos: int, bos: int, unk: int, pad: int) -> None:
        if eos < 0:
            raise ValueError(f"{self.path}: the tokenizer has no EOS token")
        self.eos_id, self.bos_id, self.unk_id = eos, bos, unk
        self.pad_id = pad if pad >= 0 else eos
        self.special_ids = {i for i in (self.pad_id, self.eos_id, self.bos_id, self.unk_id) if i >= 0}

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, special tokens left out."""
        return self._decode([i for i in ids if i not in self.special_ids])

    def _decode(self, ids: list[int]) -> str:
        raise NotImplementedError


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model; special ids come from the model. flanforge's own
    models use pad 0, eos 1, bos 2, unk 3 (T5's layout)."""

    def __init__(self, model_file: str | Path):
        self.path = Path(model_file)
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        except (RuntimeError, OSError) as err:  # sentencepiece's "could not parse ModelProto"
            raise ValueError(f"{model_file}: not a SentencePiece model ({' '.join(str(err).split())[:120]})") from None
        self.vocab_size = self.sp.get_piece_size()
        self._set_special_ids(self.sp.eos_id(), self.sp.bos_id(), self.sp.unk_id(), self.sp.pad_id())

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def _decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)


class JsonTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer (``tokenizer.json``, e.g. Llama-3's), read with
    the ``tokenizers`` library. Its special tokens are named in the
    ``tokenizer_config.json`` (or ``special_tokens_map.json``) beside it; text is
    encoded without the tokenizer's own BOS/EOS, as for SentencePiece."""

    def __init__(self, json_file: str | Path):
        from tokenizers import Tokenizer as FastTokenizer

        self.path = Path(json_file)
        try:
            self.tok = FastTokenizer.from_file(str(json_file))
        except Exception as err:  # the library raises a bare Exception on a malformed file
            raise ValueError(f"{json_file}: not a tokenizer.json the tokenizers library reads: {err}") from None
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        names = self._special_token_names()
        self._set_special_ids(*(self._token_id(names, key) for key in SPECIAL_TOKENS))

    def _special_token_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for config in reversed(JSON_CONFIGS):  # tokenizer_config.json wins
            path = self.path.with_name(config)
            if not path.is_file():
                continue
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {err.lineno}: {err.msg}") from None
            for key in SPECIAL_TOKENS:
                value = data.get(key)
                if isinstance(value, dict):  # {"content": "<|end_of_text|>", ...}
                    value = value.get("content")
                if isinstance(value, str):
                    names[key] = value
        if "eos_token" not in names:
            raise ValueError(f"{self.path}: no eos_token in {' or '.join(JSON_CONFIGS)} beside it")
        return names

    def _token_id(self, names: dict[str, str], key: str) -> int:
        if key not in names:
            return -1
        token_id = self.tok.token_to_id(names[key])
        if token_id is None:
            raise ValueError(f"{self.path}: {key} {names[key]!r} is not in the vocabulary")
        return token_id

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int) -> Tokenizer:
    """Train a unigram SentencePiece model on ``texts`` and save it to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        bos_id=BOS_ID,
        unk_id=UNK_ID,
        character_coverage=1.0,
        byte_fallback=True,
        split_digits=True,  # every digit its own piece, as Llama's tokenizer: "45" and "45]" share "4" "5"
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    atomic_write(out_dir / SPM_FILE, buf.getvalue())
    return SentencePieceTokenizer(out_dir / SPM_FILE)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer file (``*.json``: a Hugging Face ``tokenizer.json``; else a
    SentencePiece model), or a directory holding one of ``spiece.model``,
    ``tokenizer.model``, ``tokenizer.json`` (looked for in that order)."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in (*SPM_FILES, JSON_FILE) if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"tokenizer not found: {path} holds none of {', '.join((*SPM_FILES, JSON_FILE))}")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer not found: {path}")
    return JsonTokenizer(path) if path.suffix == ".json" else SentencePieceTokenizer(path)
