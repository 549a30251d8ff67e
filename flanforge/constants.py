"""Constants every layer shares. A leaf module: it imports nothing of the project."""

IGNORE_INDEX = -100
"""The label that contributes no loss and no gradient: the packer writes it, the loss skips it (the one
name for it across flanforge)."""

SCORING_CONVENTIONS = ("t5x", "lm-eval")
"""How rank classification scores an option (``launcher/evaluation/scoring.py``): the names ``--convention``
and ``eval.convention`` take."""

HELDOUT_DATA = ("mmlu", "bbh", "gsm8k")
"""The data directories the ``flan2022_heldout`` suite reads (``launcher/evaluation/heldout.py``): the keys
``--data KEY=DIR`` and ``eval.data`` take."""
