"""Training that goes wrong says so and writes nothing; saved state is tensors and plain data only."""

from __future__ import annotations

import logging
import math
import pickle
import re
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml

from e2e_project import stage_command, stage_env
from pipeline.config import TrainParams
from pipeline.data.labels import LabelSet
from pipeline.encoding.embeddings import write_shards
from pipeline.io import write_parquet
from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig, AdapterError
from pipeline.method.train import TrainingDiverged, TrainingSet, train_adapter

LABELS = LabelSet.from_names(["cat", "dog", "car", "tree"])


def small_set(n: int = 96, seed: int = 0, radius: float = 1.0) -> TrainingSet:
    g = torch.Generator().manual_seed(seed)
    return TrainingSet(torch.randn(n, 16, generator=g), (torch.rand(n, 4, generator=g) > 0.5).float(), radius)


def params(**changes) -> TrainParams:
    return TrainParams(**{"epochs": 3, "hidden_dim": 16, "batch_size": 32, "radius": 1.0, "device": "cpu", **changes})


def test_a_nan_radius_stops_at_the_first_step_and_says_what_to_try(tmp_path, one_thread):
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(TrainingDiverged) as error:
        train_adapter(small_set(radius=float("nan")), params(radius=float("nan")), checkpoint)
    message = str(error.value)
    assert "the loss is nan at epoch 1 of 3, step 1 of 3" in message
    assert "lr 4e-06 of train.max_lr 0.0001" in message and "text noise radius nan" in message
    assert "no model was written" in message and "lower train.max_lr" in message and "smaller radius" in message
    assert not checkpoint.exists()


def test_a_huge_learning_rate_stops_at_the_first_non_finite_loss(tmp_path, one_thread):
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(
        TrainingDiverged, match=r"training diverged: the loss is (nan|inf|-inf) at epoch 1 of 3, step \d of 3"
    ):
        train_adapter(small_set(), params(max_lr=1e9), checkpoint)
    assert not checkpoint.exists()  # nothing of the diverged epoch is kept


def test_a_loss_that_explodes_while_staying_finite_stops_training(tmp_path, one_thread, monkeypatch):
    """lr 1e9, radius 1, one step per epoch: the second epoch's loss is 1.8e28 (the issue's 2e28), finite."""
    from pipeline.method import train

    data, runaway = small_set(radius=1.0), params(max_lr=1e9, epochs=2, batch_size=96, hidden_dim=16)
    for name in ("LOSS_GROWTH", "LOSS_LIMIT", "WEIGHT_LIMIT"):  # without the bounds: a model is written
        monkeypatch.setattr(train, name, math.inf)
    _, history = train_adapter(data, runaway)
    assert history[0]["loss"] < 1 and 1e27 < history[1]["loss"] < math.inf
    monkeypatch.undo()

    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(TrainingDiverged) as error:  # the weight bound sees it first, after the first step
        train_adapter(data, runaway, checkpoint)
    message = str(error.value)
    assert re.search(
        r"a weight reached [0-9.e+]+ \(the bound is 1e\+06; weights start below 1\) at the end of "
        r"epoch 1 of 2",
        message,
    ), message
    assert "no model was written" in message and "lower train.max_lr" in message and not checkpoint.exists()

    monkeypatch.setattr(train, "WEIGHT_LIMIT", math.inf)  # and the loss bound at the end of the next epoch
    with pytest.raises(
        TrainingDiverged,
        match=r"the epoch's mean loss is [0-9.]+e\+28, more than 1000 times the "
        r"first epoch's 0.697 at the end of epoch 2 of 2",
    ):
        train_adapter(data, runaway)


def test_a_loss_far_above_chance_in_the_first_epoch_stops_training(one_thread):
    with pytest.raises(
        TrainingDiverged,
        match=r"mean loss is [0-9.e+]+, above 693 \(a thousand times the loss of "
        r"answering 0.5 for every label\) at the end of epoch 1 of 3",
    ):
        train_adapter(small_set(), params(max_lr=1e3))


def test_a_divergence_after_a_checkpoint_keeps_the_last_good_epoch(tmp_path, one_thread, caplog):
    """lr 10, one step per epoch: epochs 1 and 2 are sane and checkpointed, epoch 3's loss runs away."""
    checkpoint = tmp_path / "checkpoint.pt"
    sane_then_runaway = params(max_lr=10.0, epochs=6, batch_size=96, hidden_dim=16)
    seen: list[dict] = []
    with pytest.raises(
        TrainingDiverged, match=r"more than 1000 times the first epoch's 0.697 at the end of epoch 3 of 6"
    ):
        train_adapter(small_set(), sane_then_runaway, checkpoint, on_epoch=seen.append)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert [row["epoch"] for row in seen] == [1, 2] and state["epoch"] == 2 and state["history"] == seen
    assert all(torch.isfinite(w).all() for w in state["model"].values())
    # a rerun resumes from the last good epoch and stops at the same place: the bad epoch is never saved
    caplog.set_level(logging.INFO)
    with pytest.raises(TrainingDiverged, match="at the end of epoch 3 of 6"):
        train_adapter(small_set(), sane_then_runaway, checkpoint)
    assert "resuming training from" in caplog.text and "after epoch 2 of 6" in caplog.text
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"] == 2


def test_embeddings_holding_nan_are_named_before_training(one_thread):
    data = small_set()
    data.text[5, 3] = float("inf")
    with pytest.raises(TrainingDiverged, match="1 of 96 text embeddings hold NaN or infinity"):
        train_adapter(data, params())


def test_the_checkpoint_is_tensors_and_plain_data(tmp_path, one_thread):
    checkpoint = tmp_path / "checkpoint.pt"
    train_adapter(small_set(), params(epochs=2), checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # refuses anything but plain data
    assert state["epoch"] == 2 and isinstance(state["generator"], torch.Tensor)
    assert [row["epoch"] for row in state["history"]] == [1, 2]


class RunsCode:
    """A pickle that calls a function when loaded: what a tampered checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_tampered_checkpoint_runs_no_code_and_is_ignored(tmp_path, one_thread, caplog):
    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"fingerprint": "x", "payload": RunsCode(marker)}, checkpoint)
    with open(tmp_path / "probe.pkl", "wb") as f:  # the pickle does run code when loaded unsafely
        pickle.dump(RunsCode(tmp_path / "probe"), f)
    pickle.loads((tmp_path / "probe.pkl").read_bytes())
    assert (tmp_path / "probe").exists()

    fresh, fresh_history = train_adapter(small_set(), params(epochs=2))
    model, history = train_adapter(small_set(), params(epochs=2), checkpoint)
    assert not marker.exists()
    assert "ignoring checkpoint" in caplog.text and "training from scratch" in caplog.text
    assert [r["loss"] for r in history] == [r["loss"] for r in fresh_history]
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b)


def save_adapter(path: Path, poison: bool = False) -> None:
    torch.manual_seed(0)
    model = Adapter(AdapterConfig(16, 4, 8, 0.0))
    if poison:
        with torch.no_grad():
            model.net[3].weight[0, 0] = float("nan")
    AdapterBundle(model, LABELS.names, False, "RN50", 224).save(path)


def test_an_adapter_with_non_finite_weights_is_refused(tmp_path):
    save_adapter(tmp_path / "good.pt")
    assert AdapterBundle.load(tmp_path / "good.pt").labels == LABELS.names
    save_adapter(tmp_path / "adapter.pt", poison=True)
    with pytest.raises(AdapterError) as error:
        AdapterBundle.load(tmp_path / "adapter.pt")
    message = str(error.value)
    assert str(tmp_path / "adapter.pt") in message and "net.3.weight" in message
    assert "retrain it (`dvc repro train`) with a lower train.max_lr" in message
    (tmp_path / "labels.csv").write_text("path,labels\n")
    with pytest.raises(AdapterError, match="labels.csv is not an adapter saved by the train stage"):
        AdapterBundle.load(tmp_path / "labels.csv")


def stage_project(tmp_path: Path, train: dict) -> Path:
    """Just what the train stage reads: labels, texts and their embeddings."""
    write_parquet(LABELS.to_frame(), tmp_path / "artifacts" / "data" / "voc2007" / "labels.parquet")
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(64)]
    labels = [[LABELS.names[i % 4]] for i in range(64)]
    write_parquet(pl.DataFrame({"text_id": ids, "labels": labels}), tmp_path / "artifacts" / "texts.parquet")
    write_shards(tmp_path / "artifacts" / "embeddings" / "text", ids, rng.normal(size=(64, 16)).astype(np.float32), {})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"epochs": 2, "hidden_dim": 8, **train}}))
    return tmp_path


def test_the_train_stage_exits_2_and_writes_no_model(tmp_path):
    project = stage_project(tmp_path, {"max_lr": 1e9, "batch_size": 8})
    result = subprocess.run(
        stage_command("train"), cwd=project, env=stage_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    assert "training diverged" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "artifacts" / "model").exists()


def test_the_evaluate_stage_exits_2_for_a_nan_adapter(tmp_path):
    project = stage_project(tmp_path, {})
    save_adapter(project / "artifacts" / "model" / "adapter.pt", poison=True)
    result = subprocess.run(
        stage_command("evaluate"), cwd=project, env=stage_env(), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    assert "adapter.pt: the adapter's weights hold NaN or infinity" in result.stderr
    assert not (project / "artifacts" / "eval").exists()
