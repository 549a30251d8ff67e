"""The attention implementation base class, and the registry that ``auto`` chooses from.

An implementation is a subclass of :class:`Attention` in a file of its own (the mask it
takes, its attention function if transformers has none, where it can run, and how much
``auto`` prefers it) that ends by registering one instance with :func:`register`. Nothing
here imports torch: ``model.attention`` is checked against :func:`names` when a config
loads, before torch is imported.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator, Optional

if TYPE_CHECKING:
    import torch


class AttentionUnavailable(ValueError):
    """The requested implementation cannot run here; the message names the ones that can."""


class Attention:
    """One way to keep the examples of a packed row apart in attention."""

    name: str
    """The ``model.attention`` value."""
    hf_name: str
    """The name transformers knows the attention function by (``set_attn_implementation``)."""
    forward: Optional[Callable] = None
    """The transformers attention function to register under ``hf_name`` (a method
    ``forward(module, query, key, value, attention_mask, **kwargs)``); None: transformers' own."""
    hf_mask: str = "sdpa"
    """With a ``forward``: which of transformers' mask functions the model's own forward
    (evaluation, generation, 2D padding masks) builds its mask with under ``hf_name``."""
    training_priority: Optional[int] = None
    """``auto`` trains with the registered implementation of highest priority that can run; None: never."""
    evaluation_priority: Optional[int] = None
    """The same for evaluation (padded batches, a KV cache)."""

    def mask(self, q_segments: torch.Tensor, k_segments: torch.Tensor, *, causal: bool, dtype: torch.dtype):
        """The ``attention_mask`` that keeps queries of segments ``q_segments`` (B, Tq) to keys of their
        own segment in ``k_segments`` (B, Tk) (and to the past if ``causal``); ids are 1..k per example
        and 0 for padding. None: no mask, the attention function takes each row's example ranges
        (``segments=``, :func:`flanforge.model.attention.masks.segment_ranges`) instead."""
        raise NotImplementedError(f"{type(self).__name__} builds no mask")

    def unavailable_reason(self, device_type: str, *, training: bool, dropout: float, arch: str) -> str | None:
        """Why this cannot run on ``device_type`` for an ``arch`` model with attention ``dropout``, or None."""
        return None

    def priority(self, training: bool) -> int | None:
        return self.training_priority if training else self.evaluation_priority

    def install(self) -> None:
        """Register :attr:`forward` (if any) with transformers under :attr:`hf_name`."""
        if self.forward is None:
            return
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

        AttentionInterface.register(self.hf_name, self.forward)
        AttentionMaskInterface.register(self.hf_name, ALL_MASK_ATTENTION_FUNCTIONS[self.hf_mask])


_REGISTRY: dict[str, Attention] = {}


def register(impl: Attention) -> Attention:
    """Add ``impl``; its name and its transformers name must be new, and its ``auto`` priorities
    differ from every other one's, so ``auto`` never depends on the order of registration."""
    if impl.name == "auto":
        raise ValueError("model.attention=auto chooses among the registered implementations; it names none")
    for other in _REGISTRY.values():
        if impl.name == other.name or impl.hf_name == other.hf_name:
            raise ValueError(f"attention {impl.name!r} ({impl.hf_name}) clashes with {other.name!r} ({other.hf_name})")
        for training in (True, False):
            if impl.priority(training) is not None and impl.priority(training) == other.priority(training):
                raise ValueError(f"attention {impl.name!r} has {other.name!r}'s auto priority "
                                 f"{impl.priority(training)} ({'training' if training else 'evaluation'})")
    _REGISTRY[impl.name] = impl
    return impl


def unregister(name: str) -> None:
    del _REGISTRY[name]


@contextlib.contextmanager
def registered(impl: Attention) -> Iterator[Attention]:
    """``impl`` registered for the duration of the block (tests)."""
    register(impl)
    try:
        yield impl
    finally:
        unregister(impl.name)


def names() -> tuple[str, ...]:
    """The registered implementations, in the order they were registered."""
    return tuple(_REGISTRY)


def choices() -> tuple[str, ...]:
    """What ``model.attention`` accepts."""
    return ("auto", *_REGISTRY)


def get(name: str) -> Attention:
    if name not in _REGISTRY:
        raise AttentionUnavailable(f"model.attention={name!r} is unknown; choose one of {', '.join(choices())}")
    return _REGISTRY[name]
