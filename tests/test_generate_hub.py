"""generate.model as a hub reference (hf:<owner>/<repo>[@<revision>]/<file>.gguf), offline: resolved by
huggingface_hub from a hub cache this test builds in huggingface_hub's own layout, with HF_HUB_OFFLINE=1
set before the process starts, as a user would. The journal knows the model by its file's content."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import yaml

from e2e_project import stage_command, stage_env
from pipeline.data.labels import VOC_LABELS
from pipeline.generate import model_identity, resolve_model
from pipeline.io import write_parquet

REPO = "test-org/tiny-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def add_to_hub_cache(hf_home: Path, repo: str, filename: str, content: Path, commit: str, ref: str = "main") -> Path:
    """huggingface_hub's cache layout: blobs/<sha256>, snapshots/<commit>/<filename> (a relative link to the
    blob) and refs/<ref> holding the commit."""
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    digest = hashlib.sha256(content.read_bytes()).hexdigest()
    blob = folder / "blobs" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        shutil.copyfile(content, blob)
    pointer = folder / "snapshots" / commit / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.unlink(missing_ok=True)
    pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / ref).write_text(commit)
    return pointer


def offline_env(hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in stage_env().items() if not k.startswith("HF_")}
    return {**env, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}


def swapped_copy(source: Path, target: Path) -> Path:
    """A valid GGUF with other bytes than `source`: its general.name metadata spelt differently."""
    data = source.read_bytes()
    assert data.count(b"Smollm2 135M") == 1
    target.write_bytes(data.replace(b"Smollm2 135M", b"Swapped 135M"))
    return target


def test_hub_references_resolve_from_the_cache_offline(tmp_path):
    hf_home = tmp_path / "hf"
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    main = add_to_hub_cache(hf_home, "org/repo", "sub/model-q4.gguf", fake, "a" * 40)
    tagged = add_to_hub_cache(hf_home, "org/repo", "sub/model-q4.gguf", fake, "b" * 40, ref="v1")
    refs = [
        "hf:org/repo/sub/model-q4.gguf",
        "hf:org/repo@v1/sub/model-q4.gguf",
        f"hf:org/repo@{'b' * 40}/sub/model-q4.gguf",
    ]
    code = (
        "import json, sys; from pipeline.generate import resolve_model; "
        "print(json.dumps([str(resolve_model(r)) for r in sys.argv[1:]]))"
    )
    out = subprocess.run([sys.executable, "-c", code, *refs], env=offline_env(hf_home), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [str(main), str(tagged), str(tagged)]
    assert Path(json.loads(out.stdout)[0]).name == "model-q4.gguf"


def test_a_cache_miss_offline_is_one_line_naming_the_reference_and_the_fetch(tmp_path):
    project = make_project(tmp_path / "project", "hf:test-org/absent-GGUF/model.Q4_K_M.gguf")
    out = subprocess.run(
        stage_command("generate"), cwd=project, env=offline_env(tmp_path / "hf"), capture_output=True, text=True
    )
    assert out.returncode == 2, out.stdout + out.stderr
    errors = [line for line in (out.stdout + out.stderr).splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in out.stderr
    assert "generate.model = 'hf:test-org/absent-GGUF/model.Q4_K_M.gguf'" in errors[0]
    assert "HF_HUB_OFFLINE" in errors[0] and "`hf download test-org/absent-GGUF model.Q4_K_M.gguf`" in errors[0]


def make_project(path: Path, model: str, n: int = 3) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_parquet(VOC_LABELS.to_frame(), path / "artifacts" / "data" / "voc2007" / "labels.parquet")
    generate = {"n_combinations": n, "seed": 3, "n_threads": 1, "model": model}
    (path / "params.yaml").write_text(yaml.safe_dump({"prepare": {"dataset": "voc2007"}, "generate": generate}))
    return path


def generate(project: Path, hf_home: Path, model: str) -> str:
    make_project(project, model)
    out = subprocess.run(
        stage_command("generate"), cwd=project, env=offline_env(hf_home), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_the_journal_follows_the_file_content_not_its_name(tmp_path):
    """The embedded GGUF placed in a test-built hub cache: captioned offline through the hub reference;
    the same file moved and renamed resumes every caption; another file behind the same reference does not."""
    hf_home, project = tmp_path / "hf", tmp_path / "project"
    embedded = resolve_model("smollm2")
    add_to_hub_cache(hf_home, REPO, FILE, embedded, "c" * 40)
    reference = f"hf:{REPO}/{FILE}"

    log = generate(project, hf_home, reference)
    assert "0 of 3 LLM combinations resumed" in log
    texts = pl.read_parquet(project / "artifacts" / "texts.parquet")
    assert texts.height > 0 and set(texts["model"]) == {FILE}

    moved = tmp_path / "elsewhere" / "renamed.gguf"
    moved.parent.mkdir()
    shutil.copyfile(embedded, moved)
    assert model_identity(moved) == model_identity(embedded)
    log = generate(project, hf_home, str(moved))
    assert "3 of 3 LLM combinations resumed" in log and "LLM: 0 combinations asked the model" in log
    again = pl.read_parquet(project / "artifacts" / "texts.parquet")
    assert again.drop("model").equals(texts.drop("model")) and set(again["model"]) == {"renamed.gguf"}

    # a new revision of the repository swaps the file behind the same reference: everything is captioned anew
    swapped = swapped_copy(embedded, tmp_path / "swapped.gguf")
    assert model_identity(swapped) != model_identity(embedded)
    add_to_hub_cache(hf_home, REPO, FILE, swapped, "d" * 40)
    log = generate(project, hf_home, reference)
    assert "0 of 3 LLM combinations resumed" in log


def test_a_gguf_without_chat_template_is_warned_about(tmp_path, caplog):
    from pipeline.generate.backends import LlamaCppBackend

    data = resolve_model("smollm2").read_bytes()
    assert data.count(b"tokenizer.chat_template") == 1
    bare = tmp_path / "no-template.gguf"
    bare.write_bytes(data.replace(b"tokenizer.chat_template", b"tokenizer.chat_templatX"))  # the key, unknown
    with caplog.at_level("WARNING", logger="pipeline.generate.backends"):
        LlamaCppBackend(bare, n_ctx=256, n_threads=1, temperature=0.7, max_tokens=8).close()
    assert "no-template.gguf carries no chat template" in caplog.text and "--chat_format" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="pipeline.generate.backends"):
        LlamaCppBackend(resolve_model("smollm2"), n_ctx=256, n_threads=1, temperature=0.7, max_tokens=8).close()
    assert "chat template" not in caplog.text


def test_a_model_file_is_hashed_once_per_version(tmp_path, monkeypatch):
    """The probe's key and the backend's identity both ask for the sha256: one read of a multi-GB file, and a
    rewritten file (same name, same size) is hashed again."""
    import hashlib

    from pipeline.generate import models

    model = tmp_path / "m.gguf"
    model.write_bytes(b"abc")
    first = models.model_identity(model)
    reads = []
    real = hashlib.sha256
    monkeypatch.setattr(models.hashlib, "sha256", lambda *a: reads.append(1) or real(*a))
    assert models.model_identity(model) == first and reads == []
    model.write_bytes(b"abd")
    assert models.model_identity(model) == {"sha256": real(b"abd").hexdigest(), "size": 3} and reads == [1]
