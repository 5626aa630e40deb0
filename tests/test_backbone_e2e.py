"""An open_clip backbone through `dvc repro` end to end, then `tai export` and predictions from the
export: a tiny registered ViT (conftest), loaded by name as a hub model is. Plumbing, never accuracy."""

import json

import numpy as np
import polars as pl
import pyarrow.ipc
import pytest
from PIL import Image
from typer.testing import CliRunner

from e2e_project import make_project, run, stages_run
from pipeline.cli import app
from pipeline.method.adapter import AdapterBundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_open_clip):
    project = make_project(tmp_path_factory.mktemp("backbone"), tiny_open_clip, **{"encode.model": tiny_open_clip})
    result = run(project, "dvc", "repro")
    assert {"encode_text", "encode_eval_images", "zeroshot", "train", "evaluate"} <= stages_run(result.stdout)
    return project


def test_the_pipeline_runs_on_an_open_clip_backbone(project):
    shards = project / "artifacts" / "embeddings"
    identities = {
        pyarrow.ipc.open_file(next(folder.glob("*.arrow"))).schema.metadata[b"model_identity"].decode()
        for folder in (shards / "text", shards / "eval" / "test-64")
    }
    assert len(identities) == 1 and identities.pop().startswith("open_clip:tai-tiny-vit/file:")
    bundle = AdapterBundle.load(project / "artifacts" / "model" / "adapter.pt")
    assert bundle.clip_identity.startswith("open_clip:tai-tiny-vit/file:") and bundle.model.config.embed_dim == 32
    for stage in ("zeroshot", "eval"):  # the backbone's own zero-shot baseline, and the adapter on its embeddings
        metrics = json.loads((project / "reports" / f"{stage}.json").read_text())
        assert 0 <= metrics["map"] <= 1 and metrics["n_images"] == 12


def test_an_export_predicts_what_the_workspace_predicts(project, monkeypatch, tmp_path):
    import onnxruntime
    import torch

    from pipeline import load_classifier

    monkeypatch.chdir(project)
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(tmp_path / "classifier"), "--onnx"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "classifier"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.onnx", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["labels"] == ["cat", "dog", "car", "tree"] and config["synonyms"]["cat"] == ["cats", "kitten"]
    assert (
        config["clip"]["identity"] == AdapterBundle.load(project / "artifacts" / "model" / "adapter.pt").clip_identity
    )

    card = (folder / "README.md").read_text()
    eval_map = json.loads((project / "reports" / "eval.json").read_text())["map"]
    generate = json.loads((project / "reports" / "generate.json").read_text())
    assert f"| this classifier | mAP | {eval_map:.4f} |" in card
    assert f"{generate['n_texts']} texts for {generate['n_combinations']} combinations" in card
    assert "zero-shot: texts only" in card and "| 0 | cat | cats, kitten | 0.5 |" in card

    images = project / "data" / "images"
    outputs = {}
    for name, source in (("workspace", []), ("export", ["--model", str(folder)])):
        outputs[name] = tmp_path / f"{name}.parquet"
        result = runner.invoke(
            app,
            ["predict", str(images), *source, "--device", "cpu", "--top-k", "2", "--out", str(outputs[name])],
            env={"TAI_CACHE_DIR": str(tmp_path / f"cache-{name}")},
        )
        assert result.exit_code == 0, result.output
    workspace, export = pl.read_parquet(outputs["workspace"]), pl.read_parquet(outputs["export"])
    assert len(workspace) == 28 and workspace.equals(export)

    classifier = load_classifier(folder, device="cpu")
    paths = sorted(images.glob("test_0*.jpg"))[:4]
    pixels = torch.stack([classifier.transform(Image.open(p)) for p in paths])
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"pixels": pixels.numpy()})[0], classifier.scores(pixels), atol=1e-4)
    rows = workspace.filter(pl.col("path").is_in([str(p) for p in paths])).sort("path")
    np.testing.assert_allclose(rows.select(classifier.labels).to_numpy(), classifier.scores(pixels), atol=1e-5)
