"""A Hugging Face ``datasets`` Dataset or DatasetDict saved with ``save_to_disk``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flanforge.mixtures.sources.base import FileSource, RowStream, existing
from flanforge.mixtures.task import TaskError


class HfDiskSource(FileSource):
    """``split_names`` maps a split to a saved split name (a plain Dataset is the ``train`` split)."""

    def __init__(self, path: str | Path, *, split_names: dict[str, str] | None = None, **kwargs: Any):
        self.path = Path(path)
        super().__init__(split_names or {"train": "train"}, **kwargs)

    def describe(self, location: str) -> str:
        return f"{self.path}[{location}]"

    def rows(self, location: str) -> RowStream:
        import datasets  # imported on use: it takes seconds, and most runs never need it

        try:
            saved = datasets.load_from_disk(str(existing(self.path)))
        except (FileNotFoundError, ValueError, OSError) as err:
            raise TaskError(f"{self.path}: not a dataset saved with save_to_disk: {' '.join(str(err).split())[:160]}") from None
        if isinstance(saved, datasets.DatasetDict):
            if location not in saved:
                raise TaskError(f"{self.path}: no saved split '{location}' (saved: {', '.join(saved)})")
            saved = saved[location]
        elif len(self.splits) > 1:
            raise TaskError(f"{self.path}: a single saved Dataset can only be the train split")
        for i, row in enumerate(saved, 1):
            yield f"{self.path}[{location}]: row {i}", row
