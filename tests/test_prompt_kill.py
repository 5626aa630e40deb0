"""SIGKILL a prompt method's training mid-way (the fit loop every peer trains with), rerun it, and compare
with an uninterrupted run: it resumes after the last finished epoch and ends with the same context."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import torch

from e2e_project import kill_when, stage_env
from pipeline.io import read_checkpoint

EPOCHS = 400
SCRIPT = """
import sys
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
from prompt_world import NAMES, PromptWorld, tiny_clip_model
from pipeline.prompt.coop import CoOp, train_coop

def run(checkpoint, epochs):
    torch.set_num_threads(1)
    _, images, targets = PromptWorld(0).images(64)
    model = CoOp(tiny_clip_model(), NAMES, 4, class_specific=True, generator=torch.Generator().manual_seed(0))
    history = train_coop(model, images, targets, epochs=epochs, lr=0.5, batch_size=16, checkpoint=checkpoint,
                         fingerprint="world-0")
    return model.prompts.context.ctx.detach(), history

if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]))
"""


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "train_coop.py"
    path.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    return path


def _epochs_done(checkpoint: Path) -> int:
    state = read_checkpoint(checkpoint) if checkpoint.is_file() else None
    return state["epoch"] if state else 0


def test_a_killed_prompt_training_resumes_to_the_uninterrupted_result(tmp_path, caplog):
    script, checkpoint = _script(tmp_path), tmp_path / "checkpoint.pt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(checkpoint), str(EPOCHS)],
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    finished = kill_when(proc, lambda: _epochs_done(checkpoint), at_least=3, timeout=120)
    assert 3 <= finished < EPOCHS

    sys.path.insert(0, str(tmp_path))
    try:
        from train_coop import run
    finally:
        sys.path.remove(str(tmp_path))
    with caplog.at_level(logging.INFO, "pipeline.prompt.fit"):
        resumed, history = run(checkpoint, EPOCHS)
    assert f"after epoch {finished} of {EPOCHS}" in caplog.text
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))
    whole, whole_history = run(tmp_path / "fresh.pt", EPOCHS)
    torch.testing.assert_close(resumed, whole, rtol=0, atol=0)
    assert [row["loss"] for row in history] == [row["loss"] for row in whole_history]

    caplog.clear()
    with caplog.at_level(logging.INFO, "pipeline.prompt.fit"):  # another fingerprint: never resumed
        from pipeline.prompt.coop import CoOp, train_coop
        from prompt_world import NAMES, PromptWorld, tiny_clip_model

        _, images, targets = PromptWorld(0).images(64)
        model = CoOp(tiny_clip_model(), NAMES, 4, class_specific=True, generator=torch.Generator().manual_seed(0))
        train_coop(model, images, targets, epochs=2, lr=0.5, batch_size=16, checkpoint=checkpoint, fingerprint="other")
    assert "belongs to other data or params" in caplog.text
