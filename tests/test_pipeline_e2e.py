"""The zero-shot pipeline end to end through `dvc repro`, on a tiny random CLIP and a
tiny dataset: plumbing and caching, never accuracy."""

import json

import polars as pl
import pytest

from e2e_project import ALL_STAGES, commit, make_project, run, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def own_embedding_cache(tmp_path_factory):
    """This module counts what reaches CLIP in the embedding cache: a cache of its own, so that another module's
    run of the same tiny images (the session shares one cache, tests/conftest.py) cannot have filled it first."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TAI_CACHE_DIR", str(tmp_path_factory.mktemp("embedding-cache")))
        yield


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_clip):
    project = make_project(tmp_path_factory.mktemp("e2e"), tiny_clip, llm_fraction=0.25)
    result = run(project, "dvc", "repro")
    assert stages_run(result.stdout) == ALL_STAGES, result.stdout
    commit(project, "first run")
    return project


def schema(path):
    return dict(pl.read_parquet(path).schema)


def test_every_stage_wrote_documented_tables(project):
    a = project / "artifacts"
    labels = pl.read_parquet(a / "data" / "folder" / "labels.parquet")
    assert labels["label"].to_list() == ["cat", "dog", "car", "tree"]
    assert schema(a / "data" / "folder" / "labels.parquet") == {
        "index": pl.Int32,
        "label": pl.Utf8,
        "synonyms": pl.List(pl.Utf8),
    }
    manifest = schema(a / "data" / "folder" / "test.parquet")
    assert manifest["image_id"] == pl.Utf8 and manifest["path"] == pl.Utf8 and manifest["labels"] == pl.List(pl.Utf8)

    texts = pl.read_parquet(a / "texts.parquet")
    for column, dtype in {
        "text_id": pl.Utf8,
        "text": pl.Utf8,
        "labels": pl.List(pl.Utf8),
        "combination": pl.List(pl.Utf8),
        "source": pl.Utf8,
        "prompt": pl.Utf8,
        "model": pl.Utf8,
        "seed": pl.Int64,
    }.items():
        assert texts.schema[column] == dtype, column
    assert set(texts["source"]) == {"llm", "template"}  # the embedded LLM wrote some of them
    assert texts["text_id"].n_unique() == len(texts)
    for combination, found in zip(texts["combination"], texts["labels"]):
        assert set(combination) <= set(found)

    text_embeddings = pl.read_ipc(next((a / "embeddings" / "text").glob("*.arrow")))
    assert set(text_embeddings["id"]) == set(texts["text_id"])
    test_embeddings = pl.read_ipc(next((a / "embeddings" / "eval" / "test-64").glob("*.arrow")))
    assert test_embeddings.schema["embedding"] == pl.Array(pl.Float32, 64)

    skipped = pl.read_parquet(a / "embeddings" / "eval" / "skipped.parquet")
    assert "test_corrupt" in skipped["image_id"].to_list() and skipped["error"].str.len_chars().min() > 0
    assert "test_corrupt" not in test_embeddings["id"].to_list()

    # zero-shot encodes the test split at 64 px and nothing else (no trainval, no partial resolution)
    assert sorted(p.name for p in (a / "embeddings" / "eval").iterdir()) == ["skipped.parquet", "test-64"]
    for purpose in ("support", "partial"):
        assert sorted(p.name for p in (a / "embeddings" / purpose).iterdir()) == ["skipped.parquet"]
    for folder in ("eval", "zeroshot"):
        metrics = json.loads((project / "reports" / f"{folder}.json").read_text())
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()), metrics
        assert 0.0 <= metrics["map"] <= 1.0
        assert metrics["n_images"] == 12  # the corrupt image is not scored
        assert metrics["n_images_skipped"] == 1  # but counted
        per_class = pl.read_parquet(a / folder / "per_class.parquet")
        assert dict(per_class.schema) == {"label": pl.Utf8, "ap": pl.Float64, "n_positive": pl.Int64}
        scores = pl.read_parquet(a / folder / "scores.parquet")
        assert scores.columns == ["image_id", "cat", "dog", "car", "tree"] and len(scores) == 12
    log = pl.read_csv(project / "reports" / "train_log.csv")
    assert log["epoch"].to_list() == [1, 2, 3]


def test_metrics_and_plots_commands_work(project):
    shown = run(project, "dvc", "metrics", "show").stdout
    assert "reports/eval.json" in shown and "map" in shown and "n_images_skipped" in shown
    # the environment behind the numbers: columns of `dvc exp show`, strings no stage reads
    import torch

    environment = json.loads((project / "reports" / "environment.json").read_text())
    assert environment["torch"] == torch.__version__.split("+")[0] or environment["torch"] == torch.__version__
    assert environment["image_runtime"] in ("onnxruntime", "torchscript", "torch") and environment["device"] == "cpu"
    assert all(isinstance(v, str) for v in environment.values()) and environment["cpu"]
    columns = run(project, "dvc", "exp", "show", "--no-pager", "--md").stdout.splitlines()[0]
    assert "llama_cpp_python" in columns and "image_runtime" in columns, columns
    plots = run(project, "dvc", "plots", "show", "--json").stdout
    assert "reports/train_log.csv" in plots


def test_per_class_plot_data_is_the_evaluation_and_dvc_draws_it(project):
    """reports/per_class.csv and per_class_ap.csv hold evaluate's per-class APs (the adapter's) and the CLIP
    baseline's; the PR curves are exact, decimated points; `dvc plots show` renders both top-level plots;
    eval.json has precision/recall/F1 at the thresholds used (0.5 here: nothing chose others)."""
    import numpy as np

    from pipeline.evaluation.plot_data import MAX_CURVE_POINTS

    a, reports = project / "artifacts", project / "reports"
    evaluated = pl.read_parquet(a / "eval" / "per_class.parquet")
    plotted = pl.read_csv(reports / "per_class.csv")
    assert plotted["label"].to_list() == evaluated["label"].to_list()
    assert plotted["n_positive"].to_list() == evaluated["n_positive"].to_list()
    np.testing.assert_array_equal(plotted["adapter"].to_numpy(), evaluated["ap"].to_numpy())
    baseline = pl.read_parquet(a / "zeroshot" / "per_class.parquet")
    np.testing.assert_allclose(plotted["zeroshot"].to_numpy(), baseline["ap"].to_numpy(), rtol=1e-12)
    assert plotted["prompt"].null_count() == plotted.height  # prompt.method none: no peer bar
    assert plotted["threshold"].to_list() == [0.5] * plotted.height
    bars = pl.read_csv(reports / "per_class_ap.csv")
    adapter_bars = bars.filter(pl.col("method") == "adapter")
    assert adapter_bars["label"].to_list() == evaluated.drop_nulls("ap")["label"].to_list()
    np.testing.assert_array_equal(adapter_bars["ap"].to_numpy(), evaluated.drop_nulls("ap")["ap"].to_numpy())
    for method, rows in (("adapter", (1, MAX_CURVE_POINTS)), ("zeroshot", (1, MAX_CURVE_POINTS)), ("prompt", (0, 0))):
        curve = pl.read_csv(reports / f"pr_{method}.csv")
        assert rows[0] <= curve.height <= rows[1], method
        if curve.height:
            assert curve["recall"][-1] == 1.0 and curve["recall"].is_sorted()
    metrics = json.loads((reports / "eval.json").read_text())
    assert {"precision_micro", "recall_micro", "f1_micro", "f1_macro"} <= set(metrics)
    assert metrics["thresholds_on_data"] == 0

    from pipeline.evaluation.figures import figure_content

    gap = figure_content(reports / "modality_gap.png")  # zero-shot: texts vs test images of the frequent labels
    assert gap["labels"] and set(gap["labels"]) <= {"cat", "dog", "car", "tree"} and min(gap["images"]) > 0
    # the gallery of the evaluation split: every scored image, its truth, the adapter's thresholds
    run(project, "python", "-m", "pipeline.cli", "gallery", "--out", "gallery.html")
    page = (project / "gallery.html").read_text()
    assert page.count('"g":[') == metrics["n_images"] and '"thresholds":[0.5,0.5,0.5,0.5]' in page
    (project / "gallery.html").unlink()
    shown = json.loads(run(project, "dvc", "plots", "show", "--json").stdout)["data"]
    for plot, rows in (("per_class_ap", bars.height), ("precision_recall", None)):
        values = shown[plot][0]["content"]["data"]["values"]
        assert values and (rows is None or len(values) == rows), plot


def test_radius_experiment_reruns_only_train_and_evaluate(project):
    result = run(project, "dvc", "exp", "run", "-S", "train.radius=10")
    assert stages_run(result.stdout) == {"train", "evaluate"}, result.stdout
    assert "Stage 'generate' didn't change" in result.stdout
    summary = json.loads((project / "reports" / "train.json").read_text())
    assert summary["text_radius"] == 10.0


def test_unchanged_pipeline_runs_nothing(project):
    result = run(project, "dvc", "repro")
    assert stages_run(result.stdout) == set(), result.stdout


def test_switching_to_partial_labels_encodes_only_the_new_image_sets(project):
    from pipeline.encoding.embeddings import EmbeddingCache
    from pipeline.paths import embedding_cache_dir

    before = len(EmbeddingCache(embedding_cache_dir()))
    result = run(project, "dvc", "exp", "run", "-S", "partial.known_proportion=0.5")
    assert stages_run(result.stdout) == {
        "encode_eval_images",
        "encode_partial_images",
        "mask",
        "centroids",
        "train",
        "evaluate",
        "zeroshot",
        "prompt",
    }, result.stdout
    for stage in ("encode_text", "encode_support_images", "generate"):
        assert f"Stage '{stage}' didn't change" in result.stdout, stage
    a = project / "artifacts" / "embeddings"
    assert sorted(p.name for p in (a / "eval").iterdir()) == ["skipped.parquet", "test-128", "test-64"]
    assert sorted(p.name for p in (a / "partial").iterdir()) == ["skipped.parquet", "trainval-128"]
    # at most the 16 trainval and 12 readable test images at 128 px reached CLIP: nothing at 64 px again
    assert 0 < len(EmbeddingCache(embedding_cache_dir())) - before <= 16 + 12


def test_normalize_and_integration_run_end_to_end(project):
    """train.normalize: true and evaluate.integrate_with (here the CLIP baseline's scores as "another method"),
    through `dvc exp run`: the adapter is saved normalising, and eval.json's integration is the paper's
    average of the adapter's probabilities and the other method's min-max scaled scores."""
    import numpy as np
    import torch

    from pipeline.encoding.embeddings import read_shards
    from pipeline.evaluation.metrics import integrate, mean_ap
    from pipeline.method.adapter import AdapterBundle

    other = "artifacts/zeroshot/scores.parquet"
    result = run(project, "dvc", "exp", "run", "-S", "train.normalize=true", "-S", f"evaluate.integrate_with={other}")
    assert stages_run(result.stdout) == {"train", "evaluate"}, result.stdout
    bundle = AdapterBundle.load(project / "artifacts" / "model" / "adapter.pt")
    assert bundle.normalize
    vectors = torch.from_numpy(
        read_shards(next((project / "artifacts" / "embeddings" / "eval").glob("test-*"))).vectors
    )
    torch.testing.assert_close(bundle.scores(vectors), bundle.scores(3 * vectors))  # only directions count

    metrics = json.loads((project / "reports" / "eval.json").read_text())
    ours = pl.read_parquet(project / "artifacts" / "eval" / "scores.parquet")
    theirs = pl.DataFrame({"image_id": ours["image_id"]}).join(
        pl.read_parquet(project / other), on="image_id", how="left", maintain_order="left"
    )
    labels = ours.columns[1:]
    manifest = pl.read_parquet(project / "artifacts" / "data" / "folder" / "test.parquet")
    truth = dict(zip(manifest["image_id"], manifest["labels"]))
    targets = np.array([[label in truth[i] for label in labels] for i in ours["image_id"]], dtype=np.float64)
    a, b = ours.select(labels).to_numpy().astype(np.float64), theirs.select(labels).to_numpy().astype(np.float64)
    assert metrics["other_map"] == pytest.approx(float(mean_ap(b, targets)), abs=1e-9)
    assert metrics["integrated_map"] == pytest.approx(float(mean_ap(integrate(a, b), targets)), abs=1e-9)
    assert metrics["other_map"] == pytest.approx(
        float(json.loads((project / "reports" / "zeroshot.json").read_text())["map"])
    )
