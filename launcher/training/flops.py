"""Model FLOPs utilisation, counted per architecture (PaLM's MFU, appendix B, with packed rows).

A training step's model FLOPs are 3x its forward's (forward 1x, backward 2x):

- each token through the parameters it meets: ``2 P`` per token forward, P the parameters of the
  stack it runs through (T5: encoder tokens through the encoder, decoder tokens through the decoder;
  embeddings are lookups, not FLOPs);
- the LM head only where it runs: flanforge computes logits for the target tokens alone;
- attention's scores and mixing: ``4 d`` per attended (query, key) pair and layer forward, where a
  packed row's examples attend within themselves (causal self-attention: ``l (l + 1) / 2`` pairs for
  an example of ``l`` tokens; T5's encoder ``l^2``, its cross-attention ``l_dec * l_enc``).

The peak is the device's dense tensor-core rate for the training precision, by exact model
(:data:`PEAKS`: SXM, PCIe and NVL parts of one GPU differ by up to 30%); an unknown device has none,
and no MFU is logged rather than a wrong one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from flanforge.model.load import numel

PEAKS: tuple[tuple[str, float, float], ...] = (
    # (device-name pattern, dense bf16/fp16 FLOP/s, dense TF32 FLOP/s): NVIDIA's datasheets
    (r"GH200|H200", 989e12, 494e12),
    (r"H100.*NVL", 835e12, 418e12),
    (r"H100.*PCIe", 756e12, 378e12),
    (r"H100", 989e12, 494e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (r"A100", 312e12, 156e12),  # SXM4 and PCIe, 40 and 80 GB alike
    (r"L40S", 362e12, 183e12),
    (r"L4\b", 121e12, 60e12),
    (r"A10G", 70e12, 35e12),
    (r"A10\b", 125e12, 62.5e12),
    (r"V100", 125e12, 15.7e12),  # no TF32: fp32 peak
)


def peak_flops(device_name: str, precision: str) -> float | None:
    """Dense peak FLOP/s of a known GPU for ``precision`` (fp32 runs at TF32), or None."""
    for pattern, half, tf32 in PEAKS:
        if re.search(pattern, device_name):
            return tf32 if precision == "fp32" else half
    return None


@dataclass(frozen=True)
class FlopModel:
    """The parameter counts and shapes a step's FLOPs depend on."""

    encoder_params: int  # 0 for a decoder-only model
    decoder_params: int  # without embeddings and LM head
    head_params: int
    hidden: int
    encoder_layers: int
    decoder_layers: int

    @classmethod
    def of(cls, hf_model: torch.nn.Module) -> "FlopModel":
        config = hf_model.config
        head = numel(hf_model.get_output_embeddings().weight)
        embeddings = {id(p) for p in hf_model.get_input_embeddings().parameters()} | {
            id(p) for p in hf_model.get_output_embeddings().parameters()}

        def body(module) -> int:
            return sum(numel(p) for p in module.parameters() if id(p) not in embeddings)

        if config.is_encoder_decoder:
            return cls(body(hf_model.get_encoder()), body(hf_model.get_decoder()), head, config.d_model,
                       config.num_layers, config.num_decoder_layers)
        return cls(0, body(hf_model), head, config.hidden_size, 0, config.num_hidden_layers)

    def step_flops(self, lengths: "StepLengths") -> float:
        """Model FLOPs of one training step (forward and backward) over ``lengths``' examples."""
        per_forward = (2 * self.encoder_params * lengths.encoder_tokens
                       + 2 * self.decoder_params * lengths.decoder_tokens
                       + 2 * self.head_params * lengths.target_tokens
                       + 4 * self.hidden * (self.encoder_layers * lengths.encoder_pairs
                                            + self.decoder_layers * (lengths.decoder_pairs + lengths.cross_pairs)))
        return 3.0 * per_forward


@dataclass(frozen=True)
class StepLengths:
    """Token and attended-pair counts of a step's examples."""

    encoder_tokens: int
    decoder_tokens: int
    target_tokens: int
    encoder_pairs: int
    decoder_pairs: int
    cross_pairs: int

    @classmethod
    def of(cls, batches, labels_ignored: int) -> "StepLengths":
        """From packed batches' segment ids (0: padding) and labels (``labels_ignored``: no target)."""
        enc = dec = tgt = enc_pairs = dec_pairs = cross = 0
        for batch in batches:
            tensors = batch.tensors
            tgt += int((tensors["labels"] != labels_ignored).sum())
            if "decoder_segment_ids" in tensors:
                width = int(max(tensors["segment_ids"].max(), tensors["decoder_segment_ids"].max())) + 1
                src, out = _lengths(tensors["segment_ids"], width), _lengths(tensors["decoder_segment_ids"], width)
                enc += int(src.sum())
                enc_pairs += int((src * src).sum())
                cross += int((src * out).sum())
            else:
                out = _lengths(tensors["segment_ids"], int(tensors["segment_ids"].max()) + 1)
            dec += int(out.sum())
            dec_pairs += int((out * (out + 1) // 2).sum())
        return cls(enc, dec, tgt, enc_pairs, dec_pairs, cross)


def _lengths(segment_ids: torch.Tensor, width: int) -> torch.Tensor:
    """Each example's length, (rows, width - 1): row r's segment k at [r, k - 1] (0 where absent)."""
    counts = torch.zeros(segment_ids.shape[0], width, dtype=torch.int64)
    counts.scatter_add_(1, segment_ids.long(), torch.ones_like(segment_ids, dtype=torch.int64))
    return counts[:, 1:]


def model_flops_utilization(step_flops_per_device: float, step_time: float, device_name: str,
                            precision: str) -> float | None:
    peak = peak_flops(device_name, precision)
    return None if peak is None or step_time <= 0 else step_flops_per_device / step_time / peak
