"""A Hugging Face dataset read with ``datasets.load_dataset(..., streaming=True)``: a dataset on the hub (a
cluster with network), local parquet/JSONL/CSV files through the same call (offline), or such a file at
an fsspec URL (``s3://bucket/train.jsonl``; the endpoint from ``AWS_ENDPOINT_URL``), read row by row
rather than downloaded whole first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flanforge.mixtures.sources.base import FileSource, RowStream
from flanforge.mixtures.storage.urls import endpoint, is_remote, public
from flanforge.mixtures.task import TaskError

BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
"""``datasets``' packaged builder of a local data file, by suffix."""


class HfStreamSource(FileSource):
    """``name`` is a hub dataset, a local dataset directory or a local data file (its only split is
    ``train``); ``split_names`` maps a split to the dataset's split name."""

    def __init__(self, name: str, base: Path, *, split_names: dict[str, str], streaming: bool = True, **kwargs: Any):
        self.name, self.streaming = name, streaming
        local = None if is_remote(name) else base / name
        self.local = local if local is not None and local.exists() else None
        self.file = self.local if self.local is not None and self.local.is_file() else None
        if self.file is not None or is_remote(name):
            suffix = Path(name).suffix
            if suffix not in BUILDERS:
                raise TaskError(f"{public(name)}: not a data file datasets reads (suffixes: {', '.join(BUILDERS)})")
        super().__init__(split_names, **kwargs)

    def rows(self, location: str) -> RowStream:
        import datasets  # imported on use: it takes seconds, and most runs never need it

        args: dict[str, Any] = {"path": str(self.local or self.name)}
        if self.file is not None:
            args = {"path": BUILDERS[self.file.suffix], "data_files": str(self.file)}
        elif is_remote(self.name):
            args = {"path": BUILDERS[Path(self.name).suffix], "data_files": self.name,
                    "storage_options": {"endpoint_url": endpoint(None)} if self.name.startswith("s3://") else {}}
        try:
            data = datasets.load_dataset(**args, split=location, streaming=self.streaming)
            for i, row in enumerate(data, 1):
                yield f"{public(self.name)}[{location}]: row {i}", dict(row)
        except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
            detail = " ".join(str(err).split())[:200]
            raise TaskError(f"{public(self.name)}: datasets.load_dataset cannot read split '{location}': "
                            f"{public(detail)}") from None
