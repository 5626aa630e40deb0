"""The few-shot and partial-label settings end to end through `dvc repro` / `dvc exp run`, on
the tiny CLIP and tiny dataset of `e2e_project`: the stages run, write their tables, and a
change of `partial.known_proportion` or `fewshot.shots` reruns only the stages it concerns.
Plumbing and caching, never accuracy."""

import json

import polars as pl
import pytest

from e2e_project import ALL_STAGES, LABELS, commit, make_project, run, stages_run
from pipeline.encoding.embeddings import EmbeddingCache
from pipeline.paths import embedding_cache_dir

pytestmark = pytest.mark.slow

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_clip):
    project = make_project(
        tmp_path_factory.mktemp("settings"),
        tiny_clip,
        llm_fraction=0.0,
        **{"partial.known_proportion": 0.3, "generate.n_combinations": 24},
    )
    result = run(project, "dvc", "repro")
    assert stages_run(result.stdout) == ALL_STAGES, result.stdout
    commit(project, "partial labels at 0.3")
    return project


def _read(project, *parts) -> pl.DataFrame:
    return pl.read_parquet(project.joinpath("artifacts", *parts))


def _metrics(project) -> dict:
    return json.loads((project / "reports" / "eval.json").read_text())


def _summary(project) -> dict:
    return json.loads((project / "reports" / "train.json").read_text())


def _entries(mask: pl.DataFrame) -> set[tuple[str, str, bool]]:
    return {
        (row["image_id"], label, kind == "known_positive")
        for row in mask.iter_rows(named=True)
        for kind in ("known_positive", "known_negative")
        for label in row[kind]
    }


def test_partial_labels_write_mask_centroids_picture_and_evaluate_at_the_partial_resolution(project):
    mask = _read(project, "partial", "mask.parquet")
    assert dict(mask.schema) == {
        "image_id": pl.Utf8,
        "known_positive": pl.List(pl.Utf8),
        "known_negative": pl.List(pl.Utf8),
    }
    assert mask.height == 16  # every trainval image
    assert 0 < len(_entries(mask)) < 16 * len(LABELS)

    visual = _read(project, "centroids", "visual.parquet")
    assert visual["label"].to_list() == LABELS
    assert dict(visual.schema) == {"label": pl.Utf8, "n_images": pl.Int64, "centroid": pl.List(pl.Float32)}
    known_positives = mask["known_positive"].explode().drop_nulls().value_counts()
    assert visual["n_images"].sum() == known_positives["count"].sum()
    combinations = _read(project, "centroids", "combinations.parquet")
    assert combinations["n_texts"].sum() == _read(project, "texts.parquet").height
    assert set(combinations.columns) == {
        "combination",
        "n_texts",
        "n_labels_used",
        "text_centroid",
        "offset",
        "offset_norm",
    }
    assert (combinations["offset_norm"] > 0).any()

    tsne = project / "reports" / "centroids.png"
    assert tsne.read_bytes()[:8] == PNG
    assert "reports/centroids.png" in run(project, "dvc", "plots", "show", "--json").stdout
    assert sorted(p.name for p in (project / "artifacts" / "embeddings" / "partial").iterdir()) == [
        "skipped.parquet",
        "trainval-128",
    ]  # the partially labelled split at 128 px only
    assert sorted(p.name for p in (project / "artifacts" / "embeddings" / "eval").iterdir()) == [
        "skipped.parquet",
        "test-128",
        "test-64",
    ]

    assert _read(project, "fewshot", "support.parquet").height == 0  # the other setting: an empty table
    # the paper's method trains on the shifted texts only (partial.image_weight 0)
    assert _summary(project)["n_images"] == 0 and _summary(project)["text_radius"] == 10.0
    assert _metrics(project)["image_resolution"] == 128


def test_known_proportion_experiment_reruns_only_mask_centroids_train_evaluate(project):
    before = _entries(_read(project, "partial", "mask.parquet"))
    cached = len(EmbeddingCache(embedding_cache_dir()))
    result = run(project, "dvc", "exp", "run", "-S", "partial.known_proportion=0.5")
    # the encode stages read partial.known_proportion only to know whether the setting is on: they rerun,
    # find every image in the shared cache, and write the same embeddings, so zeroshot does not rerun
    # prompt (prompt.method none) reads the mask too: it reruns and writes the same empty tables
    assert stages_run(result.stdout) == {
        "encode_eval_images",
        "encode_partial_images",
        "mask",
        "centroids",
        "train",
        "evaluate",
        "prompt",
    }, result.stdout
    assert len(EmbeddingCache(embedding_cache_dir())) == cached  # nothing new reached CLIP
    for stage in ("prepare", "generate", "encode_text", "encode_support_images", "fewshot", "zeroshot"):
        assert f"Stage '{stage}' didn't change" in result.stdout, stage
    after = _entries(_read(project, "partial", "mask.parquet"))
    assert before < after  # same seed: 0.5 reveals a superset of 0.3
    commit(project, "partial labels at 0.5")


def test_known_proportion_zero_keeps_the_setting_on_and_shifts_no_text(project):
    """Fig. 6c's 0% point: partial labels on (text radius partial.radius, evaluation at the partial resolution),
    no label known, so no visual centroid, no offset and no shifted text; unlike null, which is zero-shot."""
    result = run(project, "dvc", "exp", "run", "-S", "partial.known_proportion=0")
    assert {"mask", "centroids", "train", "evaluate"} <= stages_run(result.stdout), result.stdout
    mask = _read(project, "partial", "mask.parquet")
    assert mask.height == 16 and not _entries(mask)
    assert _read(project, "centroids", "visual.parquet")["n_images"].sum() == 0
    combinations = _read(project, "centroids", "combinations.parquet")
    assert combinations.height > 0 and (combinations["offset_norm"] == 0).all()
    assert _summary(project)["text_radius"] == 10.0 and _summary(project)["n_images"] == 0
    metrics = _metrics(project)
    assert metrics["image_resolution"] == 128 and 0 <= metrics["map"] <= 1
    commit(project, "partial labels at 0")


def test_switching_to_few_shot_empties_the_partial_tables(project):
    result = run(project, "dvc", "exp", "run", "-S", "partial.known_proportion=null", "-S", "fewshot.shots=2")
    # the evaluation images lose their partial-resolution set, so zeroshot (same scores) reruns too
    assert stages_run(result.stdout) == {
        "fewshot",
        "mask",
        "centroids",
        "encode_eval_images",
        "encode_support_images",
        "encode_partial_images",
        "zeroshot",
        "prompt",
        "train",
        "evaluate",
    }, result.stdout
    support = _read(project, "fewshot", "support.parquet")
    assert dict(support.schema) == {"image_id": pl.Utf8, "labels": pl.List(pl.Utf8), "picked_for": pl.Utf8}
    counts = support["labels"].explode().value_counts()
    assert dict(zip(counts["labels"], counts["count"])).keys() == set(LABELS)
    assert counts["count"].min() >= 2
    assert _read(project, "partial", "mask.parquet").height == 0
    assert _read(project, "centroids", "visual.parquet").height == 0
    assert _read(project, "centroids", "combinations.parquet").height == 0
    assert (project / "reports" / "centroids.png").read_bytes()[:8] == PNG  # the placeholder
    train_images = pl.read_ipc(next((project / "artifacts" / "embeddings" / "support" / "trainval-64").glob("*.arrow")))
    assert set(train_images["id"]) == set(support["image_id"])  # only the support images are encoded
    assert _summary(project)["n_images"] == support.height and _summary(project)["text_radius"] == 1.0
    assert _metrics(project)["image_resolution"] == 64
    commit(project, "2-shot")


def test_shots_experiment_reruns_only_fewshot_train_evaluate(project):
    two_shot = _read(project, "fewshot", "support.parquet")
    result = run(project, "dvc", "exp", "run", "-S", "fewshot.shots=4")
    assert stages_run(result.stdout) == {"fewshot", "encode_support_images", "prompt", "train", "evaluate"}, (
        result.stdout
    )
    for stage in ("mask", "centroids", "encode_eval_images", "encode_partial_images", "zeroshot"):
        assert f"Stage '{stage}' didn't change" in result.stdout, stage
    four_shot = _read(project, "fewshot", "support.parquet")
    assert four_shot.height > two_shot.height
    assert _summary(project)["n_images"] == four_shot.height


def test_threshold_holdout_chooses_thresholds_that_evaluate_and_predict_use(project):
    """train.threshold_holdout (few-shot, after the tests above): part of the support images leave training,
    the adapter keeps the thresholds chosen on them, and evaluate reports precision/recall/F1 at them."""
    from pipeline.method.adapter import AdapterBundle
    from pipeline.shipping.classifier import load_bundle

    support = _read(project, "fewshot", "support.parquet")
    result = run(project, "dvc", "exp", "run", "-S", "train.threshold_holdout=0.5")
    assert stages_run(result.stdout) == {"train", "evaluate"}, result.stdout
    summary = _summary(project)
    held = summary["n_images_threshold_holdout"]
    assert held == round(support.height * 0.5) and summary["n_images"] == support.height - held
    bundle = AdapterBundle.load(project / "artifacts" / "model" / "adapter.pt")
    assert len(bundle.thresholds) == len(LABELS) and "few-shot support images held out" in bundle.threshold_source
    assert load_bundle(project / "artifacts" / "model" / "adapter.pt")[1] == dict(zip(LABELS, bundle.thresholds))
    metrics = _metrics(project)
    assert metrics["thresholds_on_data"] == 1 and 0 <= metrics["f1_micro"] <= 1
    plotted = pl.read_csv(project / "reports" / "per_class.csv")
    assert plotted["threshold"].to_list() == pytest.approx(list(bundle.thresholds))
