"""Visual centroids, combination offsets, the centroids stage and its t-SNE picture."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline import paths
from pipeline.config import EncodeParams, Params, PartialParams, PrepareParams
from pipeline.data.labels import LabelSet
from pipeline.data.partial_labels import MASK_PATH, sample_mask
from pipeline.encoding.embeddings import write_shards
from pipeline.errors import UserError
from pipeline.evaluation.figures import figure_content
from pipeline.io import write_parquet
from pipeline.method.centroids import (
    COMBINATION_SCHEMA,
    COMBINATIONS_PATH,
    GAP_SCHEMA,
    GAPS_PATH,
    TSNE_PATH,
    VISUAL_PATH,
    VISUAL_SCHEMA,
    centroid_matrix,
    combination_key,
    combination_offsets,
    gap_table,
    text_offsets,
    text_shifts,
    visual_centroids,
)

LABELS = LabelSet.from_names(["a", "b", "c"])


def test_visual_centroid_is_the_mean_of_known_positives_only() -> None:
    vectors = np.array([[1, 0], [3, 0], [0, 2], [100, 100]], dtype=np.float32)
    known_positive = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])  # the last image: nothing known
    visual = visual_centroids(vectors, known_positive, LABELS)
    assert visual.schema == pl.Schema(VISUAL_SCHEMA)
    rows = {r["label"]: r for r in visual.iter_rows(named=True)}
    assert rows["a"]["n_images"] == 2 and rows["a"]["centroid"] == pytest.approx([2, 0])
    assert rows["b"]["n_images"] == 2 and rows["b"]["centroid"] == pytest.approx([1.5, 1])
    assert rows["c"]["n_images"] == 0 and rows["c"]["centroid"] is None
    matrix, has = centroid_matrix(visual, LABELS, 2)
    assert has.tolist() == [True, True, False] and matrix[2].tolist() == [0, 0]


def test_visual_centroids_check_the_mask_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        visual_centroids(np.zeros((2, 4)), np.zeros((3, 3)), LABELS)


def test_combination_offsets_by_hand(caplog) -> None:
    visual = visual_centroids(np.array([[2, 0], [0, 4]], np.float32), np.array([[1, 0, 0], [0, 1, 0]]), LABELS)
    texts = np.array([[0, 0], [1, 1], [1, 0], [5, 5], [7, 7], [9, 9]], dtype=np.float32)
    # ["b", "a"] and ["a", "b"] are one combination; "c" has no visual centroid; [] has no label at all
    text_labels = [["a", "b"], ["b", "a"], ["a"], ["a", "c"], ["c"], []]
    with caplog.at_level(logging.WARNING):
        frame, stats = combination_offsets(texts, text_labels, visual, LABELS)
    assert frame.schema == pl.Schema(COMBINATION_SCHEMA)
    rows = {tuple(r["combination"]): r for r in frame.iter_rows(named=True)}
    assert set(rows) == {(), ("a",), ("c",), ("a", "b"), ("a", "c")}
    ab = rows[("a", "b")]
    assert ab["n_texts"] == 2 and ab["n_labels_used"] == 2
    assert ab["text_centroid"] == pytest.approx([0.5, 0.5])
    assert ab["offset"] == pytest.approx([1 - 0.5, 2 - 0.5])  # mean([2,0],[0,4]) - [0.5,0.5]
    assert ab["offset_norm"] == pytest.approx(float(np.hypot(0.5, 1.5)), rel=1e-6)
    assert rows[("a",)]["offset"] == pytest.approx([1, 0])
    ac = rows[("a", "c")]  # only "a" has a centroid: used alone
    assert ac["n_labels_used"] == 1 and ac["offset"] == pytest.approx([2 - 5, 0 - 5])
    for key in [("c",), ()]:  # nothing to shift towards: zero
        assert rows[key]["n_labels_used"] == 0 and rows[key]["offset"] == [0, 0] and rows[key]["offset_norm"] == 0
    assert stats.n_combinations == 5 and stats.n_texts == 6
    assert stats.n_partly_shifted == 1 and stats.n_unshifted == 2 and stats.labels_without_centroid == ["c"]
    assert "no visual centroid" in caplog.text and "unshifted" in caplog.text

    offsets = text_offsets(text_labels, frame, LABELS, 2)
    assert offsets.dtype == np.float32 and offsets.shape == (6, 2)
    np.testing.assert_allclose(offsets[0], offsets[1])
    np.testing.assert_allclose(offsets[0], [0.5, 1.5])
    np.testing.assert_allclose(offsets[3], [-3, -5])
    # shifting each text centroid lands on the mean visual centroid of its labels
    np.testing.assert_allclose(np.array(ab["text_centroid"]) + ab["offset"], [1, 2])


def test_text_offsets_leave_unknown_combinations_unshifted_and_check_dims() -> None:
    visual = visual_centroids(np.array([[2.0, 0.0]]), np.array([[1, 0, 0]]), LABELS)
    frame, _ = combination_offsets(np.array([[0.0, 0.0]]), [["a"]], visual, LABELS)
    out = text_offsets([["a"], ["b"]], frame, LABELS, 2)
    np.testing.assert_allclose(out, [[2, 0], [0, 0]])
    with pytest.raises(UserError, match=r"offsets have 2 dims, the text embeddings 3: run `dvc repro centroids`"):
        text_offsets([["a"]], frame, LABELS, 3)


def test_label_and_global_gaps_by_hand() -> None:
    # images: "a" known on [2, 0] and [4, 0] -> centroid [3, 0]; "b" known on [0, 4]; "c" never known
    images = np.array([[2, 0], [4, 0], [0, 4], [6, 6]], np.float32)
    visual = visual_centroids(images, np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]]), LABELS)
    texts = np.array([[0, 0], [1, 1], [2, 0], [0, 3]], np.float32)
    text_labels = [["a"], ["a", "b"], ["c"], []]
    gaps = gap_table(texts, text_labels, visual, images, LABELS)
    assert gaps.schema == pl.Schema(GAP_SCHEMA) and gaps["kind"].to_list() == ["label"] * 3 + ["global"]
    rows = {r["label"]: r for r in gaps.iter_rows(named=True)}
    assert rows["a"]["n_texts"] == 2 and rows["a"]["text_centroid"] == pytest.approx([0.5, 0.5])
    assert rows["a"]["offset"] == pytest.approx([2.5, -0.5])  # [3, 0] - [0.5, 0.5]
    assert rows["b"]["offset"] == pytest.approx([-1, 3])  # [0, 4] - [1, 1]
    assert rows["c"]["offset"] is None and rows["c"]["offset_norm"] is None  # no visual centroid
    assert rows[None]["n_images"] == 4 and rows[None]["offset"] == pytest.approx([3 - 0.75, 2.5 - 1])

    label_shift = text_shifts("label", text_labels, pl.DataFrame(schema=COMBINATION_SCHEMA), gaps, LABELS, 2)
    np.testing.assert_allclose(label_shift, [[2.5, -0.5], [0.75, 1.25], [0, 0], [0, 0]])
    global_shift = text_shifts("global", text_labels, pl.DataFrame(schema=COMBINATION_SCHEMA), gaps, LABELS, 2)
    np.testing.assert_allclose(global_shift, [[2.25, 1.5]] * 4)
    np.testing.assert_allclose(text_shifts("none", text_labels, None, gaps, LABELS, 2), 0)
    with pytest.raises(UserError, match=r"label gaps have 2 dims, the text embeddings 3: run `dvc repro centroids`"):
        text_shifts("label", text_labels, None, gaps, LABELS, 3)
    with pytest.raises(UserError, match=r"global gap has 2 dims, the text embeddings 3: run `dvc repro centroids`"):
        text_shifts("global", text_labels, None, gaps, LABELS, 3)


def test_combination_key_sorts_in_label_order() -> None:
    assert combination_key(["c", "a", "c"], LABELS) == ("a", "c")


# --------------------------------------------------------------------------------------------- the stage


def _params(known_proportion, resolution=64) -> Params:
    return Params(
        prepare=PrepareParams(dataset="toy", splits=("trainval", "test"), root="."),
        encode=EncodeParams(model="unused", image_resolution=32, partial_resolution=resolution),
        partial=PartialParams(known_proportion=known_proportion, seed=3),
    )


def _workspace(root: Path, n_images: int = 40, n_texts: int = 30, dim: int = 8) -> None:
    """labels, a trainval manifest, texts and their embeddings, trainval image embeddings at 64 px."""
    rng = np.random.default_rng(0)
    write_parquet(LABELS.to_frame(), root / paths.labels_path("toy"))
    ids = [f"img{i}" for i in range(n_images)]
    image_labels = [sorted(rng.choice(["a", "b", "c"], rng.integers(1, 3), replace=False).tolist()) for _ in ids]
    manifest = pl.DataFrame(
        {"image_id": ids, "path": [f"{i}.jpg" for i in ids], "labels": image_labels, "difficult": [[] for _ in ids]},
        schema={"image_id": pl.Utf8, "path": pl.Utf8, "labels": pl.List(pl.Utf8), "difficult": pl.List(pl.Utf8)},
    )
    write_parquet(manifest, root / paths.manifest_path("toy", "trainval"))
    text_labels = [
        sorted(rng.choice(["a", "b", "c"], rng.integers(1, 3), replace=False).tolist()) for _ in range(n_texts)
    ]
    texts = pl.DataFrame(
        {
            "text_id": [f"t{i}" for i in range(n_texts)],
            "text": ["x"] * n_texts,
            "labels": text_labels,
            "combination": text_labels,
        }
    )
    write_parquet(texts, root / paths.TEXTS)
    write_shards(
        root / paths.TEXT_EMBEDDINGS, texts["text_id"].to_list(), rng.normal(size=(n_texts, dim)).astype(np.float32), {}
    )
    write_shards(
        root / paths.image_embeddings_dir(paths.PARTIAL_EMBEDDINGS, "trainval", 64),
        ids,
        rng.normal(size=(n_images, dim)).astype(np.float32) + 3,
        {},
    )


def _run(stage: str, params: Params) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"stage_{stage}", Path(__file__).resolve().parents[1] / "stages" / f"{stage}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(params)


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stage_writes_empty_tables_and_a_placeholder_when_off(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _run("centroids", _params(None))
    visual, combinations = pl.read_parquet(VISUAL_PATH), pl.read_parquet(COMBINATIONS_PATH)
    assert visual.height == 0 and visual.schema == pl.Schema(VISUAL_SCHEMA)
    assert combinations.height == 0 and combinations.schema == pl.Schema(COMBINATION_SCHEMA)
    assert pl.read_parquet(GAPS_PATH).height == 0
    assert _is_png(TSNE_PATH)
    assert figure_content(TSNE_PATH) == {"placeholder": "partial-label setting off:\nno centroids"}


def test_stage_computes_centroids_from_known_positives(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _workspace(tmp_path)
    params = _params(0.5)
    manifest = pl.read_parquet(paths.manifest_path("toy", "trainval"))
    mask = sample_mask(manifest, LABELS, 0.5, params.partial.seed)
    write_parquet(mask, MASK_PATH)
    _run("centroids", params)

    visual = pl.read_parquet(VISUAL_PATH)
    assert visual.schema == pl.Schema(VISUAL_SCHEMA) and visual["label"].to_list() == ["a", "b", "c"]
    from pipeline.encoding.embeddings import read_shards

    images = read_shards(paths.image_embeddings_dir(paths.PARTIAL_EMBEDDINGS, "trainval", 64))
    for row in visual.iter_rows(named=True):
        having = mask.filter(pl.col("known_positive").list.contains(row["label"]))["image_id"].to_list()
        assert row["n_images"] == len(having)
        np.testing.assert_allclose(row["centroid"], images.select(having).mean(axis=0), rtol=1e-5, atol=1e-5)
    combinations = pl.read_parquet(COMBINATIONS_PATH)
    assert combinations.schema == pl.Schema(COMBINATION_SCHEMA)
    assert combinations["n_texts"].sum() == 30
    assert (combinations["offset_norm"] > 1).all()  # images sit 3 away from the texts in every dimension
    gaps = pl.read_parquet(GAPS_PATH)
    assert gaps.schema == pl.Schema(GAP_SCHEMA) and gaps.height == 4
    assert gaps.filter(pl.col("kind") == "global")["offset_norm"].item() > 5  # ~3 * sqrt(8)
    # the global gap: every image of the split (known labels or not) minus every text, each text once
    texts = pl.read_parquet(paths.TEXTS)
    text_mean = read_shards(paths.TEXT_EMBEDDINGS).select(texts["text_id"].to_list()).mean(axis=0)
    image_mean = images.select(manifest["image_id"].to_list()).mean(axis=0)
    global_row = gaps.filter(pl.col("kind") == "global").row(0, named=True)
    assert global_row["n_images"] == manifest.height and global_row["n_texts"] == texts.height
    np.testing.assert_allclose(global_row["offset"], image_mean - text_mean, rtol=1e-5, atol=1e-5)
    # the picture (Fig. 7): one panel, the six most frequent combinations of trainval with all their images,
    # a centroid from the full labels for each, one from the known labels where one of its labels is known
    content = figure_content(TSNE_PATH)
    assert len(content["panels"]) == 1
    panel = content["panels"][0]
    counts = manifest.group_by(pl.col("labels").list.join(" + ").alias("key")).len()
    counts = dict(zip(counts["key"], counts["len"]))
    assert panel["title"] == "trainval images @64px, known proportion 0.5"
    assert sorted(panel["combinations"]) == sorted(counts) and len(counts) <= 6  # 3 labels: at most 6 combinations
    assert panel["images"] == [counts[c] for c in panel["combinations"]]
    assert sum(panel["images"]) == manifest.height == 40
    assert panel["full"] == len(counts) and 1 <= panel["estimated"] <= len(counts)


def test_stage_needs_the_mask(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _workspace(tmp_path)
    with pytest.raises(FileNotFoundError, match="dvc repro mask"):
        _run("centroids", _params(0.5))


def test_centroids_figure_draws_one_panel_per_run(tmp_path: Path) -> None:
    from pipeline.evaluation.figures import centroids_figure, combination_panel
    from pipeline.testbeds.synthetic_worlds import World

    panels = []
    for p in (0.1, 0.9):
        world = World(0)
        x, image_labels = world.images(300)
        full = world.labels.multi_hot(image_labels)
        known = full * (np.random.default_rng(1).random(full.shape) < p)
        panel = combination_panel(f"known proportion {p}", x, image_labels, known, world.labels, full, top=4)
        assert len(panel.combinations) == 4 and panel.estimated.shape == (4, 32) and panel.full.shape == (4, 32)
        counts = [sum(combination_key(ls, world.labels) == c for ls in image_labels) for c in panel.combinations]
        assert counts == sorted(counts, reverse=True) and [len(i) for i in panel.images] == counts
        panels.append(panel)
    # more known labels: estimated centroids closer to the full-label ones
    errors = [np.nanmean(np.linalg.norm(p.estimated - p.full, axis=1)) for p in panels]
    assert errors[1] < errors[0]
    path = centroids_figure(tmp_path / "fig.png", panels)
    assert _is_png(path) and path.stat().st_size > 20_000
    drawn = figure_content(path)["panels"]  # counted from the points the figure drew
    assert [d["title"] for d in drawn] == ["known proportion 0.1", "known proportion 0.9"]
    for d, panel in zip(drawn, panels):
        assert d["combinations"] == [" + ".join(c) for c in panel.combinations]
        assert d["images"] == [len(i) for i in panel.images]
        assert d["estimated"] == int((~np.isnan(panel.estimated).any(axis=1)).sum()) and d["full"] == 4


def test_the_figure_content_is_read_from_the_drawn_points() -> None:
    """drawn_content counts matplotlib's own offsets: drop a panel's points and the count follows."""
    from pipeline.evaluation.figures import CentroidPanel, _pyplot, draw_centroids, drawn_content

    rng = np.random.default_rng(0)
    panel = CentroidPanel(
        "p",
        [("a",), ("a", "b")],
        [rng.normal(size=(7, 4)), rng.normal(size=(3, 4))],
        np.array([[0.0, 0, 0, 1], [np.nan] * 4]),
        rng.normal(size=(2, 4)),
    )
    fig = draw_centroids([panel])
    try:
        assert drawn_content(fig) == [
            {"title": "p", "combinations": ["a", "a + b"], "images": [7, 3], "estimated": 1, "full": 2}
        ]
        next(c for c in fig.axes[0].collections if c.get_gid() == "images 0").set_offsets(np.zeros((2, 2)))
        assert drawn_content(fig)[0]["images"] == [2, 3]
    finally:
        _pyplot().close(fig)
