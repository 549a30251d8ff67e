"""``flanforge plan``'s report: every setting's estimate against the given memory, as a dict (``--json``) and a table."""

from __future__ import annotations

import dataclasses
from typing import Any

from flanforge.launcher.config import Config
from flanforge.launcher.planning import memory_plan as mp
from flanforge.sizes import format_bytes

_COLUMNS = ("states", "activations", "loss", "copies", "step", "buckets", "overhead", "total")
_PHASES = {  # how the phases add up (memory_plan's docstring), by whether glibc's heap keeps the first one
    False: "total = states + buckets + overhead + the largest of: activations + loss (+ the all-gather's copies), "
           "the gradient reduction's copies, the optimizer step's temporaries",
    True: "total = states + buckets + overhead + activations + loss (+ the all-gather's copies, all kept in glibc's "
          "heap) + the larger of: the gradient reduction's copies, the optimizer step's temporaries",
}


def _row(w: mp.Workload, setting: mp.Setting, micro_batch: int, rank_memory: int | None,
         cpu_memory: int | None) -> dict[str, Any]:
    e = mp.estimate(w, setting, micro_batch)
    row = {"setting": setting.overrides(), "label": setting.label(), "micro_batch": micro_batch,
           **{k: v for k, v in dataclasses.asdict(e).items() if k not in ("setting", "micro_batch")},
           "states": e.params + e.gradients + e.optimizer + e.gathered + e.reused,
           "copies": max(e.gather_copy, e.reduce_copy)}
    if rank_memory is not None:
        row["fits"] = e.total <= rank_memory
        row["max_micro_batch"] = mp.max_micro_batch(w, setting, rank_memory)
    if cpu_memory is not None:
        row["cpu_fits"] = e.cpu_node <= cpu_memory
    return row


def plan_report(cfg: Config, gpus_per_node: int, nodes: int, gpu_memory: int | None,
                cpu_memory: int | None, device: str = "cuda") -> dict[str, Any]:
    """Every setting of :func:`memory_plan.alternatives` at the configured micro batch; bytes throughout.
    A rank's memory: ``gpu_memory`` on GPUs; on CPUs (``device``) its share of the node's ``cpu_memory``."""
    w = mp.workload(cfg, gpus_per_node, nodes, device)
    rank_memory = gpu_memory if device == "cuda" else (cpu_memory // gpus_per_node if cpu_memory else None)
    configured, micro_batch = mp.configured_setting(cfg), cfg.train.micro_batch_size
    report: dict[str, Any] = {
        "model": dataclasses.asdict(w.shape),
        "workload": {"device": device, "precision": w.precision, "seq_len": w.seq_len, "attention": w.attention,
                     "gpus_per_node": gpus_per_node, "nodes": nodes, "micro_batch": micro_batch,
                     "reduce_bucket": w.reduce_bucket, "prefetch_bucket": w.prefetch_bucket,
                     "reuse_distance": w.reuse_distance},
        "constants": {"cuda_context": mp.CUDA_CONTEXT_BYTES, "allocator_slack": mp.ALLOCATOR_SLACK,
                      "cpu_buffer_factor": mp.CPU_BUFFER_FACTOR, "cpu_rank": mp.CPU_RANK_BYTES,
                      "cpu_allocator_slack": mp.CPU_ALLOCATOR_SLACK, "allocator": w.allocator},
        "gpu_memory": gpu_memory, "cpu_memory": cpu_memory, "rank_memory": rank_memory,
        "settings": [_row(w, s, micro_batch, rank_memory, cpu_memory) for s in mp.alternatives(configured)],
    }
    if rank_memory is not None and not report["settings"][0]["fits"]:
        report["nearest"] = mp.suggestion(mp.nearest_fit(w, configured, micro_batch, rank_memory), cfg)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as text: the model and workload, then one line per setting (the configured one first)."""
    m, wl = report["model"], report["workload"]
    kind = "GPU" if wl["device"] == "cuda" else "CPU"
    layers = f"{m['layers']}+{m['decoder_layers']}" if m["decoder_layers"] else str(m["layers"])
    lines = [
        f"model: {m['arch']}, {m['params'] / 1e6:.1f}M parameters (largest layer {m['largest_layer_params'] / 1e6:.1f}M), "
        f"{layers} layers, hidden {m['hidden']}, {m['heads']} heads, vocab {m['vocab']}",
        f"ranks: {wl['nodes']} node(s) x {wl['gpus_per_node']} {kind} rank(s); {wl['precision']}, rows of {wl['seq_len']} "
        f"tokens, micro batch {wl['micro_batch']}, attention {wl['attention']}",
        f"per {kind} rank"
        + (f" against {format_bytes(report['rank_memory'])}" if report["rank_memory"] else "")
        + "; CPU per node" + (f" against {format_bytes(report['cpu_memory'])}" if report["cpu_memory"] else ""),
        _PHASES[report["constants"]["allocator"] == "glibc"],
        "",
    ]
    header = ["setting", *_COLUMNS, "fits", "max micro", "CPU/node"]
    rows = [header]
    for i, row in enumerate(report["settings"]):
        label = row["label"] + (" (configured)" if i == 0 else "")
        rows.append([label, *(format_bytes(row[c]) for c in _COLUMNS),
                     {True: "yes", False: "NO"}.get(row.get("fits"), "-"), str(row.get("max_micro_batch", "-")),
                     format_bytes(row["cpu_node"]) + {True: "", False: " NO"}.get(row.get("cpu_fits"), "")])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(r, widths)).rstrip() for r in rows]
    if "nearest" in report:
        lines += ["", f"the configured setting does not fit; nearest that does: {report['nearest']}"]
    return "\n".join(lines)
