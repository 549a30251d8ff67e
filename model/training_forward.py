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

from flanforge.constants import IGNORE_INDEX
from flanforge.kernels import fused_linear_cross_entropy
from flanforge.model import attention
from flanforge.model.load import t5_scales_decoder_output

# On CPUs the fused kernel pays from about this many target-token logits per micro-batch
# (BENCHMARKS.md, "The fused loss on CPU"): below it, its fixed costs outweigh what it saves.
CPU_FUSED_MIN_LOGITS = 2**20


def use_fused_loss(setting: bool | str, device_type: str) -> bool | None:
    """Whether the fused kernel computes the loss: ``True``/``False`` as configured; for
    ``"auto"`` True on GPUs, and None on CPUs: decided per micro-batch by its logits' size
    (the fused kernel from ``CPU_FUSED_MIN_LOGITS`` target-token logits up)."""
    if setting != "auto":
        return bool(setting)
    return True if device_type != "cpu" else None


def target_positions(labels: torch.Tensor) -> torch.Tensor:
    """Flat indices of the tokens that have a label, (n,) int64."""
    return (labels.reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)


class TrainingModel(nn.Module):
    """``forward(batch) -> (loss, token_losses)``: the weighted loss sum to back-propagate, and the
    unweighted per-token losses in the labels' shape (0 where the label is ignored), detached.

    ``batch["target_index"]`` (n,) and ``batch["loss_weights"]`` (n,) are the flat
    positions of the target tokens and their weights, and ``batch["segments"]`` each
    row's example ranges (``launcher/training/loop.py`` adds them, computed on the host);
    without them every labelled token has weight 1 and the ranges are read from the
    segment ids.
    """

    def __init__(self, hf_model: nn.Module, *, arch: str, fused: bool | None, zero_stage: int):
        super().__init__()
        self.hf = hf_model
        self.arch = arch
        self.fused = fused
        self.head = hf_model.get_output_embeddings()
        self.attention = attention.implementation_of(hf_model)  # which mask the attention layers take
        config = hf_model.config
        self.softcap = getattr(config, "final_logit_softcapping", None)
        # T5 may scale the decoder output by d_model^-0.5 before the LM head, as HF's own forward does.
        self.hidden_scale = config.d_model**-0.5 if arch == "t5" and t5_scales_decoder_output(config) else 1.0
        if zero_stage == 3:
            import deepspeed

            deepspeed.zero.register_external_parameter(self, self.head.weight)

    def hidden_states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final hidden states, (B, T, H) on the label side."""
        dtype = next(self.hf.parameters()).dtype
        impl = attention.get(self.attention)

        def mask(q_seg: torch.Tensor, k_seg: torch.Tensor, causal: bool):
            return impl.mask(q_seg, k_seg, causal=causal, dtype=dtype)

        if self.arch == "decoder":
            seg = batch["segment_ids"]
            decoder_mask, extra = mask(seg, seg, True), {}
            if decoder_mask is None:  # the examples' ranges instead: host-side (train.py), no device-to-host copy here
                extra["segments"] = batch.get("segments") or attention.segment_ranges(seg.cpu())
            out = self.hf.base_model(
                input_ids=batch["input_ids"],
                attention_mask=decoder_mask,
                position_ids=batch["position_ids"],
                use_cache=False,
                **extra,
            )
            return out.last_hidden_state
        enc_seg, dec_seg = batch["segment_ids"], batch["decoder_segment_ids"]
        encoded = self.hf.encoder(
            input_ids=batch["input_ids"],
            attention_mask=mask(enc_seg, enc_seg, False),
        ).last_hidden_state
        decoded = self.hf.decoder(
            input_ids=batch["decoder_input_ids"],
            attention_mask=mask(dec_seg, dec_seg, True),
            encoder_hidden_states=encoded,
            encoder_attention_mask=mask(dec_seg, enc_seg, False),
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
        fused = self.fused
        if fused is None:  # auto on a CPU
            fused = targets.numel() * self.head.weight.shape[0] >= CPU_FUSED_MIN_LOGITS
        if fused:
            loss, losses = fused_linear_cross_entropy(
                hidden, self.head.weight, targets, bias=self.head.bias, ignore_index=IGNORE_INDEX,
                softcap=self.softcap, reduction="sum", token_weights=weights, return_token_losses=True,
                check_labels=False,  # the tokenizer's ids fit the head (model/load.py): no per-step host sync
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
