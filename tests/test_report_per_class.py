"""`tai report --per-class`: each label's AP per group of runs, mean ± std over seeds, read from each run's
committed reports/per_class.csv (pipeline/experiments/per_class_summary.py)."""

import subprocess

import pytest

from e2e_project import env
from pipeline.experiments.per_class_summary import per_class_summary, write_per_class_report
from pipeline.experiments.summary import ReportError, Run


def git(repo, *args):
    return subprocess.run(
        ["git", *args], cwd=repo, env=env(), capture_output=True, text=True, check=True
    ).stdout.strip()


def commit_run(repo, radius: int, seed: int) -> Run:
    """A commit whose per_class.csv has AP(cat) = radius/10 + seed/100, dog = 0.5 (seed 0) or 0.7, tree no positive."""
    (repo / "reports").mkdir(exist_ok=True)
    (repo / "reports" / "per_class.csv").write_text(
        "label,n_positive,adapter,zeroshot,prompt,integrated,threshold,precision,recall,f1\n"
        f"cat,3,{radius / 10 + seed / 100},0.3,,,0.5,0,0,0\n"
        f"dog,2,{0.5 if seed == 0 else 0.7},0.4,,,0.5,0,0,0\n"
        "tree,0,,,,,0.5,0,0,0\n"
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"r{radius} s{seed}")
    rev = git(repo, "rev-parse", "HEAD")
    return Run(
        f"exp-{radius}-{seed}", rev, "experiment", {"train.radius": radius, "train.seed": seed}, {"eval.map": 0.1}
    )


def test_per_class_cells_are_mean_and_std_over_seeds_per_group(tmp_path):
    git(tmp_path, "init", "-q")
    runs = [commit_run(tmp_path, radius, seed) for radius in (1, 2) for seed in (0, 1)]
    runs.append(
        Run("old", "0" * 40, "experiment", {"train.radius": 1, "train.seed": 2}, {})
    )  # no such commit: left out
    summary, labels = per_class_summary(runs, tmp_path)
    assert labels == ["cat", "dog", "tree"] and summary.varied == ["train.radius"] and summary.seeds == ["train.seed"]
    rows = list(summary.frame.iter_rows(named=True))
    assert [r["train.radius"] for r in rows] == [1, 2] and [r["seeds"] for r in rows] == [2, 2]
    assert rows[0]["cat mean"] == pytest.approx(0.105) and rows[1]["cat mean"] == pytest.approx(0.205)
    assert rows[0]["dog std"] == pytest.approx(0.1414, abs=1e-4)

    table = write_per_class_report(runs, tmp_path, tmp_path / "out").read_text()
    assert "| label | train.radius=1 | train.radius=2 |" in table
    assert "| cat | 0.105 ± 0.007071 | 0.205 ± 0.007071 |" in table
    assert "| tree |  |  |" in table  # no positive: no AP, an empty cell
    zeroshot = write_per_class_report(runs, tmp_path, tmp_path / "z", "zeroshot").read_text()
    assert "| cat | 0.3 ± 0 | 0.3 ± 0 |" in zeroshot

    with pytest.raises(ReportError, match="choose one of adapter, zeroshot"):
        per_class_summary(runs, tmp_path, "peer")
    with pytest.raises(ReportError, match="no run has reports/per_class.csv"):
        per_class_summary(runs[-1:], tmp_path)
