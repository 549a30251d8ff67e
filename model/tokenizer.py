"""Tokenizers: a SentencePiece model trained on the mixture's text on first use.

The trained model is saved under ``<output_dir>/tokenizer/`` so a resumed or
exported run uses exactly the same vocabulary.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3
SPM_FILE = "spiece.model"


class Tokenizer:
    """A thin wrapper over a SentencePiece processor; special ids come from the model.

    flanforge's own models use pad 0, eos 1, bos 2, unk 3 (T5's layout). A
    model without a pad piece (Llama-2 style) pads with EOS: padding is never
    attended to nor trained on.
    """

    def __init__(self, model_file: str | Path):
        self.path = Path(model_file)
        self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.eos_id, self.bos_id, self.unk_id = self.sp.eos_id(), self.sp.bos_id(), self.sp.unk_id()
        if self.eos_id < 0:
            raise ValueError(f"{model_file}: the SentencePiece model has no EOS piece")
        self.pad_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else self.eos_id
        self.special_ids = {i for i in (self.pad_id, self.eos_id, self.bos_id, self.unk_id) if i >= 0}

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i for i in ids if i not in self.special_ids])


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
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    tmp = out_dir / (SPM_FILE + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(out_dir / SPM_FILE)
    return Tokenizer(out_dir / SPM_FILE)


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a SentencePiece model file, or a directory holding ``spiece.model``."""
    path = Path(path)
    if path.is_dir():
        path = path / SPM_FILE
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer not found: {path}")
    return Tokenizer(path)
