"""Packing efficiency of the mixture stream at seq_len 2048, beside naive per-example padding.

    python benchmarks/packing.py                       # mixture builtin (demo if builtin is not registered)
    python benchmarks/packing.py --blocks 4 --mixture demo

Set-up (shared with pipeline.py and resume.py): the mixture's shards are
prepared with ``ensure_prepared`` (timed: that is the cost of ``flanforge
prepare``), and a SentencePiece tokenizer is trained on the fly on the
mixture's rendered text. Then one consumer reads ``--blocks`` whole blocks,
one row per batch, and the script measures, over the same examples:

  packed:  non-pad tokens / all tokens of the packed rows
  naive:   the same examples, each padded alone to seq_len

Packing wastes about half a row per block (rows never mix blocks), so the
efficiency is about ``1 - 0.5 / rows per block``: it grows with the block size
and with the mixture's example length.

The last line of output is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from flanforge.launcher.training.data import tokenizer_corpus  # noqa: E402
from flanforge.mixtures import registry  # noqa: E402
from flanforge.mixtures.mixture import Mixture  # noqa: E402
from flanforge.mixtures.streaming.shards import Manifest, ensure_prepared  # noqa: E402
from flanforge.mixtures.config import StreamConfig  # noqa: E402
from flanforge.mixtures.streaming.stream import MixtureStream  # noqa: E402
from flanforge.model.tokenizer import load_tokenizer, train_tokenizer  # noqa: E402


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mixture", default="builtin", help="falls back to demo when not registered")
    parser.add_argument("--materialise", action="store_true",
                        help="store generated tasks' records in shards too, so the stream reads (and verifies) them")
    parser.add_argument("--workdir", default=None, help="shards and tokenizer (kept); default: a temp dir")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--block-size", type=int, default=None, help="examples per block (default: StreamConfig's)")
    parser.add_argument("--vocab-size", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)


def set_up(args: argparse.Namespace) -> tuple[Any, Any, Path, Path, dict[str, Any]]:
    """(mixture, manifest, tokenizer file, workdir, facts): the mixture prepared and a tokenizer trained for it."""
    torch.set_num_threads(1)
    name = args.mixture if args.mixture in registry.mixture_names() else "demo"
    facts: dict[str, Any] = {"mixture": name}
    if name != args.mixture:
        facts["note"] = f"mixture '{args.mixture}' is not registered; measured on 'demo'"
        print(facts["note"])
    mixture = get_mixture(name, args.materialise)
    facts["materialised"] = args.materialise
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="flanforge-bench-"))
    start = time.perf_counter()
    shards = workdir / f"shards-{name}{'-materialised' if args.materialise else ''}"
    manifest = ensure_prepared(mixture, shards, workers=os.cpu_count() or 1, progress=True)
    facts["prepare_s"] = round(time.perf_counter() - start, 2)
    facts["tasks"] = len(mixture.tasks())
    tok_dir = workdir / f"tokenizer-{name}-{args.vocab_size}"
    if not (tok_dir / "spiece.model").is_file():
        train_tokenizer(tokenizer_corpus(mixture, args.seed), tok_dir, args.vocab_size)
    return mixture, manifest, tok_dir / "spiece.model", workdir, facts


def get_mixture(name: str, materialise: bool) -> Mixture:
    """The registered mixture; with ``materialise``, its tasks' records stored in shards even when they are
    generated on access (the built-in suite), as a file-backed mixture's are."""
    mixture = registry.get_mixture(name)
    return _stored(mixture) if materialise else mixture


def _stored(mixture: Mixture) -> Mixture:
    def member(m):
        return _stored(m) if isinstance(m, Mixture) else dataclasses.replace(m, source=lambda split, t=m: t.records(split))

    return Mixture(mixture.name, [(member(m), rate) for m, rate in mixture.members])


def make_stream(mixture, manifest, tokenizer_file, args, micro_batch_size=1, num_workers=0, **kw) -> MixtureStream:
    cfg = StreamConfig(
        seed=args.seed, seq_len=args.seq_len, micro_batch_size=micro_batch_size,
        block_size=args.block_size, num_workers=num_workers,
    )
    return MixtureStream(mixture, load_tokenizer(tokenizer_file), cfg, manifest, **kw)


def child_arguments(parser: argparse.ArgumentParser) -> None:
    """``--repeats`` and the hidden arguments of a measurement that runs in a fresh interpreter (:func:`run_children`)."""
    parser.add_argument("--repeats", type=int, default=3, help="measurements, each in a fresh interpreter")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shards", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help=argparse.SUPPRESS)


def child_command(script: str, facts: dict[str, Any], manifest: Any, tok_file: Path, args: argparse.Namespace) -> list[str]:
    """The command line that runs ``script``'s measurement (``--child``) on the prepared mixture."""
    block_size = [] if args.block_size is None else ["--block-size", str(args.block_size)]
    return [sys.executable, script, "--child", "--mixture", facts["mixture"], "--shards", str(manifest.root),
            "--tokenizer", str(tok_file), "--seq-len", str(args.seq_len), "--seed", str(args.seed), *block_size,
            *(["--materialise"] if args.materialise else [])]


def child_inputs(args: argparse.Namespace) -> tuple[Any, Manifest]:
    """(mixture, manifest) in a child, as the parent prepared them."""
    return get_mixture(args.mixture, args.materialise), Manifest.load(args.shards)


def run_child(command: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (no caches from an earlier one); its last output line, parsed."""
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


class Clock:
    """Wall-clock and process CPU seconds since it was made: CPU time is what the code costs, wall
    time what a shared machine also adds (other jobs' share of the cores)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {"wall_s": time.perf_counter() - self.wall, "cpu_s": time.process_time() - self.cpu}


def spread(values: list[float], digits: int = 3) -> dict[str, float]:
    """Minimum and median over the repeats (other jobs can only add time, so the minimum is the steadiest)."""
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits)}


def whole_blocks(batches: Iterator[dict[str, Any]], blocks: int) -> Iterator[dict[str, Any]]:
    """One-row ``batches`` of a consumer up to the end of the ``blocks``-th block that ends among them."""
    seen = 0
    for batch in batches:
        yield batch
        if batch.row[0] == batch.block_rows[0] - 1:
            seen += 1
            if seen == blocks:
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_arguments(parser)
    parser.add_argument("--blocks", type=int, default=8, help="whole blocks measured")
    args = parser.parse_args()
    mixture, manifest, tok_file, _, facts = set_up(args)
    stream = make_stream(mixture, manifest, tok_file, args)
    rows = real = 0
    lengths: list[int] = []
    for batch in whole_blocks(stream.worker_batches(0), args.blocks):
        seg = batch.tensors["segment_ids"][0]  # (T,)
        rows += 1
        real += int((seg > 0).sum())
        lengths += torch.bincount(seg)[1:].tolist()
    figures = {
        **facts,
        "seq_len": args.seq_len,
        "block_size": stream.cfg.block_size,
        "blocks": args.blocks,
        "examples": len(lengths),
        "mean_example_tokens": round(sum(lengths) / len(lengths), 1),
        "rows": rows,
        "packed_efficiency": round(real / (rows * args.seq_len), 4),
        "naive_padding_efficiency": round(sum(lengths) / (len(lengths) * args.seq_len), 4),
        "target_packed_efficiency": 0.99,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
