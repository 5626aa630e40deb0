"""`tai report --per-class`: per-class AP across a sweep, one row per label, one column per group of runs
(the params that differ, seeds averaged), each cell `mean ± std` of that label's AP over the group's seeds.

The APs come from each run's reports/per_class.csv (evaluate's plot data, kept by git, so every experiment's
commit holds its own): read with `git show <rev>:reports/per_class.csv`, the workspace's from disk. The grouping
is `pipeline.experiments.summary.summarize`'s, so the groups are those of the main table.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from pipeline.io import write_text

from .summary import ReportError, Run, Summary, _metric_text, _param_text, summarize

PER_CLASS_FILE = "reports/per_class.csv"
PER_CLASS_TABLE = "experiments_per_class.md"
METHODS = ("adapter", "zeroshot", "prompt", "integrated")  # pipeline.evaluation.plot_data' columns


def read_per_class(repo: Path, rev: str):
    """A run's per-class table, or None where that revision has none."""
    import polars as pl

    if rev == "workspace":
        path = repo / PER_CLASS_FILE
        return pl.read_csv(path) if path.is_file() else None
    shown = subprocess.run(["git", "show", f"{rev}:{PER_CLASS_FILE}"], cwd=repo, capture_output=True)
    return pl.read_csv(io.BytesIO(shown.stdout)) if shown.returncode == 0 else None


def per_class_summary(runs: list[Run], repo: Path, method: str = "adapter") -> tuple[Summary, list[str]]:
    """(summary whose metrics are labels and values that label's AP by `method`, the labels in order)."""
    if method not in METHODS:
        raise ReportError(f"--per-class-method {method!r}: choose one of {', '.join(METHODS)}")
    with_ap, labels = [], []
    for run in runs:
        table = read_per_class(repo, run.rev)
        if table is None or method not in table.columns:
            continue
        values = dict(zip(table["label"].cast(str).to_list(), table[method].cast(float).to_list()))
        labels += [name for name in values if name not in labels]
        with_ap.append(
            Run(run.name, run.rev, run.kind, run.params, {name: ap for name, ap in values.items() if ap is not None})
        )
    if not with_ap:
        raise ReportError(
            f"no run has {PER_CLASS_FILE} (written by evaluate since per-class plots exist): "
            "rerun the experiments, or leave --per-class off"
        )
    scored = [name for name in labels if any(name in run.metrics for run in with_ap)]
    return summarize(with_ap, scored), labels


def per_class_markdown(summary: Summary, labels: list[str], method: str) -> str:
    frame = summary.frame
    groups = [
        ", ".join(f"{p}={_param_text(row[p])}" for p in summary.varied) or "all runs"
        for row in frame.iter_rows(named=True)
    ]
    lines = [
        "# Per-class AP across experiments",
        "",
        f"AP of `{method}` per label (rows) and group of runs (columns: the params that differ; seeds "
        f"{', '.join(f'`{s}`' for s in summary.seeds) or '(none vary)'} averaged), mean ± sample std over "
        "the group's runs, from each run's `reports/per_class.csv`. Empty: the label has no positive.",
        "",
        "| label | " + " | ".join(g.replace("|", "\\|") for g in groups) + " |",
        "|---|" + "---:|" * len(groups),
    ]
    for name in labels:
        cells = [
            _metric_text(row[f"{name} mean"], row[f"{name} std"], row[f"{name} n"], row["seeds"])
            if f"{name} mean" in row
            else ""
            for row in frame.iter_rows(named=True)
        ]
        lines.append(f"| {name.replace('|', '/')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_per_class_report(runs: list[Run], repo: Path, out_dir: Path, method: str = "adapter") -> Path:
    summary, labels = per_class_summary(runs, repo, method)
    return write_text(per_class_markdown(summary, labels, method), Path(out_dir) / PER_CLASS_TABLE)
