"""The training forward: HF backbone to hidden states, then the LM head and cross-entropy.

``TrainingModel`` wraps a Hugging Face model so that DeepSpeed's engine runs one
forward that returns the loss to back-propagate and the per-token losses for
logging. Only target tokens go through the LM head: the hidden states are
gathered at ``batch["target_index"]`` first (on instruction data most tokens
are inputs, whose logits nobody needs). Each target token's loss is scaled by
``batch["loss_weights"]`` (its share of the global batch's normalisation) and
summed, so with ``fused=True`` the fused kernel
(:func:`flanforge.kernels.fused_linear_cross_entropy`, which never builds the
full ``(tokens, vocab)`` logits) computes the gradients in the forward pass
and backward only hands them on. Under ZeRO-3 the LM-head weight is
partitioned and only gathered around the forward of the module that owns it;
this wrapper reads it in its own forward, so it registers the weight as an
external parameter (otherwise it would see an empty shard).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from flanforge.kernels import IGNORE_INDEX, fused_linear_cross_entropy
from flanforge.model.attention import SEGMENT_ATTENTION, register_segment_attention, segment_mask, segment_ranges

# Below this vocabulary size a CPU run computes the loss from full logits (see use_fused_loss).
CPU_FUSED_MIN_VOCAB = 32_000


def use_fused_loss(setting: bool | str, vocab_size: int, device_type: str) -> bool:
    """Whether the fused kernel computes the loss: ``True``/``False`` as configured, or
    ``"auto"``: always on GPUs, and on CPUs from ``CPU_FUSED_MIN_VOCAB`` up.

    On a CPU with a small vocabulary the logits of a micro-batch's target tokens are a
    few MiB, so the fused kernel saves no memory that matters, and its chunk loop is
    slower than one plain matmul and ``F.cross_entropy`` (BENCHMARKS.md, "fused loss on CPU").
    """
    if setting != "auto":
        return bool(setting)
    return device_type != "cpu" or vocab_size >= CPU_FUSED_MIN_VOCAB


def target_positions(labels: torch.Tensor) -> torch.Tensor:
    """Flat indices of the tokens that have a label, (n,) int64."""
    return (labels.reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)


class TrainingModel(nn.Module):
    """``forward(batch) -> (loss, token_losses)``: the weighted loss sum to back-propagate, and the
    unweighted per-token losses in the labels' shape (0 where the label is ignored), detached.

    ``batch["target_index"]`` (n,) and ``batch["loss_weights"]`` (n,) are the flat
    positions of the target tokens and their weights (``launcher/loss.py`` adds
    them, computed on the host); without them every labelled token has weight 1.
    """

    def __init__(self, hf_model: nn.Module, *, arch: str, fused: bool, zero_stage: int):
        super().__init__()
        self.hf = hf_model
        self.arch = arch
        self.fused = fused
        self.head = hf_model.get_output_embeddings()
        config = hf_model.config
        self.softcap = getattr(config, "final_logit_softcapping", None)
        # T5 scales the decoder output by d_model^-0.5 before a tied LM head, as HF's own
        # forward does (transformers >= 5 names it `scale_decoder_outputs`).
        scale = getattr(config, "scale_decoder_outputs", getattr(config, "tie_word_embeddings", False))
        self.hidden_scale = config.d_model**-0.5 if arch == "t5" and scale else 1.0
        if arch == "decoder":
            # Each packed example attends only within itself, without a (B, 1, T, T) mask.
            register_segment_attention()
            hf_model.config._attn_implementation = SEGMENT_ATTENTION
        if zero_stage == 3:
            import deepspeed

            deepspeed.zero.register_external_parameter(self, self.head.weight)

    def hidden_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final hidden states, (B, T, H) on the label side."""
        dtype = next(self.hf.parameters()).dtype
        if self.arch == "decoder":
            segments = batch.get("segments")  # host-side ranges (train.py), so no device-to-host copy here
            if segments is None:
                segments = segment_ranges(batch["segment_ids"].cpu())
            out = self.hf.base_model(
                input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False, segments=segments,
            )
            return out.last_hidden_state
        enc_seg, dec_seg = batch["segment_ids"], batch["decoder_segment_ids"]
        encoded = self.hf.encoder(
            input_ids=batch["input_ids"],
            attention_mask=segment_mask(enc_seg, enc_seg, causal=False, dtype=dtype),
        ).last_hidden_state
        decoded = self.hf.decoder(
            input_ids=batch["decoder_input_ids"],
            attention_mask=segment_mask(dec_seg, dec_seg, causal=True, dtype=dtype),
            encoder_hidden_states=encoded,
            encoder_attention_mask=segment_mask(dec_seg, enc_seg, causal=False, dtype=dtype),
            use_cache=False,
        ).last_hidden_state
        return decoded * self.hidden_scale

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.hidden_states(batch)  # (B, T, H)
        labels = batch["labels"]  # (B, T)
        index = batch.get("target_index")
        if index is None:
            index = target_positions(labels)
        weights = batch.get("loss_weights")
        if weights is None:
            weights = torch.ones(index.shape, dtype=torch.float32, device=hidden.device)
        hidden = hidden.flatten(0, 1).index_select(0, index)  # (n, H): target tokens only
        targets = labels.reshape(-1).index_select(0, index)  # (n,)
        if self.fused:
            loss, losses = fused_linear_cross_entropy(
                hidden, self.head.weight, targets, bias=self.head.bias, ignore_index=IGNORE_INDEX,
                softcap=self.softcap, reduction="sum", token_weights=weights, return_token_losses=True,
            )
        else:
            logits = self.head(hidden).float()  # (n, V)
            if self.softcap:
                logits = self.softcap * torch.tanh(logits / self.softcap)
            losses = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")  # (n,)
            loss = (losses * weights).sum()
            losses = losses.detach()
        per_token = torch.zeros(labels.numel(), dtype=torch.float32, device=losses.device)
        return loss.float(), per_token.index_copy_(0, index, losses.float()).view_as(labels)  # (), (B, T)
