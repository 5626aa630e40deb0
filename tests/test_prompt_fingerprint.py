"""The prompt stage's checkpoint fingerprint (`pipeline.prompt.train_and_score._fingerprint`): it changes with every
input it promises to follow (the method's params, the resolved values, the labels, the CLIP, each input file),
and `python -m stages.prompt` resumes its own checkpoint but ignores one of other params. Without it, a
stale `artifacts/prompt/checkpoint.pt` would be resumed after a change and the peer columns would be wrong."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from pipeline.config import load_params
from pipeline.data.labels import LabelSet
from small_project import change_params, in_project, run_stages, small_project, stage

COOP = {"prompt.method": "coop", "fewshot.shots": 2, "prompt.epochs": 2, "prompt.n_ctx": 4, "prompt.batch_size": 8}


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_clip):
    project = small_project(tmp_path_factory.mktemp("prompt-fingerprint"), str(tiny_clip), **COOP)
    run_stages(project, "prepare", "fewshot", "encode_images support", "encode_images eval")
    return project


def test_the_fingerprint_follows_every_input(project):
    from pipeline.prompt.train_and_score import TRAINING_INPUTS, _fingerprint
    from pipeline.prompt.values import resolved

    with in_project(project):
        params = load_params()
        labels = LabelSet.from_names(["cat", "dog", "car", "tree"])
        hp = resolved(params.prompt.method, params)
        base = _fingerprint(params, labels, hp, "clip-a")
        assert _fingerprint(params, labels, hp, "clip-a") == base  # stable
        other_lr = dataclasses.replace(params, prompt=dataclasses.replace(params.prompt, lr=0.123))
        changed = {
            "prompt params": _fingerprint(other_lr, labels, hp, "clip-a"),
            "resolved values": _fingerprint(params, labels, {**hp, "epochs": hp["epochs"] + 1}, "clip-a"),
            "labels": _fingerprint(params, LabelSet.from_names(["cat", "dog", "car"]), hp, "clip-a"),
            "clip": _fingerprint(params, labels, hp, "clip-b"),
        }
        files = [
            next(f for f in sorted(Path(root).rglob("*")) if f.is_file()) if Path(root).is_dir() else Path(root)
            for root in TRAINING_INPUTS
            if Path(root).exists()
        ]
        assert len(files) >= 4, files  # prepared data, support list, support and eval embeddings
        for file in files:
            stat = file.stat()
            os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
            changed[str(file)] = _fingerprint(params, labels, hp, "clip-a")
            os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert _fingerprint(params, labels, hp, "clip-a") == base
    unchanged = [what for what, fingerprint in changed.items() if fingerprint == base]
    assert not unchanged, f"the fingerprint ignores {unchanged}"


def test_the_stage_ignores_a_stale_checkpoint_and_resumes_its_own(project, caplog, monkeypatch):
    """Checkpoints live in the per-user cache under the stage's fingerprint: a prompt.lr change gives another
    file, and a checkpoint of other params found at that name (moved there) is refused by the fingerprint it
    holds, as dvc runs the stage; put back under its own name, the same params resume from it. The first runs
    are in-process (cheaper), with each checkpoint copied as it is written, since the stage removes it at the end."""
    import logging

    import pipeline.prompt.fit as fit

    written: dict[Path, bytes] = {}
    real = fit.write_torch

    def keep(obj, path, *args, **kwargs):
        out = real(obj, path, *args, **kwargs)
        written[Path(path)] = Path(path).read_bytes()
        return out

    monkeypatch.setattr(fit, "write_torch", keep)
    run_stages(project, "prompt")
    ((own, checkpoint),) = written.items()
    assert not own.exists()  # removed once the outputs were written
    written.clear()
    change_params(project, **{"prompt.lr": 0.0123})
    run_stages(project, "prompt")
    ((other, _),) = written.items()
    assert other != own  # the stage's fingerprint follows prompt.lr
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(checkpoint)  # the first params' checkpoint under the second's name
    stale = stage(project, "prompt")
    assert stale.returncode == 0, stale.stderr[-3000:]
    assert "belongs to other data or params" in stale.stderr and "resuming" not in stale.stderr, stale.stderr[-3000:]
    own.write_bytes(checkpoint)
    change_params(project, **{"prompt.lr": None})
    with caplog.at_level(logging.INFO, "pipeline.prompt.fit"):
        run_stages(project, "prompt")
    assert "after epoch 2 of 2" in caplog.text and "belongs to other" not in caplog.text
