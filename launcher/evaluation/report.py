"""What ``flanforge eval`` writes: ``results.json``, ``predictions.jsonl``, ``report.md`` and PNG plots.

``results.json``::

    {"model": "...", "split": "validation", "convention": "t5x" | "lm-eval",
     "composites": {"flan2022_heldout": {"components": {component: {"metric": m, "value": v}},
                                         "mean": v | null, "not_run": {component: why}}},
     "suites": {suite: {"mean": {metric: v},
                        "skipped": {task: why},
                        "tasks": {task: {"n": int, "cluster": str, "format": str,
                                         "metrics": {metric: v}, "ci95": {metric: [lo, hi]},
                                         "invalid": int, "truncated": int, "bad_records": int}}}}}

``bad_records``: the task's source records skipped as malformed (``--on-bad-record skip``; 0 otherwise).

A weighted suite (MMLU) also has ``"split"``, ``"unweighted_mean": {metric: v}`` (over tasks) and
``"categories": {cluster: {metric: v}}``, its ``mean`` and categories weighted by the tasks' examples.
Scores are 0-100; ``ci95`` is a 95% bootstrap interval over the task's examples; ``convention`` is how
rank classification scored an option (``scoring.py``). A composite suite (``heldout.py``) is a table over
suites that are also in ``suites``; report.md shows it first.
Given another results file (``--compare``), the report puts that run (the
baseline) beside this one with the deltas, and plots per-cluster bars of both.

Every file is written aside and all are renamed into place together, ``results.json``
last (``flanforge/files.py``): an evaluation interrupted or out of disk space leaves
the previous outputs whole, or none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

from flanforge.errors import UserError
from flanforge.files import AtomicFile, publish
from flanforge.launcher.evaluation import metrics
from flanforge.launcher.training import faults
from flanforge.launcher.evaluation.evaluator import SuiteResult, mean_over
from flanforge.launcher.evaluation.scoring import CONVENTIONS
from flanforge.text import read_text

RESULTS, PREDICTIONS, REPORT = "results.json", "predictions.jsonl", "report.md"


def results_dict(model: str, split: str, suites: Sequence[SuiteResult], convention: str,
                 composites: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """results.json; ``composites``: a composite suite's table by name (``heldout.table``)."""
    return {
        "model": model,
        "split": split,
        "convention": convention,
        "composites": composites or {},
        "suites": {s.suite.name: _suite_dict(s) for s in suites},
    }


def _suite_dict(s: SuiteResult) -> dict[str, Any]:
    out: dict[str, Any] = {"mean": s.mean()}
    if s.suite.weighted:
        out.update(split=s.suite.split, unweighted_mean=mean_over(s.tasks, weighted=False), categories=s.cluster_means())
    out["skipped"] = dict(s.suite.skipped)
    out["tasks"] = {t.task.name: {"n": len(t.task.examples), "cluster": t.task.cluster, "format": t.task.format,
                                  "metrics": t.metrics, "ci95": t.ci95, "invalid": t.invalid, "truncated": t.truncated,
                                  "bad_records": t.task.bad_records}
                    for t in s.tasks}
    return out


def load_results(path: str | Path) -> dict[str, Any]:
    """A ``results.json``, or the one in a directory, checked against the shape above (what the report
    reads of it); a UserError when there is none or it does not match, saying where."""
    path = Path(path)
    path = path / RESULTS if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"--compare: no {RESULTS} at {path}")
    try:
        doc = json.loads(read_text(path, declarable=False))
    except (json.JSONDecodeError, RecursionError) as err:
        raise UserError(f"--compare: {path}: not valid JSON: {err}") from None
    problem = _shape_problem(doc)
    if problem:
        raise UserError(f"--compare: {path} is not a flanforge {RESULTS}: {problem}")
    return doc


def _shape_problem(doc: Any) -> str | None:
    """What in ``doc`` does not match the shape of a ``results.json`` (the parts a report reads), or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("suites"), dict):
        return f"expected an object with 'suites' (an object), got {_short(doc)}"
    for name, suite in doc["suites"].items():
        where = f"suites.{name}"
        if not isinstance(suite, dict) or not isinstance(suite.get("tasks"), dict):
            return f"{where} must be an object with 'mean' and 'tasks', got {_short(suite)}"
        checks = [(suite.get("mean"), f"{where}.mean")]
        if "unweighted_mean" in suite:
            checks.append((suite["unweighted_mean"], f"{where}.unweighted_mean"))
        if "categories" in suite:
            if not isinstance(suite["categories"], dict):
                return f"{where}.categories must be an object, got {_short(suite['categories'])}"
            checks += [(v, f"{where}.categories.{c}") for c, v in suite["categories"].items()]
        for task, entry in suite["tasks"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("cluster"), str):
                return f"{where}.tasks.{task} must be an object with 'cluster' and 'metrics', got {_short(entry)}"
            checks.append((entry.get("metrics"), f"{where}.tasks.{task}.metrics"))
        problem = next((p for p in (_scores_problem(v, w) for v, w in checks) if p), None)
        if problem:
            return problem
    return None


def _scores_problem(value: Any, where: str) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
    return None if ok else f"{where} must map metric names to numbers, got {_short(value)}"


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def cluster_means(suite: dict[str, Any]) -> dict[str, dict[str, float]]:
    """cluster -> metric -> unweighted mean over the cluster's tasks (a weighted suite's: its categories)."""
    if "categories" in suite:
        return suite["categories"]
    values: dict[str, dict[str, list[float]]] = {}
    for task in suite["tasks"].values():
        for metric, v in task["metrics"].items():
            values.setdefault(task["cluster"], {}).setdefault(metric, []).append(v)
    return {c: {m: sum(v) / len(v) for m, v in ms.items()} for c, ms in values.items()}


def write_outputs(out: Path, results: dict[str, Any], suites: Sequence[SuiteResult],
                  baseline: dict[str, Any] | None = None, history: list[dict[str, Any]] | None = None) -> None:
    """Every output file, published together (``results.json`` last); ``history``: the run's periodic
    evaluations (``<run>/eval/history.jsonl``), plotted by step."""
    out.mkdir(parents=True, exist_ok=True)
    files: list[AtomicFile] = []

    def staged(name: str) -> AtomicFile:
        files.append(AtomicFile(out / name))
        return files[-1]

    try:
        predictions = staged(PREDICTIONS)
        for s in suites:
            for t in s.tasks:
                for record in t.predictions:
                    predictions.write(json.dumps({"suite": s.suite.name, "format": t.task.format, **record}) + "\n")
        faults.signal_mid_write()
        plots = write_plots(staged, results, baseline)
        if history:
            plots.append(plot_history(staged, history))
        staged(REPORT).write(report_markdown(results, baseline, plots))
        staged(RESULTS).write(json.dumps(results, indent=2) + "\n")
    except BaseException:
        for f in files:
            f.discard()
        raise
    publish(files)


def _fmt(v: float | None) -> str:
    return "—" if v is None or v != v else f"{v:.1f}"


def _delta(v: float | None, base: float | None, metric: str) -> str:
    """``v - base``, and whether that is better or worse by the metric's direction (the registry's)."""
    if v is None or base is None or v != v or base != base:
        return "—"
    delta = v - base
    if round(delta, 1) == 0:
        return f"{delta:+.1f}"
    return f"{delta:+.1f} ({'better' if (delta > 0) == metrics.higher_is_better(metric) else 'worse'})"


def _table(rows: list[tuple[str, dict[str, float], dict[str, float] | None]], extra: list[str] | None = None) -> list[str]:
    """A markdown table: name, then per metric the value (and with a baseline, base and delta)."""
    names = sorted({m for _, values, _ in rows for m in values})
    compare = any(base is not None for _, _, base in rows)
    head = ["", *(f"{m} | base | Δ" if compare else m for m in names), *(extra or [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (len(head) + (2 * len(names) if compare else 0))]
    for name, values, base in rows:
        cells = []
        for m in names:
            b = (base or {}).get(m)
            cells.append(f"{_fmt(values.get(m))} | {_fmt(b)} | {_delta(values.get(m), b, m)}" if compare
                         else _fmt(values.get(m)))
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return lines


def report_markdown(results: dict[str, Any], baseline: dict[str, Any] | None, plots: list[str]) -> str:
    lines = [f"# Evaluation of {results['model']}", "", f"Split: {results['split']}. Scores 0-100; "
             f"rank classification under the {results['convention']} convention "
             f"({CONVENTIONS[results['convention']].description}) sums option log-likelihoods (accuracy) or "
             "divides them by characters (accuracy_norm); exact match is SQuAD-normalised (exact_match) or verbatim (exact_match_strict)."]
    if baseline is not None:
        lines += ["", f"Baseline (base, Δ = this − base, better or worse by each metric's direction): {baseline.get('model')}"]
    for name, composite in results.get("composites", {}).items():
        lines += ["", f"## {name}", "", "| component | metric | score |", "|---|---|---|"]
        lines += [f"| {c} | {v['metric']} | {_fmt(v['value'])} |" for c, v in composite["components"].items()]
        lines += [f"| mean of {len(composite['components'])} | | {_fmt(composite['mean'])} |"]
        if composite["not_run"]:
            lines += ["", "Not run: " + "; ".join(f"{c} ({why})" for c, why in composite["not_run"].items())]
    for name, suite in results["suites"].items():
        base_suite = (baseline or {}).get("suites", {}).get(name)
        weighted = "categories" in suite
        lines += ["", f"## {name}", "", "### Mean over questions" if weighted else "### Mean over tasks", ""]
        rows = [("mean", suite["mean"], base_suite["mean"] if base_suite else None)]
        if weighted:
            rows.append(("unweighted mean over tasks", suite["unweighted_mean"],
                         base_suite.get("unweighted_mean") if base_suite else None))
        lines += _table(rows)
        base_clusters = cluster_means(base_suite) if base_suite else {}
        lines += ["", "### Per category (weighted by questions)" if weighted else "### Per cluster", ""]
        lines += _table([(c, v, base_clusters.get(c) if base_suite else None)
                         for c, v in sorted(cluster_means(suite).items())])
        lines += ["", "### Per task", ""]
        rows = []
        for task, entry in sorted(suite["tasks"].items()):
            base_task = (base_suite or {}).get("tasks", {}).get(task)
            bad = f", bad records skipped={entry['bad_records']}" if entry.get("bad_records") else ""
            rows.append((f"{task} ({entry['cluster']}, {entry['format']}, n={entry['n']}, invalid={entry['invalid']}{bad})",
                          entry["metrics"], base_task["metrics"] if base_task else ({} if base_suite else None)))
        lines += _table(rows)
        if suite["skipped"]:
            lines += ["", f"Skipped ({len(suite['skipped'])}): "
                      + "; ".join(f"{t}: {why}" for t, why in sorted(suite["skipped"].items()))]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


Staged = Callable[[str], AtomicFile]
"""An output file by name, written aside until the outputs are published together."""


def write_plots(staged: Staged, results: dict[str, Any], baseline: dict[str, Any] | None) -> list[str]:
    """One PNG per suite: per-cluster bars of the suite's first metric (beside the baseline's)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = []
    for suite_name, suite in results["suites"].items():
        clusters = cluster_means(suite)
        if not clusters:
            continue
        metric = sorted({m for v in clusters.values() for m in v})[0]
        base = cluster_means(baseline["suites"][suite_name]) if baseline and suite_name in baseline.get("suites", {}) else None
        labels = sorted(clusters)
        fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(labels) + 2), 3.5))
        xs = range(len(labels))
        width = 0.4 if base is not None else 0.8
        if base is not None:
            ax.bar([x - width / 2 for x in xs], [base.get(c, {}).get(metric, 0.0) for c in labels], width, label="base")
        ax.bar([x + (width / 2 if base is not None else 0) for x in xs],
               [clusters[c].get(metric, 0.0) for c in labels], width, label="this model")
        ax.set_xticks(list(xs), labels, rotation=30, ha="right")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 100)
        ax.set_title(f"{suite_name}: {metric} per cluster")
        ax.legend()
        fig.tight_layout()
        name = f"{suite_name.replace('/', '_').replace(':', '_')}_clusters.png"
        fig.savefig(staged(name), format="png", dpi=100)
        plt.close(fig)
        names.append(name)
    return names


def read_history(path: Path) -> list[dict[str, Any]]:
    """The entries of a ``history.jsonl``, the last one of each step (a resumed run may repeat steps). A last
    line without its newline that does not parse (an append a kill cut short) is left out; any other line
    that is not an entry is a UserError naming the file and line."""
    if not path.is_file():
        return []
    by_step = {}
    lines = read_text(path, declarable=False).split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            by_step[entry["step"]] = entry
        except (json.JSONDecodeError, TypeError, KeyError):
            if number == len(lines):
                break
            raise UserError(f"{path}:{number}: not an evaluation entry (a JSON object with its 'step')") from None
    return [by_step[s] for s in sorted(by_step)]


def plot_history(staged: Staged, history: list[dict[str, Any]]) -> str:
    """``training_curve.png``: each suite's mean metrics and the validation loss against the training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [e["step"] for e in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for suite in history[-1]["suites"]:
        for metric in history[-1]["suites"][suite]["mean"]:
            left.plot(steps, [e["suites"].get(suite, {}).get("mean", {}).get(metric, float("nan")) for e in history],
                      marker="o", label=f"{suite} {metric}")
    left.set_xlabel("step")
    left.set_ylabel("score")
    left.set_ylim(0, 100)
    left.legend(fontsize="small")
    right.plot(steps, [e["val_loss"].get("all", float("nan")) for e in history], marker="o")
    right.set_xlabel("step")
    right.set_ylabel("val/loss")
    fig.tight_layout()
    name = "training_curve.png"
    fig.savefig(staged(name), format="png", dpi=100)
    plt.close(fig)
    return name
