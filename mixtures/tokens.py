"""What the mixture layer needs of a tokenizer: owned here, so ``mixtures/`` never imports ``model/``.

``flanforge.model.tokenizer.Tokenizer`` satisfies it (any object with these
members does: the protocol is structural).
"""

from __future__ import annotations

from typing import Protocol


class TextTokenizer(Protocol):
    """Text to token ids, without special tokens, and the two special ids packing writes."""

    pad_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...
