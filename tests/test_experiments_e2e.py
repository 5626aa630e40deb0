"""The experiment loop a user runs, end to end on the tiny project: a queued grid over radius and
seeds through `tai sweep`, `dvc exp show` with a finite mAP for every experiment, `dvc metrics diff`, `dvc exp run
--temp`, `tai report`, and a second sweep that encodes nothing again (the shared embedding cache).
Each queued or --temp experiment runs in a fresh copy of the repository: the queue's logs show that a radius
reruns train and evaluate only, and an evaluate param evaluate only (nothing captioned or encoded again).
Plumbing, never accuracy."""

import json
import math
import re
import time

import pytest

from e2e_project import commit, make_project, run, stages_run
from pipeline.experiments.summary import collect_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_clip):
    project = make_project(tmp_path_factory.mktemp("experiments"), tiny_clip, llm_fraction=0.0)
    run(project, "dvc", "repro")
    commit(project, "baseline run")
    return project


def sweep(project, *settings: str, jobs: int = 1) -> str:
    """`tai sweep` (the README's loop): queues the grid, runs it to the end, prints the report's table."""
    args = [a for setting in settings for a in ("-S", setting)]
    return run(
        project,
        "python",
        "-m",
        "pipeline.cli",
        "sweep",
        *args,
        "-j",
        str(jobs),
        "--out-dir",
        str(project.parent / "sweep-report"),
    ).stdout


def wait_for_experiments(project, timeout_s: float = 600) -> dict[str, str]:
    """After `dvc queue start`: {name: state} once nothing is queued or running, read from `dvc exp show --json`
    (never `dvc queue status`, whose worker inspection races the worker: docs/experiments.md)."""
    from pipeline.experiments.sweep import SweepError, experiment_states

    deadline = time.monotonic() + timeout_s
    states: dict = {}
    while time.monotonic() < deadline:
        try:
            states = {name: seen["state"] for name, seen in experiment_states(project).items()}
        except SweepError:
            states = {}
        if states and not any(state in ("queued", "running") for state in states.values()):
            return states
        time.sleep(3)
    raise AssertionError(f"the queue did not finish in {timeout_s} s: {states}")


def queue_log(project, name: str) -> str:
    return run(project, "dvc", "queue", "logs", name).stdout


def experiments(project) -> list:
    runs, _ = collect_runs(json.loads(run(project, "dvc", "exp", "show", "--json").stdout))
    return [r for r in runs if r.kind == "experiment"]


def cache_entries() -> dict[str, int]:
    from pipeline.encoding.embeddings import EmbeddingCache
    from pipeline.paths import embedding_cache_dir

    return {
        "entries": len(EmbeddingCache(embedding_cache_dir())),
        "files": len(list(embedding_cache_dir().glob("*.arrow"))),
    }


def test_a_queued_sweep_over_radius_and_seeds_is_comparable(project, tmp_path):
    out = sweep(project, "train.radius=0,2", "train.seed=0,1", jobs=2)
    assert "eval.map" in out  # the report's table ends the sweep
    done = experiments(project)
    grid = sorted((r.params["train.radius"], r.params["train.seed"]) for r in done)
    assert grid == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert len({tuple(sorted(r.metrics)) for r in done}) == 1  # a number in every column of `dvc exp show`
    for r in done:
        assert math.isfinite(r.metrics["eval.map"]) and math.isfinite(r.metrics["zeroshot.map"]), r
        assert r.metrics["train.n_texts"] == r.metrics["generate.n_texts"] > 0

    a, b = done[0].name, done[1].name
    diff = run(project, "dvc", "metrics", "diff", a, b, "--json").stdout
    assert "reports/eval.json" in json.loads(diff)
    # the per-class AP bars and the PR curves of two experiments, overlaid (radius 0 vs 2 at one seed)
    plots = json.loads(run(project, "dvc", "plots", "diff", a, b, "--json").stdout)["data"]
    for name in ("per_class_ap", "precision_recall"):
        values = plots[name][0]["content"]["data"]["values"]
        assert {v["rev"] for v in values} == {a, b}, name
    bars = [v for v in plots["per_class_ap"][0]["content"]["data"]["values"] if v["method"] == "adapter"]
    assert {v["label"] for v in bars if v["rev"] == a} == {v["label"] for v in bars if v["rev"] == b} != set()

    # the report: mean and std over the two seeds per radius, and a curve
    out = tmp_path / "report"
    run(project, "python", "-m", "pipeline.cli", "report", "--out-dir", str(out), "--per-class")
    table = (out / "experiments.md").read_text()
    assert "train.radius" in table and "eval.map" in table
    assert "| cat" not in table and "cat mean" not in table  # the default table stays narrow
    per_class = (out / "experiments_per_class.md").read_text()
    header = next(line for line in per_class.splitlines() if line.startswith("| label |"))
    assert "train.radius=0 |" in header and "train.radius=2 |" in header and "\n| cat | " in per_class
    assert (out / "experiments.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # each ran in a fresh copy, and reran train and evaluate only: no caption, no embedding (issue 24)
    for r in done:
        log = queue_log(project, r.name)
        assert stages_run(log) == {"train", "evaluate"}, log
        assert "Stage 'generate' didn't change, skipping" in log, log


def test_a_temp_experiment_runs_in_a_fresh_copy(project):
    """--temp leaves the workspace's reports alone, and an evaluate param reruns evaluate only there: the copy
    lacks nothing a stage declares (no uncached or persisted out of resumable state)."""
    reports = {p.name: p.read_bytes() for p in (project / "reports").iterdir()}
    result = run(project, "dvc", "exp", "run", "--temp", "-S", "evaluate.integrate_scaling=both")
    assert stages_run(result.stdout) == {"evaluate"}, result.stdout
    assert {p.name: p.read_bytes() for p in (project / "reports").iterdir()} == reports
    done = [r for r in experiments(project) if r.params["evaluate.integrate_scaling"] == "both"]
    assert len(done) == 1 and math.isfinite(done[0].metrics["eval.map"])


def test_a_second_queued_sweep_encodes_nothing_again(project):
    """encode.shard_rows reruns both encode stages in each queued copy; the per-user cache answers them."""
    before = cache_entries()
    sweep(project, "train.radius=4,5", "encode.shard_rows=1000")
    assert cache_entries() == before
    swept = [r for r in experiments(project) if r.params["encode.shard_rows"] == 1000]
    assert sorted(r.params["train.radius"] for r in swept) == [4, 5]
    # each queued copy ran the encode stages (or DVC's run cache restored the first one's outputs), and
    # the shared cache answered every text: nothing new reached CLIP
    logs = [queue_log(project, r.name) for r in swept]
    assert any("Running stage 'encode_text'" in log and "Running stage 'encode_eval_images'" in log for log in logs), (
        logs
    )
    for log in logs:
        if "Running stage 'encode_text'" in log:
            assert re.search(r"texts: (\d+) of \1 found in the cache, 0 to encode", log), log
