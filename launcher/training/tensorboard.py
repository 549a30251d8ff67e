"""TensorBoard logging, rank 0 only (other ranks get a writer that does nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Metrics:
    """Scalars and text for TensorBoard under ``<output_dir>/tensorboard``."""

    def __init__(self, log_dir: str | Path, enabled: bool, purge_step: int | None = None):
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            # TensorBoard renders text as markdown; indent to keep it verbatim.
            self.writer.add_text(tag, "    " + text.replace("\n", "\n    "), step)

    def flush(self) -> None:
        """Write pending events now (periodic eval's scores show before the next step's)."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def format_line(step: int, values: dict[str, Any]) -> str:
    shown = ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_sec")
    parts = [f"step {step}"] + [
        f"{k.split('/')[-1]} {values[k]:.4g}" for k in shown if k in values
    ]
    return " | ".join(parts)
