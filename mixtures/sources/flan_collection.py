"""The Flan 2022 collection over a user's directory: its tasks, the ``flan2022`` mixture, its shards.

FLAN 2022's mixture (``google-research/FLAN``, ``flan/v2/mixtures.py`` and
``flan/v2/run_example.py``): five sub-mixtures weighted flan 0.4, t0 0.32,
niv2 0.2, cot 0.05, dialog 0.03; within each, its zero/few-shot × options
variants at equal weight (flan and t0: zsopt, fsopt, zsnoopt, fsnoopt; niv2,
cot, dialog: zsopt, fsopt); within a variant, tasks examples-proportional
with the sub-mixture's cap, ``min(n, cap)``: flan 30,000, t0 20,000, niv2
5,000, cot 100,000, dialog 200,000. A task is one ``task_name`` of one
variant, named ``<submix>_<variant>/<task_name>``.

Counting a directory's tasks reads every row once (the rates need the counts
and the bad-record policy applies); the counts are cached per file under
``$FLANFORGE_CACHE`` (default ``~/.cache/flanforge``), keyed by path, size and
mtime. Preparing writes each file (a *unit*) into its own shards
(``collections/<name>/<unit>-NNNNN.tar``, shared by the tasks it holds, see
``streaming/chunks.py``) and then a marker naming them; the manifest lists the
collection's tasks once every unit has its marker.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from flanforge.mixtures.streaming.chunks import RoutedWriter, file_entry, fingerprint_of, read_json, write_json
from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.sources.base import checked_policy
from flanforge.mixtures.sources.flan_parts import SUBMIXES, VARIANTS, Unit, find_units, unit_rows
from flanforge.mixtures.task import Task, TaskError, Template

SUBMIX_WEIGHTS = {"flan": 0.4, "t0": 0.32, "niv2": 0.2, "cot": 0.05, "dialog": 0.03}
TASK_CAPS = {"flan": 30_000, "t0": 20_000, "niv2": 5_000, "cot": 100_000, "dialog": 200_000}
FIELDS = ("inputs", "targets", "template_type")
TEMPLATE = Template("flan", "{{ inputs }}", "{{ targets }}")
COLLECTIONS = "collections"
SHARD_BYTES = 128 << 20
"""A unit's shards roll over at about this size (a reader hashes a whole shard when it first opens it)."""


def _cache_file(unit: Unit) -> Path:
    root = Path(os.environ.get("FLANFORGE_CACHE") or Path.home() / ".cache" / "flanforge")
    return root / "flan_scan" / f"{hashlib.sha256(str(unit.path.resolve()).encode()).hexdigest()[:24]}.json"


def scan(unit: Unit) -> dict[str, Any]:
    """``{"counts": {task: good rows}, "bad": {task: bad rows}, "problem": first problem or None}``, cached."""
    stat = unit.path.stat()
    cache = _cache_file(unit)
    cached = read_json(cache)
    if cached and cached.get("size") == stat.st_size and cached.get("mtime_ns") == stat.st_mtime_ns:
        return cached
    counts: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    problem = None
    for key, _, trouble in unit_rows(unit, encode=False):
        if trouble is None:
            counts[key] += 1  # type: ignore[index]
        else:
            bad[key or ""] += 1
            problem = problem or trouble
    result = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "counts": dict(counts),
              "bad": _attribute(bad, counts), "problem": problem}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache, result)
    except OSError:
        pass  # an unwritable cache only costs the next scan
    return result


def _attribute(bad: Counter, keys: Any) -> dict[str, int]:
    """Bad rows that name no task are counted with the unit's first task (sorted)."""
    out = {k: n for k, n in bad.items() if k}
    if bad.get("") and keys:
        first = min(keys)
        out[first] = out.get(first, 0) + bad[""]
    return out


class FlanCollection:
    """A directory holding (part of) the Flan collection in its published layouts."""

    def __init__(self, data_dir: str | Path, on_bad_record: Optional[str] = None):
        self.root = Path(data_dir).resolve()
        self.units, self.notes = find_units(self.root)
        self.on_bad_record = None if on_bad_record is None else checked_policy(on_bad_record)
        self.default_policy = "error"
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", self.root.name)
        self.key = f"{safe}-{hashlib.sha256(str(self.root).encode()).hexdigest()[:8]}"

    @property
    def policy(self) -> str:
        return self.on_bad_record or self.default_policy

    def use_default_policy(self, policy: str) -> None:
        """Follow ``policy`` unless the collection sets its own; under ``error`` a bad row is an error now."""
        self.default_policy = checked_policy(policy)
        if self.policy == "error" and self.problem:
            raise TaskError(self.problem)

    @cached_property
    def scans(self) -> dict[str, dict[str, Any]]:
        """Per unit (relative path): its scan."""
        return {unit.rel: scan(unit) for unit in self.units}

    @cached_property
    def problem(self) -> Optional[str]:
        """The first bad row, ``file: row N: problem``, or None."""
        return next((r["problem"] for r in self.scans.values() if r["problem"]), None)

    @cached_property
    def counts(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for result in self.scans.values():
            total.update(result["counts"])
        return dict(sorted(total.items()))

    @cached_property
    def bad(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for result in self.scans.values():
            total.update(result["bad"])
        return dict(total)

    def lacks(self) -> list[str]:
        """What FLAN 2022 mixes that the directory has no record of, and what was not read."""
        present = {key.split("/", 1)[0] for key in self.counts}
        missing = [f"{s}_{v}_data/" for s in SUBMIXES for v in VARIANTS[s] if f"{s}_{v}" not in present]
        return [f"{name}: no records" for name in missing] + self.notes

    def mixture(self, name: str = "flan2022", *, run_policy: bool = False) -> Mixture:
        """The directory's tasks under FLAN 2022's weights and caps (sub-mixtures absent here are left out).

        A bad row is an error now under the ``error`` policy, unless ``run_policy`` and the collection sets
        none of its own: then the run's policy decides (``registry.load_mixture`` passes it to every task)."""
        by_variant: dict[str, list[tuple[Task, Rate]]] = {}
        for key in self.counts:
            prefix = key.split("/", 1)[0]
            submix, variant = prefix.split("_")
            task = Task(
                name=key, fields=FIELDS, templates=(TEMPLATE,), source=CollectionSource(self, key),
                formats=(f"{variant[:2]}_{variant[2:]}",), family=f"flan2022/{submix}", format_field="template_type",
            )
            by_variant.setdefault(prefix, []).append((task, Rate.examples(cap=TASK_CAPS[submix])))
        members = []
        for submix in SUBMIXES:
            variants = [(Mixture(f"{submix}_{v}", by_variant[f"{submix}_{v}"]), Rate.fixed(1.0))
                        for v in VARIANTS[submix] if f"{submix}_{v}" in by_variant]
            if variants:
                members.append((Mixture(submix, variants), Rate.fixed(SUBMIX_WEIGHTS[submix])))
        if not members:
            raise TaskError(f"{self.root}: no usable rows (every row was a bad record)")
        if self.on_bad_record is not None or not run_policy:
            self.use_default_policy(self.default_policy)
        return Mixture(name, members)

    def jobs(self, root: Path, force: bool) -> list[tuple[str, bool, Callable[[], int]]]:
        """One prepare job per unit, ``(name, done, job)``; writes the collection's plan first."""
        out = root / COLLECTIONS / self.key
        out.mkdir(parents=True, exist_ok=True)
        plan = {"data_dir": str(self.root), "units": [u.stem for u in self.units], "fields": list(FIELDS)}
        if read_json(out / "plan.json") != plan:
            write_json(out / "plan.json", plan)
        policy = self.policy
        return [(f"{self.key}/{u.rel}", not force and _unit_done(u, out), partial(write_unit, u, out, policy))
                for u in self.units]


def _marker(unit: Unit, out: Path) -> Path:
    return out / f"{unit.stem}.done.json"


def _checksummed(marker: dict[str, Any] | None) -> bool:
    """A marker whose shards list their members' checksums (not one of format 2: that unit is rewritten)."""
    return marker is not None and all("members" in shard for shard in marker["shards"])


def _unit_done(unit: Unit, out: Path) -> bool:
    marker = read_json(_marker(unit, out))
    stat = unit.path.stat()
    if marker is None or (marker.get("size"), marker.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
        return False
    if not _checksummed(marker):
        return False
    return all((out / s["file"]).is_file() and (out / s["file"]).stat().st_size == s["bytes"] for s in marker["shards"])


def write_unit(unit: Unit, out: Path, policy: str) -> int:
    """Write one unit's good rows into its shards, then its marker; returns the records written."""
    marker = _marker(unit, out)
    marker.unlink(missing_ok=True)  # the old marker must not outlive the shards it names
    writer = RoutedWriter(out, unit.stem, SHARD_BYTES)
    bad: Counter[str] = Counter()
    try:
        for key, line, problem in unit_rows(unit):
            if problem is None:
                writer.add(key, line)  # type: ignore[arg-type]
            elif policy == "error":
                raise TaskError(problem)
            else:
                bad[key or ""] += 1
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    keys = {k for s in shards for k in s["streams"]}
    stat = unit.path.stat()
    write_json(marker, {"unit": unit.rel, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                        "shards": shards, "bad": _attribute(bad, keys)})
    return sum(n for s in shards for _, n in s["streams"].values())


def entries(root: Path) -> tuple[list[dict[str, Any]], dict[str, list]]:
    """Manifest entries of every collection whose units all have markers, and the shard files they name."""
    out: list[dict[str, Any]] = []
    files: dict[str, list] = {}
    for plan_path in sorted((root / COLLECTIONS).glob("*/plan.json")):
        plan, folder = read_json(plan_path), plan_path.parent
        markers = [read_json(folder / f"{stem}.done.json") for stem in (plan or {}).get("units", [])]
        if plan is None or not all(_checksummed(m) for m in markers):
            continue  # not complete: its tasks are not published
        pieces: dict[str, list] = {}
        bad: Counter[str] = Counter()
        for marker in markers:
            bad.update(marker["bad"])  # type: ignore[index]
            for shard in marker["shards"]:  # type: ignore[index]
                rel = f"{COLLECTIONS}/{folder.name}/{shard['file']}"
                files[rel] = file_entry(shard)
                for key, (slot, n) in shard["streams"].items():
                    pieces.setdefault(key, []).append([rel, slot, n])
        for key, parts in sorted(pieces.items()):
            n = sum(p[2] for p in parts)
            out.append({
                "name": key, "fingerprint": fingerprint_of(key, plan["fields"], {"train": n}),
                "bad_records": bad.get(key, 0), "collection": folder.name,
                "splits": {"train": {"num_records": n, "pieces": parts},
                           "exemplars": {"num_records": 0, "pieces": []},
                           "validation": {"num_records": 0, "pieces": []}},
            })
    return out, files


class TaskRecords(Sequence[dict[str, Any]]):
    """A collection task's records before its shards exist: read from its files up to the index asked for.

    For looking at a few records (``inspect --render``, sample prompts);
    training reads the prepared shards instead.
    """

    def __init__(self, collection: FlanCollection, key: str):
        self.collection, self.key = collection, key
        self._records: list[dict[str, Any]] = []
        self._rows = self._read()

    def _read(self):
        for unit in self.collection.units:
            if self.key in self.collection.scans[unit.rel]["counts"]:
                for key, line, _ in unit_rows(unit):
                    if key == self.key and line is not None:
                        yield json.loads(line)

    def __len__(self) -> int:
        return self.collection.counts.get(self.key, 0)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        while len(self._records) <= i:
            self._records.append(next(self._rows))
        return self._records[i]


class CollectionSource:
    """``Task.source`` of one collection task: only a ``train`` split."""

    def __init__(self, collection: FlanCollection, key: str):
        self.collection, self.key = collection, key

    @cached_property
    def train(self) -> TaskRecords:
        return TaskRecords(self.collection, self.key)

    def __call__(self, split: str) -> Sequence[dict[str, Any]]:
        return self.train if split == "train" else []

    @property
    def bad_records(self) -> int:
        return self.collection.bad.get(self.key, 0)

    def use_default_policy(self, policy: str) -> None:
        self.collection.use_default_policy(policy)
