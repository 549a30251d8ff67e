"""Where a run's model and tokenizer come from, checked without importing torch or transformers
(``flanforge train`` checks them before any rank starts; ``load.py`` re-exports these)."""

from __future__ import annotations

from pathlib import Path

from flanforge.errors import UserError
from flanforge.model.config import ModelConfig
from flanforge.model.tokenizer import Tokenizer, load_tokenizer


def tokenizer_source(cfg: ModelConfig) -> tuple[str, str] | None:
    """(config key, path) of the tokenizer to load: ``model.tokenizer_path``, else the
    model directory's own; None when there is neither (one is trained on the mixture)."""
    if cfg.tokenizer_path is not None:
        return "model.tokenizer_path", cfg.tokenizer_path
    if cfg.path is not None:
        return "model.path", cfg.path
    return None


def load_configured_tokenizer(cfg: ModelConfig) -> Tokenizer | None:
    """The tokenizer :func:`tokenizer_source` names, or None; a missing or unreadable one is a UserError."""
    source = tokenizer_source(cfg)
    if source is None:
        return None
    key, path = source
    try:
        return load_tokenizer(path)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(f"{key}: {err}") from None


def check_model_path(cfg: ModelConfig) -> None:
    if cfg.path is not None and not (Path(cfg.path) / "config.json").is_file():
        raise UserError(f"model.path: no Hugging Face model directory at {cfg.path} (config.json missing)")


def check_paths(cfg: ModelConfig) -> None:
    """Fail early (before any rank starts), in one line, when a configured model or tokenizer cannot be read."""
    check_model_path(cfg)
    load_configured_tokenizer(cfg)
