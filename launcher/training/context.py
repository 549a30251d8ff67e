"""What one run is, for one process: its config, its directory, its ranks and where it resumes.

Built once per rank by ``training/loop.py:setup``, once the ranks are connected and the run's lock
is held, and passed down: nothing below builds paths from the config again (the launcher's own
process builds its one :class:`RunDir` in ``commands/train.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flanforge.launcher.config import Config
from flanforge.launcher.ranks.layout import RankLayout
from flanforge.launcher.training.rundir import RunDir


@dataclass(frozen=True)
class RunContext:
    cfg: Config
    run_dir: RunDir
    layout: RankLayout
    resume_tag: str | None
    """The checkpoint the run resumes from (``latest`` when the process started); None for a fresh run."""
    device: Any = None
    """The rank's ``torch.device``, bound before its process group existed (``launcher/ranks/devices.py``)."""
    precision: str = "fp32"
    """``train.precision`` resolved for the device (``auto``: bf16 on GPUs that have it)."""
