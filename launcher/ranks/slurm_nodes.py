"""Slurm node lists and task counts (``node[01-03,7]``, ``2(x3),1``), and the port a job's tasks agree on."""

from __future__ import annotations

import re
import shutil
import subprocess
from itertools import product


def slurm_job_port(job_id: int | str) -> int:
    """The rendezvous port every task of Slurm job ``job_id`` derives alike.

    10000-29999, below Linux's ephemeral range; slurm/common.sh uses the same formula.
    """
    return 10000 + int(job_id) % 20000


def first_host(nodelist: str) -> str:
    """The first host of a Slurm node list ("node[01-03,7],login" -> "node01").

    Asks ``scontrol show hostnames`` when it is installed (it knows every syntax the
    cluster's Slurm does), else expands the list itself.
    """
    if not nodelist.strip():
        raise ValueError("empty Slurm node list")
    if shutil.which("scontrol"):
        try:
            out = subprocess.run(
                ["scontrol", "show", "hostnames", nodelist],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    return expand_nodelist(nodelist)[0]


_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand Slurm's bracket syntax: "n[01-03,7],gpu-[1-2]x[a,b]" -> hosts, in order.

    Zero padding follows the range's lower bound, as Slurm does ("n[008-011]" ->
    n008 ... n011); several bracket groups in one name expand as a product.
    """
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip()):
        pieces: list[list[str]] = []
        rest = item
        while rest:
            open_at = rest.find("[")
            if open_at < 0:
                if "]" in rest:
                    raise ValueError(f"unbalanced ']' in Slurm node list {nodelist!r}")
                pieces.append([rest])
                break
            close_at = rest.find("]", open_at)
            if close_at < 0:
                raise ValueError(f"unbalanced '[' in Slurm node list {nodelist!r}")
            if open_at:
                pieces.append([rest[:open_at]])
            pieces.append(_expand_ranges(rest[open_at + 1 : close_at], nodelist))
            rest = rest[close_at + 1 :]
        hosts.extend("".join(parts) for parts in product(*pieces))
    if not hosts:
        raise ValueError(f"empty Slurm node list {nodelist!r}")
    return hosts


def parse_tasks_per_node(value: str) -> list[int]:
    """Expand SLURM_TASKS_PER_NODE ("2(x3),1") to one count per node ([2, 2, 2, 1])."""
    counts: list[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not match:
            raise ValueError(f"cannot parse tasks per node {value!r} (expected e.g. '2(x3),1')")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


# --- internals ---------------------------------------------------------------------


def _split_top_level(nodelist: str) -> list[str]:
    items, depth, start = [], 0, 0
    for i, ch in enumerate(nodelist):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced ']' in Slurm node list {nodelist!r}")
        elif ch == "," and depth == 0:
            items.append(nodelist[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced '[' in Slurm node list {nodelist!r}")
    items.append(nodelist[start:])
    return [item.strip() for item in items if item.strip()]


def _expand_ranges(body: str, nodelist: str) -> list[str]:
    out: list[str] = []
    for part in body.split(","):
        match = _RANGE.match(part.strip())
        if not match:
            raise ValueError(f"cannot parse range {part!r} in Slurm node list {nodelist!r}")
        lo_text, hi_text = match.group(1), match.group(2)
        lo, hi = int(lo_text), int(hi_text if hi_text is not None else lo_text)
        if hi < lo:
            raise ValueError(f"descending range {part!r} in Slurm node list {nodelist!r}")
        width = len(lo_text)
        out.extend(str(n).zfill(width) for n in range(lo, hi + 1))
    return out
