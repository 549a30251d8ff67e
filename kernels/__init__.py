"""flanforge.kernels: fused training kernels (a torch path everywhere, Triton on CUDA)."""

from .cross_entropy import IGNORE_INDEX, CrossEntropyOptions, FusedLinearCrossEntropy, fused_linear_cross_entropy

__all__ = ["IGNORE_INDEX", "CrossEntropyOptions", "FusedLinearCrossEntropy", "fused_linear_cross_entropy"]
