"""Weights as sharded safetensors, one output shard in host memory at a time (``flanforge export``).

The layout ``from_pretrained`` reads: one ``model.safetensors``, or ``model-00001-of-0000N.safetensors``
files and ``model.safetensors.index.json`` (``{"metadata": {"total_size"}, "weight_map": {name: file}}``).
Tensors go into shards in order; a shard closes before the tensor that would take it past the size,
so a tensor larger than the size has a shard of its own. Each tensor is materialised (read, cast)
only when its shard is written, and the shard is freed once it is on disk: the host holds one
shard (twice: ``safetensors`` serialises it to bytes before writing) and one fp32 tensor being cast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import torch

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def plan_shards(sizes: dict[str, int], max_bytes: int) -> list[list[str]]:
    """The names (in order) of each shard, none past ``max_bytes`` unless it holds a single tensor."""
    shards: list[list[str]] = []
    used = 0
    for name, size in sizes.items():
        if not shards or (shards[-1] and used + size > max_bytes):
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def shard_names(count: int) -> list[str]:
    """File names of ``count`` shards, as transformers' ``save_pretrained`` names them."""
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def write_shards(out: Path, sizes: dict[str, int], materialise: Callable[[str], torch.Tensor], dtype: torch.dtype,
                 max_bytes: int, progress: str = "writing") -> list[str]:
    """Write the tensors named in ``sizes`` (bytes each, in ``dtype``) into ``out``; returns the files.

    ``materialise(name)`` returns a tensor, read only when its shard is written.
    """
    from safetensors.torch import save_file
    from tqdm import tqdm

    shards = plan_shards(sizes, max_bytes)
    files = shard_names(len(shards))
    weight_map: dict[str, str] = {}
    bar = tqdm(total=len(sizes), desc=progress, unit="tensor", file=sys.stderr)
    for file, names in zip(files, shards):
        shard = {}
        for name in names:
            shard[name] = materialise(name).to(dtype).contiguous()
            bar.update()
        save_file(shard, str(out / file), metadata={"format": "pt"})
        del shard
        weight_map.update(dict.fromkeys(names, file))
    bar.close()
    if len(files) > 1:
        index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
        (out / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return files
