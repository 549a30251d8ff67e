"""Attention over packed rows: the registered implementations, and ``auto``'s choice among them.

A packed row holds several examples; position ids that restart per example do not by
themselves stop attention across examples. Each implementation keeps a query inside its
own segment (and, when causal, its own past). One file each, one registered instance:

    sdpa_mask   a dense 4D float mask ``(B, 1, Tq, Tk)`` through transformers' ``sdpa`` path
    eager_mask  the same mask through transformers' ``eager`` path (matmul + softmax)
    flex        FlexAttention with a block-sparse ``BlockMask`` from the segment ids
    segments    no mask: causal SDPA on each example of a row alone, from its token range

An implementation (``base.Attention``) says which ``attention_mask`` it takes
(``mask(q_segments, k_segments, causal, dtype)``; None: the examples' ranges instead), its
transformers attention function if transformers has none (``forward``, registered with
transformers' ``AttentionInterface`` by :func:`use`), why it cannot run on a device for a
model (``unavailable_reason``), and how much ``auto`` prefers it for training and for
evaluation (``training_priority``, ``evaluation_priority``; None: never).

``auto`` (:func:`resolve`, here and nowhere else) picks the registered implementation of
highest priority that can run: for training ``flex`` (30) on CUDA when the model allows it,
``segments`` (20) for a decoder, else ``sdpa_mask`` (10); for evaluation ``sdpa_mask``.
Priorities are unique (:func:`register` refuses a tie), so the choice never depends on the
order of registration.

Adding an implementation: a file here with an ``Attention`` subclass that ends with
``register(MyAttention())``, and one import line below. ``model.attention`` accepts every
registered name (``model/config.py`` checks it against :func:`choices`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flanforge.model.attention.base import (  # noqa: F401  (the package's API)
    Attention,
    AttentionUnavailable,
    choices,
    get,
    names,
    register,
    registered,
    unregister,
)
from flanforge.model.attention.masks import DenseMask, segment_mask, segment_ranges, tree_mask  # noqa: F401

# The built-in implementations, each registering itself; errors list them in this order.
from flanforge.model.attention import sdpa_mask  # noqa: F401
from flanforge.model.attention import eager_mask  # noqa: F401
from flanforge.model.attention import flex  # noqa: F401
from flanforge.model.attention import segments  # noqa: F401

if TYPE_CHECKING:
    import torch


def unavailable_reason(name: str, device_type: str, *, training: bool, dropout: float,
                       arch: str = "decoder") -> str | None:
    """Why implementation ``name`` cannot run on ``device_type`` for this model, or None if it can."""
    return get(name).unavailable_reason(device_type, training=training, dropout=dropout, arch=arch)


def resolve(requested: str, device_type: str, *, training: bool = True, dropout: float = 0.0,
            arch: str = "decoder") -> str:
    """The implementation to use: ``requested``, or for ``auto`` the best one for the device.

    Raises :class:`AttentionUnavailable` (one line, naming what is available) when
    the requested implementation cannot run on ``device_type``.
    """
    reasons = {name: unavailable_reason(name, device_type, training=training, dropout=dropout, arch=arch)
               for name in names()}
    if requested == "auto":
        return _auto(reasons, device_type, training)
    get(requested)  # an unknown name: the error lists the known ones
    if reasons[requested] is not None:
        available = ", ".join(["auto"] + [name for name, reason in reasons.items() if reason is None])
        raise AttentionUnavailable(
            f"model.attention={requested} is not available on {device_type}: {reasons[requested]}; available: {available}"
        )
    return requested


def _auto(reasons: dict[str, str | None], device_type: str, training: bool) -> str:
    """The runnable implementation ``auto`` prefers most for training or evaluation. Skipping
    cross-example work pays on packed training rows; evaluation and generation run the model's
    own forward on padded batches (and a growing KV cache), where the dense path fits."""
    runnable = [get(name) for name, reason in reasons.items() if reason is None]
    candidates = [impl for impl in runnable if impl.priority(training) is not None]
    if not candidates:
        raise AttentionUnavailable(f"model.attention=auto: no registered implementation runs on {device_type}")
    return max(candidates, key=lambda impl: impl.priority(training)).name


def attention_dropout(config) -> float:
    """The attention-probability dropout of a transformers config (T5: ``dropout_rate``)."""
    if getattr(config, "model_type", "") == "t5":
        return float(config.dropout_rate)
    return float(getattr(config, "attention_dropout", 0.0) or 0.0)


def use(model: torch.nn.Module, name: str) -> None:
    """Make every attention layer of the transformers ``model`` (sub-models included) run ``name``."""
    impl = get(name)
    impl.install()
    model.set_attn_implementation(impl.hf_name)


def implementation_of(model: torch.nn.Module) -> str:
    """The ``model.attention`` name the transformers ``model`` runs now (see :func:`use`)."""
    hf_name = model.config._attn_implementation
    for name in names():
        if get(name).hf_name == hf_name:
            return name
    raise AttentionUnavailable(f"attention implementation {hf_name!r} is not one flanforge builds masks for")
