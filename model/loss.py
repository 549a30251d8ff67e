"""The training forward: HF backbone to hidden states, then the LM head and cross-entropy.

``TrainingModel`` wraps a Hugging Face model so that DeepSpeed's engine runs one
forward that returns per-token losses. With ``fused=True`` the LM head and the
loss go through :func:`flanforge.kernels.fused_linear_cross_entropy`, so the
full ``(tokens, vocab)`` logits never exist. Under ZeRO-3 the LM-head weight is
partitioned and only gathered around the forward of the module that owns it;
this wrapper reads it in its own forward, so it registers the weight as an
external parameter (otherwise it would see an empty shard).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from flanforge.kernels import fused_linear_cross_entropy
from flanforge.model.attention import implementation_of, packed_mask
from flanforge.model.load import t5_scales_decoder_output

IGNORE_INDEX = -100


class TrainingModel(nn.Module):
    """``forward(batch) -> (B, T) per-token losses`` (0 where the label is ignored)."""

    def __init__(self, hf_model: nn.Module, *, arch: str, fused: bool, zero_stage: int):
        super().__init__()
        self.hf = hf_model
        self.arch = arch
        self.fused = fused
        self.head = hf_model.get_output_embeddings()
        self.attention = implementation_of(hf_model)  # which mask the attention layers take
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

        def mask(q_seg: torch.Tensor, k_seg: torch.Tensor, causal: bool):
            return packed_mask(self.attention, q_seg, k_seg, causal=causal, dtype=dtype)

        if self.arch == "decoder":
            seg = batch["segment_ids"]
            out = self.hf.base_model(
                input_ids=batch["input_ids"],
                attention_mask=mask(seg, seg, True),
                position_ids=batch["position_ids"],
                use_cache=False,
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

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.hidden_states(batch)  # (B, T, H)
        labels = batch["labels"]  # (B, T)
        if self.fused:
            losses = fused_linear_cross_entropy(
                hidden, self.head.weight, labels, bias=self.head.bias,
                ignore_index=IGNORE_INDEX, softcap=self.softcap, reduction="none",
            )
        else:
            logits = self.head(hidden).float()  # (B, T, V)
            if self.softcap:
                logits = self.softcap * torch.tanh(logits / self.softcap)
            losses = F.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
            ).view_as(labels)
        return losses.float()  # (B, T)
