"""The `tai` command line (console script `tai = pipeline.cli:app`).

    tai download voc2007|coco2014 [--dest data/downloads] [--keep-archives]   fetch, check, unpack (resumes)
    tai download nuswide                                    where to get NUS-WIDE (no official download)
    tai inspect PATH                                        look inside an artifact
    tai report [--metric M | --all-metrics] [--x PARAM] [--json FILE] [--per-class]   experiments: mean ± std over seeds
    tai predict FOLDER [--model DIR] [--top-k K] [--thresholds FILE]   label a folder of images
    tai export DIR [--onnx] [--thresholds FILE]             the trained classifier as safetensors + config + card
    tai gallery [PREDICTIONS] [--out gallery.html]          browse predictions (or the evaluation split) in a browser
    tai thresholds FOLDER LABELS_FILE [--out thresholds.json]   per-label thresholds chosen on labelled images
    tai doctor [--params params.yaml]                       the machine, versions against the lock, problems + fixes

`inspect` understands Parquet files (rows, schema, first rows), Arrow IPC embeddings (an `.arrow`
file or a folder of `.arrow` shards with columns `id` + `embedding`: rows, dimension, schema
metadata, shards) and JSON files (pretty-printed).

Importing this module silences dependencies' deprecation noise (`pipeline.dependency_warnings`: it is
the `tai` entry point) and has no other side effect; heavy imports happen inside the commands.
"""

from __future__ import annotations

from pipeline.dependency_warnings import silence

silence()  # before typer and the commands' imports

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from pipeline import paths  # noqa: E402

# Each command imports the library modules it needs inside itself: `import pipeline.cli` (`tai --help`) stays free
# of torch, polars and pyarrow (tests/test_cli.py), 0.05 s instead of several seconds.
from pipeline.errors import EXIT_USER_ERROR, UserError, one_line  # noqa: E402


class _UserErrorsExit2(TyperGroup):
    """Every command's user errors end the same way as a stage's: one line, exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (UserError, FileNotFoundError) as e:
            raise _fail(one_line(e)) from None


app = typer.Typer(
    name="tai",
    cls=_UserErrorsExit2,
    help="TaI-Adapter: multi-label image classifiers trained from text alone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fail(message: str) -> "typer.Exit":
    _console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code=EXIT_USER_ERROR)


# --------------------------------------------------------------------------------------------- download


@app.command()
def download(
    name: str = typer.Argument(..., help="what to download: voc2007, coco2014 (nuswide: says how to get it)"),
    dest: Path = typer.Option(
        paths.DOWNLOADS, "--dest", help="folder to unpack into (the download stage's, by default)"
    ),
    keep_archives: bool = typer.Option(False, "--keep-archives", help="keep the downloaded archives in DEST"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
) -> None:
    """Download a dataset, check its MD5 sums and unpack it into DEST (default: data/); an interrupted
    download resumes where it stopped when run again."""
    from pipeline.data.datasets.specs import download_dataset
    from pipeline.data.download import ManualDownloadError

    console = _console()
    try:
        folder = download_dataset(
            name, dest, keep_archives=keep_archives, progress=progress, log=lambda m: console.print(m, soft_wrap=True)
        )
    except ManualDownloadError as e:
        console.print(str(e), soft_wrap=True, markup=False)
        raise typer.Exit(code=EXIT_USER_ERROR)
    console.print(f"[green]done:[/] {folder}")


# --------------------------------------------------------------------------------------------- inspect


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="a .parquet, .json, .arrow file, or a folder of .arrow shards"),
    rows: int = typer.Option(5, "--rows", "-n", min=0, help="rows to show from a Parquet file"),
) -> None:
    """Show what an artifact holds: rows, schema and first rows, embedding dimension and metadata, or JSON."""
    if not path.exists():
        raise _fail(f"{path} does not exist")
    if path.is_dir():
        shards = sorted(path.glob("*.arrow"))
        if not shards:
            raise _fail(f"{path} is a folder without .arrow shards; point inspect at a .parquet, .json or .arrow file")
        _inspect_arrow(path, shards)
    elif path.suffix.lower() in (".parquet", ".pq"):
        _inspect_parquet(path, rows)
    elif path.suffix.lower() in (".arrow", ".ipc", ".feather"):
        _inspect_arrow(path, [path])
    elif path.suffix.lower() == ".json":
        _inspect_json(path)
    else:
        raise _fail(f"{path}: unknown kind {path.suffix or '(no extension)'!r}; inspect reads .parquet, .json, .arrow")


def _inspect_parquet(path: Path, n: int) -> None:
    import polars as pl
    from rich.table import Table

    try:
        schema = pl.read_parquet_schema(path)
        height = pl.scan_parquet(path).select(pl.len()).collect().item()
        head = pl.read_parquet(path, n_rows=n)
    except Exception as e:  # noqa: BLE001 - polars raises several kinds for a bad file
        raise _fail(f"{path}: cannot read it as Parquet ({e})")
    console = _console()
    console.print(f"[bold]{path}[/]: Parquet, {height} rows, {len(schema)} columns")
    table = Table("column", "dtype", title="schema", title_justify="left")
    for column, dtype in schema.items():
        table.add_row(column, str(dtype))
    console.print(table)
    if n and head.height:
        preview = Table(*head.columns, title=f"first {head.height} rows", title_justify="left")
        for row in head.iter_rows():
            preview.add_row(*(_short(v) for v in row))
        console.print(preview)


def _short(value, limit: int = 60) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_ipc(path: Path):
    """(rows, schema) of an Arrow IPC file (file format, or stream format as a fallback)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.memory_map(str(path)) as source:
        try:
            reader = ipc.open_file(source)
            return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches)), reader.schema
        except pa.ArrowInvalid:
            source.seek(0)
            table = ipc.open_stream(source).read_all()
            return table.num_rows, table.schema


def _inspect_arrow(path: Path, shards: list[Path]) -> None:
    import pyarrow as pa
    from rich.table import Table

    total, schema = 0, None
    for shard in shards:
        try:
            rows, shard_schema = _read_ipc(shard)
        except (pa.ArrowException, OSError) as e:
            raise _fail(f"{shard}: cannot read it as Arrow IPC ({e})")
        total += rows
        if schema is None:
            schema = shard_schema
        elif not shard_schema.equals(schema, check_metadata=False):
            raise _fail(f"{shard}: its schema differs from {shards[0].name}'s; the shards do not belong together")
    console = _console()
    console.print(f"[bold]{path}[/]: Arrow IPC, {total} rows, {len(shards)} shard{'s' * (len(shards) != 1)}")
    if "embedding" in schema.names:
        field_type = schema.field("embedding").type
        if pa.types.is_fixed_size_list(field_type):
            console.print(f"dimension: {field_type.list_size} ({field_type.value_type})")
        else:
            console.print(f"[yellow]embedding column is {field_type}, not a fixed-size list[/]")
    missing = [c for c in ("id", "embedding") if c not in schema.names]
    if missing:
        console.print(f"[yellow]not an embedding file: no column(s) {missing}[/]")
    fields = Table("column", "type", title="schema", title_justify="left")
    for f in schema:
        fields.add_row(f.name, str(f.type))
    console.print(fields)
    metadata = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in (schema.metadata or {}).items()}
    if metadata:
        meta = Table("key", "value", title="metadata", title_justify="left")
        for key, value in sorted(metadata.items()):
            meta.add_row(key, _short(value, 200))
        console.print(meta)
    else:
        console.print("metadata: (none)")


def _inspect_json(path: Path) -> None:
    from rich.json import JSON

    try:
        text = path.read_text()
        json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(f"{path}: not valid JSON ({e})")
    console = _console()
    console.print(f"[bold]{path}[/]:")
    console.print(JSON(text))


# --------------------------------------------------------------------------------------------- predict


@app.command()
def predict(
    folder: Path = typer.Argument(..., help="a folder of images (searched recursively)"),
    model: Path = typer.Option(
        None,
        "--model",
        help="an exported classifier folder (`tai export`); default: the workspace's adapter (--adapter)",
    ),
    adapter: Path = typer.Option(paths.MODEL, "--adapter", help="a trained adapter bundle of the workspace"),
    out: Path = typer.Option(None, "--out", help="write the table here (.parquet or .csv); default: print it"),
    threshold: float = typer.Option(
        None,
        "--threshold",
        min=0.0,
        max=1.0,
        help="probability to predict a label, for every label [default: the "
        "model's per-label thresholds (an export's, or chosen by train), else 0.5]",
    ),
    thresholds: Path = typer.Option(
        None,
        "--thresholds",
        help="per-label thresholds: JSON {label: t} or CSV with columns label,threshold; other labels use --threshold",
    ),
    top_k: int = typer.Option(
        None,
        "--top-k",
        min=1,
        help="predict at most K labels per image, the most likely (with --threshold 0: exactly the K most likely)",
    ),
    clip_model: str = typer.Option(None, "--clip-model", help="CLIP name or checkpoint; default: the classifier's"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
) -> None:
    """Label every image in FOLDER with a trained classifier: the predicted labels and one probability per label."""
    from pipeline.io import write_parquet, write_text
    from pipeline.shipping.predict import predict_folder

    frame, skipped = predict_folder(
        model or adapter, folder, clip_model, threshold, device, batch_size, top_k=top_k, thresholds_file=thresholds
    )
    console = _console()
    for path, why in skipped:
        console.print(f"[yellow]skipped[/] {path}: {why}", soft_wrap=True)
    if out is None:
        for path, labels in zip(frame["path"], frame["predicted"]):
            console.print(f"{path}\t{', '.join(labels) or '-'}", soft_wrap=True)
    elif out.suffix == ".csv":
        write_text(frame.with_columns(frame["predicted"].list.join("|")).write_csv(), out)
    else:
        write_parquet(frame, out)
    console.print(f"[green]{len(frame)} image(s) scored[/], {len(skipped)} skipped" + (f"; wrote {out}" if out else ""))


# --------------------------------------------------------------------------------------------- export


@app.command()
def export(
    out_dir: Path = typer.Argument(..., help="the folder to write (created; an earlier export there is replaced)"),
    adapter: Path = typer.Option(paths.MODEL, "--adapter", help="the trained adapter bundle to export"),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="the params it was trained with"),
    reports_dir: Path = typer.Option(paths.REPORTS, "--reports", help="where the metrics the card quotes are"),
    thresholds: Path = typer.Option(
        None,
        "--thresholds",
        help="per-label thresholds to ship (JSON or CSV, as "
        "for predict); others keep the adapter's own (chosen by train) or 0.5",
    ),
    onnx: bool = typer.Option(
        False,
        "--onnx",
        help="also write model.onnx: pixels to probabilities, CLIP image "
        "encoder and adapter in one graph (pip install -e '.\\[onnx]')",
    ),
    clip_model: str = typer.Option(
        None,
        "--clip-model",
        help="where to find the adapter's CLIP, when not where it was at training (its identity is checked)",
    ),
) -> None:
    """Write the trained classifier as a folder other programs load without pickle: model.safetensors,
    config.json, a model card (README.md) and, with --onnx, model.onnx."""
    from pipeline.shipping.export import export_workspace

    folder = export_workspace(out_dir, adapter, params_file, reports_dir, thresholds, onnx, clip_model)
    files = ", ".join(sorted(p.name for p in folder.iterdir()))
    _console().print(f"[green]exported[/] {folder}: {files}", soft_wrap=True)


# --------------------------------------------------------------------------------------------- thresholds


@app.command()
def thresholds(
    folder: Path = typer.Argument(..., help="a small folder of your own labelled images"),
    labels_file: Path = typer.Argument(
        ...,
        help="its labels: CSV or Parquet with columns path (relative to "
        "FOLDER), labels ('a|b'), split (ignored), as prepare.labels_file",
    ),
    out: Path = typer.Option(Path("thresholds.json"), "--out", help="where to write {label: threshold}"),
    model: Path = typer.Option(None, "--model", help="an exported classifier folder; default: --adapter"),
    adapter: Path = typer.Option(paths.MODEL, "--adapter", help="a trained adapter bundle of the workspace"),
    check: float = typer.Option(
        0.5,
        "--check",
        min=0.0,
        max=0.9,
        help="share of the images set aside to measure F1 at the chosen thresholds against 0.5 (0: choose on all)",
    ),
    seed: int = typer.Option(0, "--seed", help="which images are set aside"),
    clip_model: str = typer.Option(None, "--clip-model", help="CLIP name or checkpoint; default: the classifier's"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
) -> None:
    """Choose per-label thresholds maximising F1 on a labelled folder; use them with `tai predict --thresholds`
    and `tai export --thresholds`."""
    from pipeline.io import write_json
    from pipeline.shipping.folder_thresholds import choose_on_folder

    result = choose_on_folder(model or adapter, folder, labels_file, check, seed, device, clip_model)
    write_json(result.thresholds, out)
    console = _console()
    console.print(
        f"[green]wrote[/] {out}: thresholds for {len(result.thresholds)} label(s), chosen on "
        f"{result.n_chosen_on} image(s) (labels with no positive among them keep 0.5)",
        soft_wrap=True,
    )
    if result.f1_checked is not None:
        console.print(
            f"micro F1 on the {result.n_checked} set-aside image(s): {result.f1_checked:.3f} at these "
            f"thresholds, {result.f1_checked_at_default:.3f} at 0.5",
            soft_wrap=True,
        )


# --------------------------------------------------------------------------------------------- gallery


@app.command()
def gallery(
    predictions: Path = typer.Argument(
        None,
        help="a `tai predict --out` table (.parquet or .csv); default: the "
        "workspace's evaluation split, with its ground truth",
    ),
    out: Path = typer.Option(Path("gallery.html"), "--out", help="the HTML file to write"),
    model: Path = typer.Option(
        None,
        "--model",
        help="the classifier whose thresholds to show (an export or an "
        "adapter bundle); default: the workspace's adapter when it exists",
    ),
    threshold: float = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="one threshold for every label [default: the model's own, else 0.5]"
    ),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="the workspace's params (dataset, split)"),
) -> None:
    """Write one self-contained HTML page (no server, no network) to browse predictions: thumbnails, predicted
    labels with probabilities, the thresholds; on the evaluation split also the truth with FP/FN marked."""
    from pipeline.shipping.gallery import from_evaluation, from_predictions, model_thresholds, write_gallery

    if model is None and paths.MODEL.is_file():
        model = paths.MODEL
    labels, thresholds, source = model_thresholds(model, threshold)
    if predictions is not None:
        data = from_predictions(predictions, labels, thresholds, source)
    else:
        from pipeline.config import load_params
        from pipeline.data.manifest import read_split

        params = load_params(params_file)
        if labels is None:
            raise _fail(f"no trained adapter at {paths.MODEL}: run `dvc repro` first, or pass a predictions table")
        data = from_evaluation(
            paths.EVAL / "scores.parquet",
            read_split(params.prepare.dataset, params.evaluate.split),
            labels,
            thresholds,
            source,
        )
    write_gallery(data, out)
    _console().print(
        f"[green]wrote[/] {out}: {len(data.names)} image(s), thresholds chosen on: {source}", soft_wrap=True
    )


# --------------------------------------------------------------------------------------------- report


@app.command()
def report(
    out_dir: Path = typer.Option(Path("reports"), "--out-dir", help="where experiments.md and experiments.png go"),
    metric: list[str] = typer.Option(
        None,
        "--metric",
        "-m",
        help="a metric column (e.g. eval.map); repeat for several. Default: the headline metrics in the table "
        "(eval.map, eval.integrated_map, eval.other_map, prompt.map, zeroshot.map: those present), the adapter's "
        "mAP in the plot (the first --metric when given)",
    ),
    all_metrics: bool = typer.Option(
        False, "--all-metrics", help="every numeric metric in the table, not only the headline ones"
    ),
    x: str = typer.Option(
        None,
        "--x",
        help="the param on the plot's x axis; default: the varied numeric param with the most distinct values",
    ),
    json_file: Path = typer.Option(
        None, "--json", help="read this saved `dvc exp show --json` output instead of running DVC"
    ),
    all_commits: bool = typer.Option(
        False,
        "--all-commits",
        "-A",
        help="also the experiments of every commit, not only HEAD's (passed to dvc exp show)",
    ),
    per_class: bool = typer.Option(
        False,
        "--per-class",
        help="also experiments_per_class.md: each label's AP, "
        "mean ± std over seeds per group (from each run's reports/per_class.csv)",
    ),
    per_class_method: str = typer.Option(
        "adapter", "--per-class-method", help="whose AP --per-class shows: adapter, zeroshot, prompt or integrated"
    ),
) -> None:
    """Summarise the DVC experiments: mean ± std over seeds per setting (Markdown) and a metric curve (PNG)."""
    from pipeline.experiments.summary import ReportError, exp_show_json, parse_exp_show, short_rev, write_report

    if json_file is not None:
        try:
            text = json_file.read_text()
        except OSError as e:
            raise ReportError(f"cannot read {json_file}: {e}") from e
        data, source = parse_exp_show(text, source=str(json_file)), f"`{json_file}`"
    else:
        data, source = exp_show_json(".", all_commits=all_commits), "`dvc exp show --json`"
    table, picture, summary = write_report(data, out_dir, metric or None, x, source, all_metrics)
    console = _console()
    for s in summary.skipped:
        console.print(f"[yellow]not counted[/] {s.name} ({short_rev(s.rev)}): {s.state}", soft_wrap=True)
    console.print(
        f"[green]{summary.frame.height} group(s)[/] of {int(summary.frame['seeds'].sum()) if summary.frame.height else 0}"
        f" run(s), varied: {', '.join(summary.varied) or '(none)'}; wrote {table} and {picture}",
        soft_wrap=True,
    )
    if per_class:
        from pipeline.experiments.per_class_summary import write_per_class_report
        from pipeline.experiments.summary import collect_runs

        runs, _ = collect_runs(data)
        console.print(f"wrote {write_per_class_report(runs, Path('.'), out_dir, per_class_method)}", soft_wrap=True)


# ----------------------------------------------------------------------------------------------- doctor


@app.command()
def doctor(
    params: Path = typer.Option(Path("params.yaml"), "--params", help="the params.yaml whose models and data to check"),
) -> None:
    """What this machine runs the project with, and every problem found, one line each naming the fix
    (exit 1 if any): run it first on a new machine, and paste it into a bug report."""
    from pipeline.doctor import EXIT_PROBLEMS, render, run_checks

    findings = run_checks(params)
    typer.echo(render(findings))
    if any(f.fix is not None for f in findings):
        raise typer.Exit(code=EXIT_PROBLEMS)


@app.command()
def sweep(
    set_param: list[str] = typer.Option(
        ...,
        "--set-param",
        "-S",
        help="as `dvc exp run -S`: `train.radius=0,10,25` queues one experiment per value; several -S make a grid",
    ),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="queue workers at once (each runs one experiment)"),
    out_dir: Path = typer.Option(Path("reports"), "--out-dir", help="where the report's experiments.md and .png go"),
) -> None:
    """Queue a grid of experiments, run it to the end (a queue worker that dies is started again), print the
    `tai report` table; exit 1 if an experiment failed."""
    from pipeline.experiments.summary import exp_show_json, write_report
    from pipeline.experiments.sweep import run_sweep

    console = _console()
    result = run_sweep(
        Path("."), set_param, jobs, say=lambda line: console.print(line, soft_wrap=True, highlight=False)
    )
    table, _, _ = write_report(exp_show_json("."), out_dir)
    print(table.read_text())
    if result.failed:
        console.print(
            f"[red]{len(result.failed)} experiment(s) failed:[/] {', '.join(result.failed)} "
            "(`dvc queue logs NAME` says why)",
            soft_wrap=True,
        )
        raise typer.Exit(code=1)


def main() -> None:  # pragma: no cover - `python -m pipeline.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
