"""The experiment loop a user runs, end to end on the tiny project: a queued grid over radius and
seeds, `dvc exp show` with a finite mAP for every experiment, `dvc metrics diff`, `dvc exp run
--temp`, `tai report`, and a second sweep that encodes nothing again (the shared embedding cache).
Plumbing, never accuracy."""

import json
import math
import re
import time

import pytest

from e2e_project import commit, make_project, run
from pipeline.report import collect_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_clip):
    project = make_project(tmp_path_factory.mktemp("experiments"), tiny_clip, llm_fraction=0.0)
    run(project, "dvc", "repro")
    commit(project, "baseline run")
    return project


def wait_for_queue(project, timeout_s: float = 600) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = run(project, "dvc", "queue", "status").stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(3)
    raise AssertionError(f"the queue did not finish in {timeout_s} s:\n{status}")


def experiments(project) -> list:
    runs, _ = collect_runs(json.loads(run(project, "dvc", "exp", "show", "--json").stdout))
    return [r for r in runs if r.kind == "experiment"]


def cache_entries() -> dict[str, int]:
    from pipeline.embeddings import EmbeddingCache
    from pipeline.paths import embedding_cache_dir

    return {"entries": len(EmbeddingCache(embedding_cache_dir())), "files": len(list(embedding_cache_dir().glob("*.arrow")))}


def test_a_queued_sweep_over_radius_and_seeds_is_comparable(project, tmp_path):
    run(project, "dvc", "exp", "run", "--queue", "-S", "train.radius=0,2", "-S", "train.seed=0,1")
    run(project, "dvc", "queue", "start", "-j", "2")
    status = wait_for_queue(project)
    assert "Failed" not in status, status + run(project, "dvc", "queue", "logs", "--help", check=False).stdout

    done = experiments(project)
    grid = sorted((r.params["train.radius"], r.params["train.seed"]) for r in done)
    assert grid == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert len({tuple(sorted(r.metrics)) for r in done}) == 1       # a number in every column of `dvc exp show`
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
    assert "| cat" not in table and "cat mean" not in table         # the default table stays narrow
    per_class = (out / "experiments_per_class.md").read_text()
    header = next(line for line in per_class.splitlines() if line.startswith("| label |"))
    assert "train.radius=0 |" in header and "train.radius=2 |" in header and "\n| cat | " in per_class
    assert (out / "experiments.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_temp_experiment_runs_in_a_fresh_copy(project):
    """The workspace holds what a fresh copy cannot: a git-ignored, uncached checkpoint (garbage). A run in the
    workspace would read it ("ignoring checkpoint") and overwrite it, and rewrite reports/; --temp does neither."""
    checkpoint = project / "artifacts" / "train" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(b"only in this workspace")
    reports = {p.name: p.read_bytes() for p in (project / "reports").iterdir()}
    result = run(project, "dvc", "exp", "run", "--temp", "-S", "train.radius=3")
    assert "Running stage 'train'" in result.stdout and "ignoring checkpoint" not in result.stdout + result.stderr
    assert checkpoint.read_bytes() == b"only in this workspace"
    assert {p.name: p.read_bytes() for p in (project / "reports").iterdir()} == reports
    done = [r for r in experiments(project) if r.params["train.radius"] == 3]
    assert len(done) == 1 and math.isfinite(done[0].metrics["eval.map"])
    checkpoint.unlink()


def test_a_second_queued_sweep_encodes_nothing_again(project):
    """encode.shard_rows reruns both encode stages in each queued copy; the per-user cache answers them."""
    before = cache_entries()
    run(project, "dvc", "exp", "run", "--queue", "-S", "train.radius=4,5", "-S", "encode.shard_rows=1000")
    run(project, "dvc", "queue", "start", "-j", "1")
    assert "Failed" not in wait_for_queue(project)
    assert cache_entries() == before
    swept = [r for r in experiments(project) if r.params["encode.shard_rows"] == 1000]
    assert sorted(r.params["train.radius"] for r in swept) == [4, 5]
    # each queued copy ran the encode stages (or DVC's run cache restored the first one's outputs), and
    # the shared cache answered every text: nothing new reached CLIP
    logs = [run(project, "dvc", "queue", "logs", r.name).stdout for r in swept]
    assert any("Running stage 'encode_text'" in log and "Running stage 'encode_eval_images'" in log for log in logs), logs
    for log in logs:
        if "Running stage 'encode_text'" in log:
            assert re.search(r"texts: (\d+) of \1 found in the cache, 0 to encode", log), log
