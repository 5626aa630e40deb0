"""Few-shot: CoOp-style support sampling, the fewshot stage, the training set, and mixed
perturbation (texts + a few labelled images) against text-only training on synthetic embeddings."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from pipeline import paths
from pipeline.config import EncodeParams, FewshotParams, Params, ParamsError, PrepareParams, TrainParams, load_params
from pipeline.data.fewshot import SUPPORT_PATH, SUPPORT_SCHEMA, positives_per_class, sample_support
from pipeline.data.labels import LabelError, LabelSet
from pipeline.encoding.embeddings import write_shards
from pipeline.evaluation.metrics import mean_ap
from pipeline.io import write_parquet
from pipeline.method.train import TrainingSet, train_adapter
from pipeline.testbeds.synthetic_worlds import unit_rows

ROOT = Path(__file__).resolve().parents[1]
LABELS = LabelSet.from_names([f"l{i}" for i in range(8)])


def _manifest(image_labels) -> pl.DataFrame:
    n = len(image_labels)
    return pl.DataFrame(
        {
            "image_id": [f"img{i:04d}" for i in range(n)],
            "path": [f"{i}.jpg" for i in range(n)],
            "labels": image_labels,
            "difficult": [[] for _ in range(n)],
        },
        schema={"image_id": pl.Utf8, "path": pl.Utf8, "labels": pl.List(pl.Utf8), "difficult": pl.List(pl.Utf8)},
    )


def _random_manifest(n: int, seed: int = 0, labels: LabelSet = LABELS) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    # skewed label frequencies, like real datasets (person everywhere, sofa rare)
    weights = np.linspace(3, 0.3, len(labels))
    weights /= weights.sum()
    return _manifest(
        [sorted(rng.choice(labels.names, rng.integers(1, 4), replace=False, p=weights).tolist()) for _ in range(n)]
    )


@pytest.mark.parametrize("shots", [1, 2, 4, 8, 16])
def test_every_class_gets_at_least_n_positives(shots: int) -> None:
    manifest = _random_manifest(400)
    support = sample_support(manifest, LABELS, shots, seed=0)
    assert support.schema == pl.Schema(SUPPORT_SCHEMA)
    assert support["image_id"].is_unique().all()
    counts = positives_per_class(support, LABELS)
    assert min(counts.values()) >= shots
    # greedy: each picked image was needed by the class it was picked for when it was picked, so the set
    # stays far below shots * classes * max labels
    assert support.height <= shots * len(LABELS)
    truth = dict(zip(manifest["image_id"].to_list(), manifest["labels"].to_list()))
    for row in support.iter_rows(named=True):  # images bring all their labels
        assert row["labels"] == truth[row["image_id"]] and row["picked_for"] in row["labels"]
    order = manifest["image_id"].to_list()  # manifest order
    assert support["image_id"].to_list() == sorted(support["image_id"].to_list(), key=order.index)


def test_sampling_is_seeded() -> None:
    manifest = _random_manifest(300)
    a = sample_support(manifest, LABELS, 4, seed=0)
    assert sample_support(manifest, LABELS, 4, seed=0).equals(a)
    assert not sample_support(manifest, LABELS, 4, seed=1).equals(a)


def test_a_class_with_too_few_images_gets_all_of_them(caplog) -> None:
    manifest = _manifest([["l0"]] * 10 + [["l1"]] * 2 + [["l0", "l2"]])
    labels = LabelSet.from_names(["l0", "l1", "l2", "l3"])
    with caplog.at_level(logging.WARNING):
        support = sample_support(manifest, labels, 4, seed=0)
    counts = positives_per_class(support, labels)
    assert counts["l1"] == 2 and counts["l2"] == 1 and counts["l3"] == 0 and counts["l0"] >= 4
    assert "'l1' has only 2" in caplog.text and "'l3' has only 0" in caplog.text


def test_zero_shots_and_unknown_labels() -> None:
    empty = sample_support(_random_manifest(20), LABELS, 0, seed=0)
    assert empty.height == 0 and empty.schema == pl.Schema(SUPPORT_SCHEMA)
    with pytest.raises(LabelError, match="zebra"):
        sample_support(_manifest([["zebra"]]), LABELS, 1, seed=0)


def test_shots_are_checked(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    assert load_params(params, {"fewshot.shots": 16}).fewshot.enabled
    with pytest.raises(ParamsError, match="shots"):
        load_params(params, {"fewshot.shots": 3})
    from pipeline.settings import plan

    with pytest.raises(ParamsError, match="both set"):
        plan(load_params(params, {"fewshot.shots": 4, "partial.known_proportion": 0.5}))


# --------------------------------------------------------------------------------------------- stage + data


def _run(stage: str, params: Params) -> None:
    spec = importlib.util.spec_from_file_location(f"stage_{stage}", ROOT / "stages" / f"{stage}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(params)


def _params(shots: int) -> Params:
    return Params(
        prepare=PrepareParams(dataset="toy", splits=("trainval", "test"), root="."),
        encode=EncodeParams(model="unused", image_resolution=32, partial_resolution=64),
        fewshot=FewshotParams(shots=shots, seed=2, radius=0.7, image_weight=0.25),
        train=TrainParams(radius=5.0),
    )


def test_stage_off_writes_an_empty_table(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        _run("fewshot", _params(0))
    support = pl.read_parquet(SUPPORT_PATH)
    assert support.height == 0 and support.schema == pl.Schema(SUPPORT_SCHEMA)
    assert "skipping" in caplog.text


def test_stage_and_training_set(tmp_path: Path, monkeypatch) -> None:
    from stages.train import training_set

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    manifest = _random_manifest(60)
    write_parquet(LABELS.to_frame(), paths.labels_path("toy"))
    write_parquet(manifest, paths.manifest_path("toy", "trainval"))
    texts = pl.DataFrame(
        {
            "text_id": ["t0", "t1"],
            "text": ["x", "y"],
            "labels": [["l0"], ["l1", "l2"]],
            "combination": [["l0"], ["l1", "l2"]],
        }
    )
    write_parquet(texts, paths.TEXTS)
    write_shards(paths.TEXT_EMBEDDINGS, ["t0", "t1"], rng.normal(size=(2, 8)).astype(np.float32), {})
    ids = manifest["image_id"].to_list()
    image_vectors = rng.normal(size=(60, 8)).astype(np.float32)
    write_shards(
        paths.image_embeddings_dir(paths.SUPPORT_EMBEDDINGS, "trainval", 32), ids[1:], image_vectors[1:], {}
    )  # img0000 unreadable
    params = _params(2)
    _run("fewshot", params)
    support = pl.read_parquet(SUPPORT_PATH)
    assert support.equals(sample_support(manifest, LABELS, 2, seed=2))

    data, resolution = training_set(params, LABELS)
    assert resolution == 32
    assert data.text_radius == 5.0 and data.image_radius == 0.7 and data.image_weight == 0.25
    assert data.text_offsets is None and data.image_known is None
    kept = [i for i in support["image_id"].to_list() if i != "img0000"]
    assert len(data.images) == len(kept)
    np.testing.assert_array_equal(data.images.numpy(), image_vectors[[ids.index(i) for i in kept]])
    truth = dict(zip(ids, manifest["labels"].to_list()))
    np.testing.assert_array_equal(data.image_targets.numpy(), LABELS.multi_hot([truth[i] for i in kept]))

    write_parquet(support.clear(), SUPPORT_PATH)
    with pytest.raises(FileNotFoundError, match="dvc repro fewshot"):
        training_set(params, LABELS)


# --------------------------------------------------------------------------------------------- the method


def _world(seed: int, n_labels: int = 6, dim: int = 32, gap: float = 3.0, label_gap: float = 1.5, noise: float = 0.3):
    """(texts, images): samplers of synthetic embeddings with a label-dependent modality offset
    (text = mean a_l + noise; image = mean (a_l + o_l) + g + noise), and the label set."""
    rng = np.random.default_rng(seed)
    labels = LabelSet.from_names([f"l{i}" for i in range(n_labels)])
    a, g, o = (
        unit_rows(rng.normal(size=(n_labels, dim))),
        gap * unit_rows(rng.normal(size=dim)),
        label_gap * unit_rows(rng.normal(size=(n_labels, dim))),
    )

    def sample(n: int, image: bool):
        cs = [sorted(rng.choice(n_labels, rng.integers(1, 4), replace=False).tolist()) for _ in range(n)]
        x = np.stack([(a[c] + o[c]).mean(0) + g if image else a[c].mean(0) for c in cs])
        x = x + rng.normal(scale=noise, size=x.shape)
        return x.astype(np.float32), [[labels.names[i] for i in c] for c in cs]

    return (lambda n: sample(n, False)), (lambda n: sample(n, True)), labels


def _train_params() -> TrainParams:
    return TrainParams(
        seed=0,
        epochs=6,
        batch_size=64,
        max_lr=3e-3,
        weight_decay=0.01,
        hidden_dim=64,
        dropout=0.1,
        radius=1.0,
        noise="surface",
        normalize=False,
        device="cpu",
    )


def _map(model, x, label_lists, labels) -> float:
    with torch.no_grad():
        return mean_ap(torch.sigmoid(model(torch.from_numpy(x))).numpy(), labels.multi_hot(label_lists))


def fewshot_vs_text_only(seed: int, shots: int, image_radius: float = 0.3, image_weight: float = 0.5):
    texts, images, labels = _world(seed)
    text_x, text_labels = texts(1500)
    pool_x, pool_labels = images(500)
    test_x, test_labels = images(600)
    manifest = pl.DataFrame({"image_id": [f"i{j}" for j in range(len(pool_x))], "labels": pool_labels})
    support = sample_support(manifest, labels, shots, seed)
    rows = [int(i[1:]) for i in support["image_id"].to_list()]
    text, targets = torch.from_numpy(text_x), torch.from_numpy(labels.multi_hot(text_labels))
    text_only, _ = train_adapter(TrainingSet(text, targets, 1.0), _train_params())
    mixed, _ = train_adapter(
        TrainingSet(
            text,
            targets,
            1.0,
            images=torch.from_numpy(pool_x[rows]),
            image_targets=torch.from_numpy(labels.multi_hot(support["labels"].to_list())),
            image_radius=image_radius,
            image_weight=image_weight,
        ),
        _train_params(),
    )
    return len(rows), _map(text_only, test_x, test_labels, labels), _map(mixed, test_x, test_labels, labels)


def test_mixed_perturbation_beats_text_only(one_thread) -> None:
    results = [fewshot_vs_text_only(seed, shots=4) for seed in (0, 1)]
    print(
        "\n4-shot, (support images, text-only mAP, mixed mAP) per seed:",
        [(n, round(t, 4), round(m, 4)) for n, t, m in results],
    )
    for _, text_only_map, mixed_map in results:
        assert mixed_map > text_only_map + 0.03
