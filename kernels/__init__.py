"""flanforge.kernels: fused training kernels (a torch path everywhere, Triton on CUDA)."""

if "." not in __name__:  # imported as bare `kernels`: the PyPI package of that name answers (transformers needs it)
    from flanforge.bare_names import hand_over

    hand_over(__name__, __file__)
else:
    from .cross_entropy import IGNORE_INDEX, CrossEntropyOptions, FusedLinearCrossEntropy, fused_linear_cross_entropy

    __all__ = ["IGNORE_INDEX", "CrossEntropyOptions", "FusedLinearCrossEntropy", "fused_linear_cross_entropy"]
