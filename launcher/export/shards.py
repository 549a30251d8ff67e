"""Weights as sharded safetensors, one tensor in host memory at a time (``flanforge export``).

The layout ``from_pretrained`` reads: one ``model.safetensors``, or ``model-00001-of-0000N.safetensors``
files and ``model.safetensors.index.json`` (``{"metadata": {"total_size"}, "weight_map": {name: file}}``).
Tensors go into shards in order; a shard closes before the tensor that would take it past the size,
so a tensor larger than the size has a shard of its own. A safetensors file is a header (each
tensor's dtype, shape and byte range) and then the tensors' bytes: the header follows from the shapes
alone, so each file is written header first, then tensor by tensor, each materialised (read, cast)
just before its bytes are written and freed after. The host holds one fp32 tensor and its cast,
never a shard (``safetensors.torch.save_file`` would serialise a whole shard to bytes first). The
files are read back by ``safetensors`` itself in the tests.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path
from typing import Callable

import torch

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_SAFETENSORS_DTYPES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}


def tensor_bytes(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype) -> dict[str, int]:
    """Bytes of each tensor of ``shapes`` in ``dtype``."""
    return {name: math.prod(shape) * dtype.itemsize for name, shape in shapes.items()}


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


def write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], materialise: Callable[[str], torch.Tensor],
                      dtype: torch.dtype, written: Callable[[], None] = lambda: None) -> None:
    """One safetensors file of the tensors of ``shapes`` (in order) in ``dtype``: the header, then each
    tensor's bytes as ``materialise(name)`` returns it, cast (``written()`` after each)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, size in tensor_bytes(shapes, dtype).items():
        header[name] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": list(shapes[name]),
                        "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, shape in shapes.items():
            tensor = materialise(name).to(dtype).contiguous()
            if tuple(tensor.shape) != tuple(shape):
                raise ValueError(f"{name}: materialised as {tuple(tensor.shape)}, the header says {tuple(shape)}")
            f.write(tensor.view(torch.uint8).numpy().data)  # little-endian, as safetensors stores it
            del tensor
            written()


def write_shards(out: Path, shapes: dict[str, tuple[int, ...]], materialise: Callable[[str], torch.Tensor],
                 dtype: torch.dtype, max_bytes: int, progress: str = "writing") -> list[str]:
    """Write the tensors of ``shapes`` (name -> shape) in ``dtype`` into ``out``; returns the files.

    ``materialise(name)`` returns a tensor, read only when its bytes are written.
    """
    from tqdm import tqdm

    sizes = tensor_bytes(shapes, dtype)
    shards = plan_shards(sizes, max_bytes)
    files = shard_names(len(shards))
    weight_map: dict[str, str] = {}
    bar = tqdm(total=len(sizes), desc=progress, unit="tensor", file=sys.stderr)
    for file, names in zip(files, shards):
        write_safetensors(out / file, {name: shapes[name] for name in names}, materialise, dtype, bar.update)
        weight_map.update(dict.fromkeys(names, file))
    bar.close()
    if len(files) > 1:
        index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
        (out / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return files
