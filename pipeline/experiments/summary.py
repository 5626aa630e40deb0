"""`tai report`: experiments from `dvc exp show --json`, averaged over seeds, as a table and a curve.

Every run DVC knows (the workspace, the baseline commits, their experiments) becomes one row of
flattened params (`train.radius`; params files other than params.yaml as `file.yaml:key`) and
numeric metrics (named by the metrics file's shortest unique path without extension, so
`reports/eval.json:map` is `eval.map`). Runs are grouped by the params that differ between them,
seed params excepted: seeds are the repetition axis, and each group's metrics are averaged over its
runs (mean and sample standard deviation). A missing metric (DVC could not read the file, or the key
is absent) is an empty cell, never a zero. Failed, queued or running experiments and revs DVC
could not read are listed apart, never averaged.

Runs with identical params and metrics count once: after a direct `dvc exp run`, the workspace holds
exactly the results of the experiment it just ran.

The table shows the headline metrics (`HEADLINE_METRICS`, those present) unless asked for others:
a real pipeline writes about 28 numbers per run, most of them counts.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import UserError
from pipeline.evaluation.figures import placeholder_figure, sweep_figure
from pipeline.io import write_text

from .paper_targets import target_for

SEED_PARAMS = ("train.seed", "generate.seed", "fewshot.seed", "partial.seed")
# The numbers the paper's tables report, in this order: the adapter's mAP, integrated with another
# method's scores and that method alone (evaluate.integrate_with), a prompt method's, the CLIP baseline.
HEADLINE_METRICS = ("eval.map", "eval.integrated_map", "eval.other_map", "prompt.map", "zeroshot.map")
DEFAULT_PARAMS_FILE = "params.yaml"
TABLE_NAME = "experiments.md"
PLOT_NAME = "experiments.png"


class ReportError(UserError):
    """Something the user must fix (DVC failed, an unknown metric or param was asked for)."""


@dataclass(frozen=True)
class Run:
    """One finished run: its name, revision, kind (workspace | baseline | experiment), values."""

    name: str
    rev: str
    kind: str
    params: dict
    metrics: dict  # readable name -> float; a metric DVC could not read is absent
    unreadable: tuple[str, ...] = ()  # metrics files DVC reported an error for


@dataclass(frozen=True)
class Skipped:
    """A rev that is not averaged, and why (failed, queued, running, or DVC's error)."""

    name: str
    rev: str
    state: str


@dataclass
class Summary:
    """One row per group: the varied params, the run count, and mean/std of every chosen metric."""

    frame: object  # polars.DataFrame: varied params..., "seeds", "<metric> mean", "<metric> std", "<metric> n"
    varied: list[str]
    seeds: list[str]  # the seed params that vary between runs
    metrics: list[str]
    skipped: list[Skipped] = field(default_factory=list)
    unreadable: dict[str, int] = field(default_factory=dict)  # metrics file -> runs DVC could not read it in
    available: list[str] = field(default_factory=list)  # every metric of the runs, chosen or not
    group_params: list[dict] = field(default_factory=list)  # every param of each row's first run (paper targets)


# --------------------------------------------------------------------------------------------- reading


def exp_show_json(repo: str | Path = ".", all_commits: bool = False) -> list:
    """Run `dvc exp show --json` in `repo` (DVC of this Python) and return its parsed output."""
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["--all-commits"] if all_commits else [])
    try:
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=False)
    except OSError as e:
        raise ReportError(f"cannot run {' '.join(command[2:])} in {repo}: {e}") from e
    if done.returncode != 0:
        raise ReportError(f"`dvc exp show --json` failed in {repo} (exit {done.returncode}): {done.stderr.strip()}")
    return parse_exp_show(done.stdout, source=f"`dvc exp show --json` in {repo}")


def parse_exp_show(text: str, source: str = "the JSON") -> list:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{source} is not JSON ({e})") from e
    if not isinstance(data, list):
        raise ReportError(
            f"{source} is not the list `dvc exp show --json` prints (DVC >= 3); got {type(data).__name__}"
        )
    return data


def collect_runs(exp_show: list) -> tuple[list[Run], list[Skipped]]:
    """Every finished run in `dvc exp show --json` output, and the revs that are not runs to average."""
    raw: list[tuple[str, str, str, dict, dict]] = []
    skipped: list[Skipped] = []

    def visit(entry: dict, kind: str, state: str | None) -> None:
        rev = str(entry.get("rev") or "")
        name = entry.get("name") or short_rev(rev)
        if state in ("failed", "queued", "running"):
            skipped.append(Skipped(name, rev, state))
        elif entry.get("error") or not isinstance(entry.get("data"), dict):
            skipped.append(Skipped(name, rev, f"error: {_error_text(entry.get('error'))}"))
        else:
            data = entry["data"]
            raw.append((name, rev, kind, _flatten_files(data.get("params")), *_metric_files(data)))

    for top in exp_show:
        if not isinstance(top, dict):
            continue
        visit(top, "workspace" if top.get("rev") == "workspace" else "baseline", None)
        for group in top.get("experiments") or []:
            executor = group.get("executor") or {}
            state = executor.get("state") if isinstance(executor, dict) else None
            for i, entry in enumerate(group.get("revs") or []):
                if i == 0 and group.get("name") and not entry.get("name"):
                    entry = {**entry, "name": group["name"]}
                visit(entry, "experiment", state)

    names = _metric_names({path for *_, files, _ in raw for path in files})
    runs: list[Run] = []
    for name, rev, kind, params, files, unreadable in raw:
        metrics: dict = {}
        for path, values in files.items():
            for key, value in values.items():
                metrics[f"{names[path]}.{key}" if key else names[path]] = value
        runs.append(Run(name, rev, kind, params, metrics, unreadable))
    return _unique(runs), skipped


def _error_text(error) -> str:
    if isinstance(error, dict):
        return str(error.get("msg") or error.get("type") or error)
    return str(error)


def _flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out: dict = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: tree}


def _flatten_files(files) -> dict:
    """{file: {"data": tree} | {"error": ...}} -> {"section.key": value} (params.yaml unprefixed)."""
    out: dict = {}
    for path, content in (files or {}).items():
        tree = content.get("data") if isinstance(content, dict) else None
        prefix = "" if path == DEFAULT_PARAMS_FILE else f"{path}:"
        for key, value in _flatten(tree or {}).items():
            out[prefix + key] = _canonical(value)
    return out


def _metric_files(data: dict) -> tuple[dict, tuple[str, ...]]:
    """({metrics file: {flattened key: number}}, files DVC could not read); non-numbers are left out."""
    out: dict = {}
    unreadable = []
    for path, content in (data.get("metrics") or {}).items():
        tree = content.get("data") if isinstance(content, dict) else None
        if tree is None:
            unreadable.append(path)
        out[path] = {k: float(v) for k, v in _flatten(tree or {}).items() if _is_number(v)}
    return out, tuple(unreadable)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _canonical(value):
    """Lists become tuples (hashable) and integral floats ints, so 10 and 10.0 are one value."""
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _metric_names(paths: set[str]) -> dict[str, str]:
    """Each metrics file's shortest unique path suffix, without extension: reports/eval.json -> eval."""
    parts = {p: Path(p).with_suffix("").as_posix().split("/") for p in paths}
    names: dict[str, str] = {}
    for path, segments in parts.items():
        for n in range(1, len(segments) + 1):
            candidate = segments[-n:]
            if all(other[-n:] != candidate for q, other in parts.items() if q != path):
                names[path] = "/".join(candidate)
                break
        else:
            names[path] = path
    return names


def _unique(runs: list[Run]) -> list[Run]:
    """Drop a run whose params and metrics equal an earlier one's; a named run beats the workspace."""
    ordered = sorted(runs, key=lambda r: r.kind == "workspace")
    seen: set = set()
    out = []
    for run in ordered:
        key = (tuple(sorted(run.params.items(), key=lambda kv: kv[0])), tuple(sorted(run.metrics.items())))
        try:
            if key in seen:
                continue
            seen.add(key)
        except TypeError:  # an unhashable value: keep the run
            pass
        out.append(run)
    return out


# --------------------------------------------------------------------------------------------- grouping


def summarize(runs: list[Run], metrics: list[str] | None = None, skipped: list[Skipped] | None = None) -> Summary:
    """Group `runs` by the non-seed params that differ between them; mean and std over each group."""
    import polars as pl

    available = available_metrics(runs)
    if metrics:
        unknown = [m for m in metrics if m not in available]
        if unknown:
            raise ReportError(f"unknown metric(s) {unknown}: choose from {available or '(no metrics found)'}")
    chosen = list(metrics) if metrics else available
    names = sorted(set().union(*(r.params for r in runs))) if runs else []
    differing = [p for p in names if len({_key(r.params.get(p)) for r in runs}) > 1]
    varied = [p for p in differing if p not in SEED_PARAMS]
    seeds = [p for p in differing if p in SEED_PARAMS]

    groups: dict[tuple, int] = {}
    values: list[dict] = []
    firsts: list[dict] = []
    rows = []
    for run in runs:
        key = tuple(_key(run.params.get(p)) for p in varied)
        if key not in groups:
            groups[key] = len(groups)
            values.append({p: run.params.get(p) for p in varied})
            firsts.append(run.params)
        rows.append({"group": groups[key], **{m: run.metrics.get(m) for m in chosen}})
    schema = {"group": pl.Int64, **{m: pl.Float64 for m in chosen}}
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    aggregated = frame.group_by("group").agg(
        pl.len().alias("seeds"),
        *(
            e
            for m in chosen
            for e in (
                pl.col(m).mean().alias(f"{m} mean"),
                pl.col(m).std(ddof=1).alias(f"{m} std"),
                pl.col(m).count().alias(f"{m} n"),
            )
        ),
    )
    order = sorted(range(len(values)), key=lambda g: tuple(_sort_key(values[g][p]) for p in varied))
    columns = {p: [values[g][p] for g in order] for p in varied}
    dtypes = {p: _dtype(column) for p, column in columns.items()}
    params_frame = pl.DataFrame(
        {
            "group": order,
            "order": list(range(len(order))),
            **{p: [_cell(v, dtypes[p]) for v in column] for p, column in columns.items()},
        },
        schema={"group": pl.Int64, "order": pl.Int64, **dtypes},
    )
    table = params_frame.join(aggregated, on="group", how="left").sort("order").drop("group", "order")
    unreadable: dict[str, int] = {}
    for run in runs:
        for path in run.unreadable:
            unreadable[path] = unreadable.get(path, 0) + 1
    return Summary(table, varied, seeds, chosen, list(skipped or []), unreadable, available, [firsts[g] for g in order])


def available_metrics(runs: list[Run]) -> list[str]:
    """Every metric of any run, in the order they first appear."""
    return _ordered_union(r.metrics for r in runs)


def headline_metrics(available: list[str]) -> list[str]:
    """The HEADLINE_METRICS among `available`, in that order; every metric when none of them is there."""
    return [m for m in HEADLINE_METRICS if m in available] or list(available)


def _ordered_union(dicts) -> list[str]:
    out: dict[str, None] = {}
    for d in dicts:
        out.update(dict.fromkeys(d))
    return list(out)


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _sort_key(value):
    if value is None:
        return (2, 0, "")
    if _is_number(value):
        return (0, value, "")
    return (1, 0, str(value))


def _cell(value, dtype):
    """A param value as its column holds it: mixed or list-valued columns hold text."""
    import polars as pl

    if value is None or dtype != pl.String:
        return value
    return json.dumps(list(value)) if isinstance(value, tuple) else str(value)


def _dtype(values):
    import polars as pl

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pl.Boolean
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pl.Int64
    if present and all(_is_number(v) for v in present):
        return pl.Float64
    return pl.String


# --------------------------------------------------------------------------------------------- outputs


def default_metric(metrics: list[str]) -> str | None:
    """The adapter's mAP when there is one (`eval...map`), else any `map`, else the first metric."""
    maps = [m for m in metrics if m.rsplit(".", 1)[-1] == "map"]
    adapter = [m for m in maps if "eval" in m.rsplit(".", 1)[0]]
    return (adapter or maps or metrics or [None])[0]


def default_x(summary: Summary) -> str | None:
    """The varied numeric param with the most distinct values, else the varied param with the most."""
    frame = summary.frame

    def distinct(p):
        return frame[p].drop_nulls().n_unique()

    numeric = [p for p in summary.varied if frame[p].dtype.is_numeric()]
    pool = numeric or summary.varied
    return max(pool, key=lambda p: (distinct(p), -pool.index(p))) if pool else None


def markdown(summary: Summary, source: str = "`dvc exp show --json`") -> str:
    """The summary as Markdown: one row per group, `mean ± std` cells, runs not counted listed after."""
    frame = summary.frame
    lines = ["# Experiments", ""]
    lines.append(
        f"From {source}: {int(frame['seeds'].sum()) if frame.height else 0} run(s) in {frame.height} group(s). "
        "Metric cells are the mean ± sample standard deviation over the runs of a group "
        "(no ± with one run; `(k of n)` when only k runs have the metric; empty when none has it)."
    )
    hidden = len(summary.available) - len(summary.metrics)
    if hidden > 0:
        lines += ["", f"Headline metrics only: {hidden} more in the runs (`tai report --all-metrics` shows every one)."]
    lines.append("")
    lines.append(
        f"Varied params: {', '.join(f'`{p}`' for p in summary.varied) or '(none)'}; "
        f"seeds (repetitions): {', '.join(f'`{p}`' for p in summary.seeds) or '(none vary)'}."
    )
    if summary.unreadable:
        total = int(frame["seeds"].sum())
        lines.append("")
        lines.append(
            "DVC could not read these metrics files (their cells are empty): "
            + ", ".join(f"`{path}` ({n} of {total} runs)" for path, n in summary.unreadable.items())
            + "."
        )
    lines.append("")
    header = [*summary.varied, "seeds", *summary.metrics]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if i < len(summary.varied) else "---:" for i in range(len(header))) + "|")
    targeted = False
    for index, row in enumerate(frame.iter_rows(named=True)):
        cells = [_param_text(row[p]) for p in summary.varied] + [str(row["seeds"])]
        params = summary.group_params[index] if index < len(summary.group_params) else {}
        for m in summary.metrics:
            text, target = (
                _metric_text(row[f"{m} mean"], row[f"{m} std"], row[f"{m} n"], row["seeds"]),
                target_for(params, m),
            )
            if text and target is not None:
                text, targeted = f"{text} [paper {target.map:.1f}]", True
            cells.append(text)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if targeted:
        lines += [
            "",
            "`[paper X]`: the mAP (%) the paper reports for the table cell whose setting the row matches "
            "(dataset, setting, shots or known share, method: pipeline/experiments/paper_targets.csv); ours are fractions.",
        ]
    if summary.skipped:
        lines += ["", "## Not counted", "", "| experiment | rev | state |", "|---|---|---|"]
        for s in summary.skipped:
            lines.append(f"| {s.name} | {short_rev(s.rev)} | {s.state.replace('|', '/').replace(chr(10), ' ')} |")
    return "\n".join(lines) + "\n"


def short_rev(rev: str) -> str:
    """A commit's first 7 hex digits, like git; anything else (`workspace`) as it is."""
    return rev[:7] if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev) else rev


def _param_text(value) -> str:
    return "" if value is None else str(value)


def _number(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:.1f}"


def _metric_text(mean, std, n, runs) -> str:
    if not n or mean is None:
        return ""
    text = _number(mean)
    if n > 1 and std is not None and not math.isnan(std):
        text += f" ± {_number(std)}"
    if n < runs:
        text += f" ({n} of {runs})"
    return text


def curves(summary: Summary, metric: str, x: str) -> dict[str, list[tuple]]:
    """{line label: [(x, mean, std), ...]}: one line per combination of the varied params other than
    `x`; groups without a value of `x` or of `metric` are left out."""
    others = [p for p in summary.varied if p != x]
    lines: dict[str, list[tuple]] = {}
    for row in summary.frame.iter_rows(named=True):
        if row[x] is None or row[f"{metric} mean"] is None:
            continue
        label = ", ".join(f"{p}={_param_text(row[p])}" for p in others) or metric
        lines.setdefault(label, []).append((row[x], row[f"{metric} mean"], row[f"{metric} std"]))
    return lines


def plot(summary: Summary, metric: str | None, x: str | None, path: str | Path) -> Path:
    """`metric` (mean, std error bars) against param `x`, one line per combination of the other varied params."""
    if metric is None:
        return placeholder_figure(path, "no metrics found in the experiments")
    if x is None:
        return placeholder_figure(path, f"no param varies between the experiments: nothing to plot {metric} against")
    lines = curves(summary, metric, x)
    if not lines:
        return placeholder_figure(path, f"no experiment has {metric}")
    return sweep_figure(path, lines, x_label=x, y_label=metric, title=f"{metric} against {x} (mean ± std over seeds)")


def write_report(
    exp_show: list,
    out_dir: str | Path,
    metrics: list[str] | None = None,
    x: str | None = None,
    source: str = "`dvc exp show --json`",
    all_metrics: bool = False,
) -> tuple[Path, Path, Summary]:
    """Write `experiments.md` and `experiments.png` into `out_dir`; returns both paths and the summary.

    The table's metrics: `metrics` when given, else every metric with `all_metrics`, else the headline ones."""
    if metrics and all_metrics:
        raise ReportError("--metric and --all-metrics both given: name the metrics, or ask for all of them")
    runs, skipped = collect_runs(exp_show)
    if not metrics and not all_metrics:
        metrics = headline_metrics(available_metrics(runs))
    summary = summarize(runs, metrics, skipped)
    if x is not None and x not in summary.varied:
        raise ReportError(
            f"--x {x!r} is not a param that varies between experiments (seeds excluded): "
            f"choose from {summary.varied or '(none)'}"
        )
    metric = metrics[0] if metrics else default_metric(summary.metrics)
    x = x or default_x(summary)
    out_dir = Path(out_dir)
    table = write_text(markdown(summary, source), out_dir / TABLE_NAME)
    picture = plot(summary, metric, x, out_dir / PLOT_NAME)
    return table, picture, summary
