"""The built-in procedural task suite: offline, deterministic from a seed, registered on first lookup.

Families (each with at least ten phrasings written for it) are grouped into
FLAN-like clusters. Every cluster is a sub-mixture whose tasks are mixed
examples-proportionally under the cluster's cap; the clusters are mixed by
fixed weights, as Flan 2022 mixes Muffin, T0-SF, NIV2 and CoT.

========================  =====================================================
mixture                   contents
========================  =====================================================
``builtin``               every training cluster (>= 1,800 tasks)
``builtin_<cluster>``     one cluster, e.g. ``builtin_arithmetic``
``builtin_heldout``       held-out families, never in a training mixture
``demo``                  six short, learnable tasks for the 5-minute CPU demo
========================  =====================================================
"""

from __future__ import annotations

from flanforge.mixtures.builtin import arithmetic, classify, convert, counting, extraction, heldout, lists, logic, strings
from flanforge.mixtures.builtin.core import Family
from flanforge.mixtures.mixture import Mixture, Rate

CLUSTERS: dict[str, tuple[tuple[Family, ...], int, float]] = {
    # cluster: (families, per-task cap, weight of the cluster in ``builtin``)
    "strings": (strings.FAMILIES, 1500, 0.16),
    "lists": (lists.FAMILIES, 2000, 0.12),
    "arithmetic": (arithmetic.FAMILIES, 3000, 0.14),
    "logic": (logic.FAMILIES, 3000, 0.12),
    "counting": (counting.FAMILIES, 1500, 0.12),
    "classification": (classify.FAMILIES, 1000, 0.14),
    "extraction": (extraction.FAMILIES, 2000, 0.10),
    "conversion": (convert.FAMILIES, 2500, 0.10),
}
HELDOUT = heldout.FAMILIES
HELDOUT_CAP = 2000

FAMILIES: dict[str, Family] = {f.name: f for fams, _, _ in CLUSTERS.values() for f in fams}

DEMO: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # demo task: (family, variant, formats); short examples a tiny model learns in minutes
    "demo_reverse_words": ("reverse_words", "animal_short", ("zs_noopt", "fs_noopt")),
    "demo_change_case": ("change_case", "fruit_upper", ("zs_noopt", "fs_noopt")),
    "demo_sentiment": ("sentiment", "movie_pos_neg", ("zs_noopt", "zs_opt")),
    "demo_sort_numbers": ("sort_numbers", "digits_short_asc_comma", ("zs_noopt", "fs_noopt")),
    "demo_add": ("add", "1_2", ("zs_noopt", "fs_noopt", "zs_cot")),
    "demo_number_to_words": ("number_to_words", "tens_hyphen", ("zs_noopt", "fs_noopt")),
}
DEMO_FEWSHOT_BUDGET = 60


def family_counts() -> dict[str, int]:
    """Tasks per family, training clusters and held-out families alike (for the README and inspect)."""
    return {f.name: len(f.variants) for f in [*FAMILIES.values(), *HELDOUT]}


def _cluster(name: str, families: tuple[Family, ...], cap: int) -> Mixture:
    return Mixture(name, [(task, Rate.examples(cap=cap)) for f in families for task in f.tasks()])


def _demo() -> Mixture:
    tasks = {
        name: FAMILIES[family].task(tag, name=name, formats=formats, max_shots=1, fewshot_budget=DEMO_FEWSHOT_BUDGET)
        for name, (family, tag, formats) in DEMO.items()
    }
    words = Mixture("demo_words", [(tasks[n], Rate.examples(cap=2000)) for n in list(DEMO)[:3]])
    numbers = Mixture("demo_numbers", [(tasks[n], Rate.examples(cap=2000)) for n in list(DEMO)[3:]])
    return Mixture("demo", [(words, Rate.fixed(1.0)), (numbers, Rate.fixed(1.0))])


def mixtures() -> list[Mixture]:
    """Every built-in mixture (no record is generated here); the registry registers them and their tasks."""
    clusters = [_cluster(f"builtin_{name}", families, cap) for name, (families, cap, _) in CLUSTERS.items()]
    weighted = [(sub, Rate.fixed(weight)) for sub, (_, _, weight) in zip(clusters, CLUSTERS.values())]
    return [*clusters, Mixture("builtin", weighted), _cluster("builtin_heldout", HELDOUT, HELDOUT_CAP), _demo()]

