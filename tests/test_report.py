"""`tai report` on real `dvc exp show --json` output of the tiny project of tests/exp_project.py:
exact means and standard deviations over seeds, seeds as repetitions, missing metrics as empty
cells, failed experiments listed apart, and a PNG that is a real image.

The fast tests read tests/data/exp_show.json (recorded by `python tests/exp_project.py`); the slow
one builds the project, runs the grid with DVC and reports on the live output."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from exp_project import (
    FIXTURE,
    NOISES,
    PIPELINE_FIXTURE,
    PIPELINE_RADII,
    PIPELINE_SEEDS,
    RADII,
    SEEDS,
    eval_map,
    exp_show,
    make_exp_project,
    run_grid,
    zeroshot_map,
)
from pipeline.cli import app
from pipeline.experiments import summary as rp

ROOT = Path(__file__).resolve().parents[1]
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env=ENV)


def table_rows(markdown: str) -> list[dict[str, str]]:
    """The first Markdown table as dicts (header -> cell text)."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells == ["experiment", "rev", "state"]:
            break
        rows.append(dict(zip(header, cells)))
    return rows


def check_summary(summary: rp.Summary) -> None:
    """The grid's four settings with two seeds each, plus the never-run baseline (radius 5)."""
    assert summary.varied == ["train.noise", "train.radius"]
    assert summary.seeds == ["train.seed"]
    assert {"eval.map", "eval.n_images", "zeroshot.map", "zeroshot.skipped"} <= set(summary.metrics)
    rows = {(r["train.noise"], r["train.radius"]): r for r in summary.frame.iter_rows(named=True)}
    assert set(rows) == {(n, r) for n in NOISES for r in RADII} | {("surface", 5)}
    for noise in NOISES:
        for radius in RADII:
            row = rows[(noise, radius)]
            assert row["seeds"] == len(SEEDS)
            maps = [eval_map(radius, noise, s) for s in SEEDS]
            assert row["eval.map mean"] == pytest.approx(statistics.mean(maps), abs=1e-12)
            assert row["eval.map std"] == pytest.approx(statistics.stdev(maps), abs=1e-12)
            zs = [zeroshot_map(s) for s in SEEDS]
            assert row["zeroshot.map mean"] == pytest.approx(statistics.mean(zs), abs=1e-12)
            assert row["zeroshot.map std"] == pytest.approx(statistics.stdev(zs), abs=1e-12)
            assert row["eval.n_images mean"] == 10 and row["eval.n_images std"] == 0
            skipped = row["zeroshot.skipped mean"]
            assert skipped == (radius if noise == "surface" else None)
    baseline = rows[("surface", 5)]
    assert baseline["seeds"] == 1
    assert all(baseline[f"{m} mean"] is None for m in summary.metrics)


def check_png(path: Path) -> tuple[int, int]:
    """A PNG that decodes; returns its size."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        image.load()
        return image.size


# --------------------------------------------------------------------------------------------- recorded


@pytest.fixture(scope="module")
def recorded() -> list:
    return json.loads(FIXTURE.read_text())


def test_recorded_groups_average_over_seeds(recorded):
    runs, skipped = rp.collect_runs(recorded)
    # 8 experiments + the baseline; the workspace holds the last experiment's results and counts once
    assert len(runs) == 9
    assert sorted(r.kind for r in runs) == ["baseline"] + ["experiment"] * 8
    check_summary(rp.summarize(runs, skipped=skipped))


def test_recorded_failed_experiment_is_listed_not_averaged(recorded, tmp_path):
    table, _, summary = rp.write_report(recorded, tmp_path)
    assert [s.state for s in summary.skipped] == ["failed"]
    assert -1 not in summary.frame["train.radius"].to_list()
    text = table.read_text()
    failed = text.split("## Not counted", 1)[1]
    assert summary.skipped[0].name in failed and "failed" in failed


def test_recorded_markdown_cells(recorded, tmp_path):
    result = invoke("report", "--json", str(FIXTURE), "--out-dir", str(tmp_path), "--all-metrics")
    assert result.exit_code == 0, result.output
    assert "not counted" in result.output and "failed" in result.output
    rows = {(r["train.noise"], r["train.radius"]): r for r in table_rows((tmp_path / "experiments.md").read_text())}
    maps = [eval_map(1, "interior", s) for s in SEEDS]
    assert rows[("interior", "1")]["eval.map"] == f"{statistics.mean(maps):.4g} ± {statistics.stdev(maps):.4g}"
    assert rows[("interior", "1")]["seeds"] == "2"
    assert rows[("interior", "1")]["zeroshot.skipped"] == ""  # the key is absent for interior noise
    assert rows[("surface", "2")]["zeroshot.skipped"] == "2 ± 0"
    assert rows[("surface", "5")]["eval.map"] == ""  # DVC could not read the baseline's metrics
    assert rows[("surface", "5")]["seeds"] == "1"
    text = (tmp_path / "experiments.md").read_text()
    assert "`reports/eval.json` (1 of 9 runs)" in text and "`reports/zeroshot.json` (1 of 9 runs)" in text
    assert check_png(tmp_path / "experiments.png") == (700, 450)


def test_recorded_metric_and_x_options(recorded, tmp_path):
    result = invoke(
        "report",
        "--json",
        str(FIXTURE),
        "--out-dir",
        str(tmp_path),
        "--metric",
        "zeroshot.map",
        "--metric",
        "eval.map",
        "--x",
        "train.noise",
    )
    assert result.exit_code == 0, result.output
    header = table_rows((tmp_path / "experiments.md").read_text())[0].keys()
    assert list(header) == ["train.noise", "train.radius", "seeds", "zeroshot.map", "eval.map"]
    assert check_png(tmp_path / "experiments.png") == (700, 450)


# ------------------------------------------------------------------------ the real pipeline's metrics


def test_default_table_is_the_varied_params_and_the_headline_metrics(tmp_path):
    """A radius x seed grid of the real pipeline writes 28 metrics per run; the table shows the mAPs."""
    result = invoke("report", "--json", str(PIPELINE_FIXTURE), "--out-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "experiments.md").read_text()
    rows = table_rows(text)
    assert list(rows[0]) == [
        "train.radius",
        "seeds",
        "eval.map",
        "eval.integrated_map",
        "eval.other_map",
        "zeroshot.map",
    ]
    assert [(r["train.radius"], r["seeds"]) for r in rows] == [
        (str(r), str(len(PIPELINE_SEEDS))) for r in PIPELINE_RADII
    ]
    runs, _ = rp.collect_runs(json.loads(PIPELINE_FIXTURE.read_text()))
    hidden = len(rp.available_metrics(runs)) - 4
    assert f"{hidden} more in the runs (`tai report --all-metrics`" in text


def test_all_metrics_shows_every_column_with_the_same_cells(tmp_path):
    runs, _ = rp.collect_runs(json.loads(PIPELINE_FIXTURE.read_text()))
    available = rp.available_metrics(runs)
    assert len(available) >= 25 and {"train.final_loss", "generate.n_texts", "eval.n_images"} <= set(available)
    assert invoke("report", "--json", str(PIPELINE_FIXTURE), "--out-dir", str(tmp_path / "a")).exit_code == 0
    result = invoke("report", "--json", str(PIPELINE_FIXTURE), "--out-dir", str(tmp_path / "b"), "--all-metrics")
    assert result.exit_code == 0, result.output
    headline, every = (table_rows((tmp_path / d / "experiments.md").read_text()) for d in ("a", "b"))
    assert list(every[0]) == ["train.radius", "seeds", *available]
    assert [{k: r[k] for k in headline[0]} for r in every] == headline
    assert "--all-metrics" not in (tmp_path / "b" / "experiments.md").read_text()


def test_headline_metrics_fall_back_to_every_metric_when_none_is_there():
    assert rp.headline_metrics(["train.final_loss", "zeroshot.map", "eval.map"]) == ["eval.map", "zeroshot.map"]
    assert rp.headline_metrics(["a.loss", "b.count"]) == ["a.loss", "b.count"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--metric", "eval.map", "--all-metrics"], "--all-metrics both given"),
        (["--metric", "eval.nope"], "unknown metric"),
        (["--x", "train.seed"], "not a param that varies"),
        (["--x", "train.epochs"], "not a param that varies"),
    ],
)
def test_bad_options_fail_naming_the_choices(tmp_path, args, message):
    result = invoke("report", "--json", str(FIXTURE), "--out-dir", str(tmp_path), *args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "experiments.md").exists()


def test_default_plot_choices(recorded):
    runs, skipped = rp.collect_runs(recorded)
    summary = rp.summarize(runs, skipped=skipped)
    assert rp.default_metric(summary.metrics) == "eval.map"
    assert rp.default_x(summary) == "train.radius"  # the numeric varied param, not the noise kind


def test_curves_one_line_per_noise_with_std_over_seeds(recorded):
    runs, skipped = rp.collect_runs(recorded)
    summary = rp.summarize(runs, skipped=skipped)
    lines = rp.curves(summary, "eval.map", "train.radius")
    assert sorted(lines) == ["train.noise=interior", "train.noise=surface"]  # the radius-5 baseline has no mAP
    for noise in NOISES:
        points = lines[f"train.noise={noise}"]
        assert [p[0] for p in points] == list(RADII)
        for radius, mean, std in points:
            maps = [eval_map(radius, noise, s) for s in SEEDS]
            assert mean == pytest.approx(statistics.mean(maps)) and std == pytest.approx(statistics.stdev(maps))
    by_noise = rp.curves(summary, "eval.map", "train.noise")
    assert sorted(by_noise) == ["train.radius=1", "train.radius=2"]


def test_metric_names_are_the_shortest_unique_path():
    names = rp._metric_names({"reports/eval.json", "artifacts/eval/metrics.json", "artifacts/zeroshot/metrics.json"})
    assert names == {
        "reports/eval.json": "eval",
        "artifacts/eval/metrics.json": "eval/metrics",
        "artifacts/zeroshot/metrics.json": "zeroshot/metrics",
    }


def test_nothing_varies_writes_a_table_and_a_placeholder(recorded, tmp_path):
    workspace_only = [entry for entry in recorded if entry["rev"] == "workspace"]
    table, picture, summary = rp.write_report(workspace_only, tmp_path)
    assert summary.varied == [] and summary.frame.height == 1
    assert table_rows(table.read_text())[0]["seeds"] == "1"
    assert check_png(picture) == (320, 120)  # the small placeholder saying why there is no curve


def test_a_rev_dvc_could_not_read_is_listed_and_its_group_shrinks(recorded, tmp_path):
    """DVC's collect.py replaces `data` by `error` ({msg, type}) for a rev it fails to read."""
    broken = json.loads(json.dumps(recorded))
    group = next(
        g
        for g in broken[1]["experiments"]
        if g["revs"][0]["data"]["params"]["params.yaml"]["data"]["train"]
        == {"seed": 0, "radius": 1, "noise": "surface", "epochs": 3}
    )
    state = group["revs"][0]
    state.update(data=None, error={"msg": "unexpected error | corrupt", "type": "DvcException"})
    table, picture, summary = rp.write_report(broken, tmp_path)
    assert (state["name"], "error: unexpected error | corrupt") in [(s.name, s.state) for s in summary.skipped]
    rows = {(r["train.noise"], r["train.radius"]): r for r in table_rows(table.read_text())}
    assert rows[("surface", "1")]["seeds"] == "1"
    assert rows[("surface", "1")]["eval.map"] == f"{eval_map(1, 'surface', 1):.4g}"  # one run: no ±
    assert "unexpected error / corrupt" in table.read_text()
    check_png(picture)


def test_no_experiments_at_all(tmp_path):
    table, picture, summary = rp.write_report([], tmp_path)
    assert summary.frame.height == 0 and "0 run(s)" in table.read_text()
    check_png(picture)


def test_bad_json_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = invoke("report", "--json", str(bad), "--out-dir", str(tmp_path))
    assert result.exit_code == 2 and "not JSON" in result.output


# --------------------------------------------------------------------------------------------- live DVC


@pytest.mark.slow
def test_live_dvc_grid(tmp_path):
    """A real 2 x 2 x 2 grid run with `dvc exp run`, reported from `dvc exp show --json` by the CLI."""
    root = make_exp_project(tmp_path / "project")
    run_grid(root)
    live = exp_show(root)
    # same shape as the recorded fixture: the fast tests stay honest about DVC's JSON
    recorded = json.loads(FIXTURE.read_text())
    assert [sorted(e) for e in live] == [sorted(e) for e in recorded]
    assert sorted(live[1]["experiments"][0]) == sorted(recorded[1]["experiments"][0])
    assert sorted(live[1]["experiments"][0]["revs"][0]["data"]) == sorted(
        recorded[1]["experiments"][0]["revs"][0]["data"]
    )

    env = {**os.environ, **ENV, "PYTHONPATH": str(ROOT), "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", "--out-dir", "out"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    runs, skipped = rp.collect_runs(live)
    assert skipped == []
    check_summary(rp.summarize(runs))
    rows = {(r["train.noise"], r["train.radius"]): r for r in table_rows((root / "out" / "experiments.md").read_text())}
    assert len(rows) == 5 and rows[("surface", "1")]["seeds"] == "2"
    assert not math.isnan(float(rows[("surface", "1")]["eval.map"].split(" ± ")[0]))
    assert check_png(root / "out" / "experiments.png") == (700, 450)
