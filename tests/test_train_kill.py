"""SIGKILL `python -m stages.train` in the middle of an epoch: the rerun resumes from the last checkpoint
and ends with the weights (and the loss log) of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import polars as pl
import torch
import yaml

from e2e_project import stage_command, stage_env
from pipeline.data.labels import LabelSet
from pipeline.encoding.embeddings import write_shards
from pipeline.io import write_parquet

LABELS = LabelSet.from_names(["cat", "dog", "car", "tree"])
N_TEXTS, DIM, EPOCHS = 1600, 64, 4
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the same arithmetic in every run


def train_project(base, name: str):
    project = base / name
    write_parquet(LABELS.to_frame(), project / "artifacts" / "data" / "voc2007" / "labels.parquet")
    rng = np.random.default_rng(0)
    ids = [f"t{i}" for i in range(N_TEXTS)]
    labels = [[LABELS.names[i % 4], LABELS.names[(i // 4) % 4]] for i in range(N_TEXTS)]
    write_parquet(pl.DataFrame({"text_id": ids, "labels": labels}), project / "artifacts" / "texts.parquet")
    write_shards(
        project / "artifacts" / "embeddings" / "text", ids, rng.normal(size=(N_TEXTS, DIM)).astype(np.float32), {}
    )
    (project / "params.yaml").write_text(
        yaml.safe_dump(
            {"train": {"epochs": EPOCHS, "hidden_dim": 256, "device": "cpu", "batch_size": 32, "radius": 1.0}}
        )
    )
    return project


def train(project, **popen) -> subprocess.Popen:
    env = {**stage_env(), **ONE_THREAD, "TAI_CACHE_DIR": str(project / "cache")}  # a checkpoint folder each
    return subprocess.Popen(
        stage_command("train"), cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def checkpoints(project) -> list:
    return list((project / "cache" / "resume" / "train").glob("*.pt"))


def checkpoint_state(project) -> dict | None:
    found = checkpoints(project)
    return torch.load(found[0], map_location="cpu", weights_only=True) if found else None


def test_train_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    whole, killed = train_project(tmp_path, "whole"), train_project(tmp_path, "killed")
    reference = train(whole)

    proc = train(killed)
    deadline = time.monotonic() + 300
    while (state := checkpoint_state(killed)) is None or state["epoch"] < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no second checkpoint within 300 s"
        time.sleep(0.02)
    time.sleep(state["history"][-1]["seconds"] / 4)  # a quarter into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    kept = checkpoint_state(killed)["epoch"]
    assert kept == state["epoch"] < EPOCHS, "killed between epochs, not inside one"
    assert not (killed / "artifacts" / "model").exists()

    rerun = train(killed)
    _, log = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log
    assert f"after epoch {kept} of {EPOCHS}" in log
    assert checkpoint_state(killed)["epoch"] == EPOCHS  # kept: the finished weights
    assert not (killed / "artifacts" / "train").exists()
    assert reference.wait(timeout=300) == 0, reference.communicate()[1]

    a = torch.load(whole / "artifacts" / "model" / "adapter.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "artifacts" / "model" / "adapter.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    columns = ["epoch", "loss", "lr"]
    assert pl.read_csv(whole / "reports" / "train_log.csv")[columns].equals(
        pl.read_csv(killed / "reports" / "train_log.csv")[columns]
    )


def test_a_rerun_that_changes_only_the_bundles_stamp_trains_no_epoch(tmp_path):
    """A zero-shot encode.resize sweep reruns `train` (the bundle records the resize for tai predict), but the
    weights are those of the same texts and train params: the rerun resumes after the last epoch and trains
    none, writing the same weights and loss log with the new resize."""
    project = train_project(tmp_path, "sweep")
    first = train(project)
    assert first.wait(timeout=300) == 0, first.communicate()[1]
    weights = torch.load(project / "artifacts" / "model" / "adapter.pt", weights_only=True)
    log_before = pl.read_csv(project / "reports" / "train_log.csv")
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert weights["resize"] != "center_crop"
    (project / "params.yaml").write_text(yaml.safe_dump({**params, "encode": {"resize": "center_crop"}}))

    rerun = train(project)
    _, log = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log
    assert f"after epoch {EPOCHS} of {EPOCHS}" in log
    restamped = torch.load(project / "artifacts" / "model" / "adapter.pt", weights_only=True)
    assert restamped["resize"] == "center_crop"
    for name, tensor in weights["state_dict"].items():
        torch.testing.assert_close(restamped["state_dict"][name], tensor, rtol=0, atol=0)
    assert pl.read_csv(project / "reports" / "train_log.csv").equals(log_before)
