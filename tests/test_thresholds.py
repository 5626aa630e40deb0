"""Thresholds chosen on labelled images (pipeline/evaluation/thresholds.py, the train stage's train.threshold_holdout):
on a synthetic world where 0.5 is wrong (the modality gap pushes image probabilities off the texts' scale),
thresholds chosen on held-out support images beat 0.5 on other held-out support images; the adapter keeps
them, and `tai predict --model`, the classifier and `tai export` use them with no flag."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.config import ParamsError, TrainParams
from pipeline.evaluation.thresholds import best_f1_threshold, choose_thresholds, holdout_rows, thresholded_metrics
from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig
from pipeline.method.train import TrainingSet, train_adapter
from pipeline.testbeds.synthetic_worlds import World, train_params
from stages.train import hold_out_images, with_thresholds


def test_the_f1_best_threshold_separates_what_can_be_separated():
    scores = np.array([0.05, 0.1, 0.2, 0.25, 0.3, 0.02])
    positive = np.array([0, 0, 1, 1, 1, 0])
    t = best_f1_threshold(scores, positive)
    assert 0.1 < t < 0.2 and t == pytest.approx(0.15)  # halfway between the last kept and the next
    assert best_f1_threshold(scores, np.zeros(6)) is None  # no positive: nothing to choose on
    thresholds, chosen = choose_thresholds(
        np.c_[scores, scores], np.c_[positive, np.zeros(6)], known=np.c_[np.ones(6), np.ones(6)]
    )
    assert thresholds.tolist() == [pytest.approx(0.15), 0.5] and chosen.tolist() == [True, False]
    # unknown entries (partial labels) are ignored: hiding the positives leaves nothing to choose on
    _, chosen = choose_thresholds(scores[:, None], positive[:, None], known=(1 - positive)[:, None])
    assert not chosen.any()


def test_precision_recall_f1_at_thresholds():
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])
    targets = np.array([[1, 0], [0, 1], [1, 1]])
    summary, per_class = thresholded_metrics(scores, targets, np.array([0.5, 0.5]))
    # label 0: tp 1 fp 1 fn 1; label 1: tp 1 fp 0 fn 1
    assert per_class["precision"].tolist() == [0.5, 1.0] and per_class["recall"].tolist() == [0.5, 0.5]
    assert summary["precision_micro"] == pytest.approx(2 / 3) and summary["recall_micro"] == pytest.approx(0.5)
    assert summary["f1_micro"] == pytest.approx(4 / 7)
    assert summary["f1_macro"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_holdout_is_seeded_and_never_everything():
    held = holdout_rows(10, 0.3, seed=0)
    assert held.sum() == 3 and (held == holdout_rows(10, 0.3, seed=0)).all()
    assert not holdout_rows(10, 0.0, 0).any() and holdout_rows(2, 0.9, 0).sum() == 1
    with pytest.raises(ParamsError, match="train.threshold_holdout = 1.0 is out of range"):
        TrainParams(threshold_holdout=1.0).check("train")


def f1_micro(bundle: AdapterBundle, x: np.ndarray, targets: np.ndarray, thresholds: np.ndarray) -> float:
    return thresholded_metrics(bundle.scores(torch.from_numpy(x)).numpy(), targets, thresholds)[0]["f1_micro"]


def test_thresholds_chosen_on_support_images_beat_half_on_held_out_support_images(one_thread):
    """A few-shot world with a wide gap: the adapter, trained on texts and a few support images, scores images
    far from 0.5. The train stage's own code holds half the support images out, chooses per-label thresholds
    on them, and those beat 0.5 on support images it never saw (neither trained nor chosen on)."""
    world = World(seed=3, n_labels=5, dim=32, gap=3.0, label_gap=1.5, noise=0.3)
    text_x, text_labels = world.texts(600)
    support_x, support_labels = world.images(80)
    unseen_x, unseen_labels = world.images(400)  # more support images from the same draw, never used
    labels = world.labels
    data = TrainingSet(
        torch.from_numpy(text_x),
        torch.from_numpy(labels.multi_hot(text_labels)),
        1.0,
        images=torch.from_numpy(support_x),
        image_targets=torch.from_numpy(labels.multi_hot(support_labels)),
        image_radius=0.5,
        image_weight=0.05,
    )
    params = SimpleNamespace(train=train_params(threshold_holdout=0.5, epochs=4, hidden_dim=32))
    kept, held = hold_out_images(data, params)
    assert len(kept.images) == len(held.images) == 40
    model, _ = train_adapter(kept, params.train)
    bundle = AdapterBundle(model, labels.names, False, "synthetic", 64)
    bundle, n_chosen = with_thresholds(bundle, held, params)
    assert n_chosen == len(labels) and "40 few-shot support images held out of training" in bundle.threshold_source

    targets = labels.multi_hot(unseen_labels)
    at_half = f1_micro(bundle, unseen_x, targets, np.full(len(labels), 0.5))
    chosen = f1_micro(bundle, unseen_x, targets, np.array(bundle.thresholds))
    assert at_half < 0.2, "the world must be one where 0.5 is wrong"  # measured: 0.0 (every image below 0.5)
    assert chosen > at_half + 0.3, (chosen, at_half)  # measured: 0.62


def test_without_labelled_images_thresholds_stay_half_and_the_log_names_the_options(caplog):
    data = TrainingSet(torch.zeros(4, 8), torch.zeros(4, 2), 1.0)
    params = SimpleNamespace(train=train_params(threshold_holdout=0.0))
    kept, held = hold_out_images(data, params)
    bundle = AdapterBundle(Adapter(AdapterConfig(8, 2, 4, 0.0)), ("a", "b"), False, "synthetic", 64)
    with caplog.at_level("INFO"):
        same, n = with_thresholds(bundle, held, params)
    assert kept is data and held is None and n == 0 and same.thresholds is None
    assert (
        "0.5 for every label" in caplog.text
        and "train.threshold_holdout" in caplog.text
        and "tai thresholds" in caplog.text
    )


def test_predict_uses_the_adapters_thresholds_with_no_flag(tmp_path, tiny_clip):
    from pipeline.cli import app

    model = Adapter(AdapterConfig(embed_dim=64, n_labels=3, hidden_dim=16, dropout=0.0))
    with torch.no_grad():
        model.net[-1].weight.zero_()
        model.net[-1].bias.copy_(torch.tensor([1.0, 1.0, 1.0]))  # p = 0.731 for every label and image
    adapter = tmp_path / "adapter.pt"
    AdapterBundle(
        model,
        ("cat", "dog", "car"),
        False,
        str(tiny_clip),
        64,
        "square",
        thresholds=(0.9, 0.5, 0.7),
        threshold_source="test",
    ).save(adapter)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (40, 30), (120, 30, 200)).save(folder / "a.jpg")

    def predicted(*flags):
        out = tmp_path / "p.parquet"
        result = CliRunner().invoke(
            app, ["predict", str(folder), "--model", str(adapter), "--out", str(out), "--device", "cpu", *flags]
        )
        assert result.exit_code == 0, result.output
        return pl.read_parquet(out)["predicted"].to_list()

    assert predicted() == [["dog", "car"]]  # cat's 0.9 is above 0.731: not predicted
    assert predicted("--threshold", "0.5") == [["cat", "dog", "car"]]  # one flag overrides them all


def test_tai_thresholds_chooses_on_a_labelled_folder(tmp_path, tiny_clip):
    """Plumbing on a random CLIP: every label with a positive gets a threshold, each at least as good (F1 on
    the images it was chosen on) as 0.5; the file is one `tai predict --thresholds` reads."""
    import json

    from pipeline.cli import app
    from pipeline.shipping.classifier import read_thresholds

    torch.manual_seed(0)
    adapter = tmp_path / "adapter.pt"
    AdapterBundle(Adapter(AdapterConfig(64, 3, 16, 0.0)), ("cat", "dog", "car"), False, str(tiny_clip), 64).save(
        adapter
    )
    folder, rng = tmp_path / "mine", np.random.default_rng(0)
    folder.mkdir()
    rows = ["path,labels,split"]
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{'cat|dog' if i % 3 else 'dog'},any")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "t.json"
    result = CliRunner().invoke(
        app,
        [
            "thresholds",
            str(folder),
            str(tmp_path / "labels.csv"),
            "--adapter",
            str(adapter),
            "--out",
            str(out),
            "--check",
            "0",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    chosen = read_thresholds(out, ("cat", "dog", "car"))
    assert set(chosen) == {"cat", "dog"}  # car has no positive: it keeps 0.5

    from pipeline.shipping.predict import predict_folder

    frame, _ = predict_folder(adapter, folder, device="cpu")
    frame = frame.sort(pl.col("path").str.extract(r"(\d+)\.png").cast(int))
    truth = np.array([[True, True] if i % 3 else [False, True] for i in range(12)])
    for c, name in enumerate(("cat", "dog")):
        f1 = lambda t: thresholded_metrics(frame[name].to_numpy()[:, None], truth[:, [c]], np.array([t]))[0]["f1_micro"]
        assert f1(chosen[name]) >= f1(0.5), name
    assert json.loads(out.read_text()) == chosen

    (tmp_path / "bad.csv").write_text("path,labels,split\n0.png,zebra,any\n1.png,cat,any\n")
    result = CliRunner().invoke(
        app, ["thresholds", str(folder), str(tmp_path / "bad.csv"), "--adapter", str(adapter), "--device", "cpu"]
    )
    assert result.exit_code == 2 and "zebra" in result.output


def test_partial_labels_hold_out_images_with_their_known_entries():
    """partial.image_weight > 0: the held-out images keep their mask, and thresholds are chosen on known entries only."""
    rng = np.random.default_rng(0)
    targets = torch.from_numpy((rng.random((20, 2)) < 0.5).astype(np.float32))
    known = torch.ones(20, 2)
    known[:, 1] = 0  # label b is never known
    data = TrainingSet(
        torch.zeros(4, 8),
        torch.zeros(4, 2),
        1.0,
        images=torch.from_numpy(rng.normal(size=(20, 8)).astype(np.float32)),
        image_targets=targets,
        image_known=known,
        image_weight=0.5,
    )
    params = SimpleNamespace(train=train_params(threshold_holdout=0.25))
    kept, held = hold_out_images(data, params)
    assert len(kept.images) == 15 and len(held.images) == 5 and held.image_known.shape == (5, 2)
    bundle = AdapterBundle(Adapter(AdapterConfig(8, 2, 4, 0.0)), ("a", "b"), False, "synthetic", 64)
    bundle, n = with_thresholds(bundle, held, params)
    assert "known entries of partially labelled images" in bundle.threshold_source
    assert bundle.thresholds[1] == 0.5 and n == int(held.image_targets[:, 0].any())
