"""What the checks on user input cost (issue 23): the one text reader and the name check.

    python benchmarks/text_reader.py                  # 200,000 JSONL records
    python benchmarks/text_reader.py --records 1000000

Measured in one process, each against a baseline of the same work without the check, run alternately,
best of ``--repeats`` runs:

  jsonl     a task's JSONL file read as records through ``jsonl_rows`` (each line decoded by
            ``flanforge/text.py``, which names file, line and byte offset of bad bytes), against the
            same function with ``bytes.decode("utf-8-sig")`` as its decoder
  file      a whole file through ``read_text`` against ``Path.read_text(encoding="utf-8")``
  names     the built-in suite's task names through ``checked_name`` (NFC, characters, length),
            against the bare loop; and the share of building the built-in suite it is

The last line of output is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

from flanforge.mixtures import registry
from flanforge.mixtures.sources import tabular
from flanforge.names import checked_name
from flanforge.text import read_text


def best(fn: Callable[[], object], baseline: Callable[[], object], repeats: int) -> tuple[float, float]:
    """The best time of ``fn`` and of ``baseline``, run alternately (the machine is shared: a burst of other
    work then slows both, not one)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for f, out in ((fn, times[0]), (baseline, times[1])):
            start = time.perf_counter()
            f()
            out.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def plain_rows(path: Path) -> int:
    """``jsonl_rows`` itself with ``bytes.decode`` in place of ``flanforge/text.py``'s ``decode``: the
    same loop, only the decoder differs."""
    checked = tabular.decode
    tabular.decode = lambda data, where, encoding=None, **_: data.decode("utf-8-sig")
    try:
        return sum(1 for _ in tabular.jsonl_rows(path))
    finally:
        tabular.decode = checked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_text("".join(json.dumps({"question": f"Combien coûtent {i} cafés à Zürich?", "answer": str(i)},
                                           ensure_ascii=False) + "\n" for i in range(args.records)), encoding="utf-8")
        size_mb = path.stat().st_size / 1e6
        new, old = best(lambda: sum(1 for _ in tabular.jsonl_rows(path)), lambda: plain_rows(path), args.repeats)
        out.update(jsonl_records=args.records, jsonl_mb=round(size_mb, 1), jsonl_records_per_s=round(args.records / new),
                   jsonl_baseline_records_per_s=round(args.records / old), jsonl_ratio=round(old / new, 3))
        new, old = best(lambda: read_text(path), lambda: path.read_text(encoding="utf-8"), args.repeats)
        out.update(file_mb_per_s=round(size_mb / new), file_baseline_mb_per_s=round(size_mb / old),
                   file_ratio=round(old / new, 3))
    start = time.perf_counter()
    names = registry.task_names()  # builds and registers the built-in suite (every name checked once)
    build = time.perf_counter() - start
    reps = 100
    checked, bare = (t / reps for t in best(lambda: [checked_name(n, "task") for _ in range(reps) for n in names],
                                            lambda: [n for _ in range(reps) for n in names], args.repeats))
    out.update(names=len(names), names_check_ms=round(1e3 * (checked - bare), 2),
               builtin_build_ms=round(1e3 * build), names_share_of_build=round((checked - bare) / build, 4))
    for key, value in out.items():
        print(f"{key:>30}  {value}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
