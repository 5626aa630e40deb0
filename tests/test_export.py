"""`tai export`: a folder of safetensors + config.json + model card (+ ONNX) that loads without pickle and
predicts what the workspace's adapter predicts; `tai predict --model/--top-k/--thresholds`."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.encoding.load import load_clip
from pipeline.encoding.openai_clip import ClipEncoder
from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig, AdapterError
from pipeline.shipping.classifier import (
    Classifier,
    ClassifierError,
    load_classifier,
    read_thresholds,
    select_labels,
    threshold_vector,
)
from pipeline.shipping.export import export_config, write_export
from pipeline.shipping.export_format import ExportError, read_export

LABELS = ("cat", "dog", "car")


def bundle_for(encoder: ClipEncoder, clip_model: str, normalize: bool = False, seed: int = 0) -> AdapterBundle:
    torch.manual_seed(seed)
    model = Adapter(AdapterConfig(embed_dim=encoder.embed_dim, n_labels=3, hidden_dim=16, dropout=0.1)).eval()
    return AdapterBundle(model, LABELS, normalize, clip_model, 64, "square", encoder.identity)


def export_of(tmp_path, clip_model: str, onnx: bool = False, thresholds=None, normalize=False, name="export"):
    encoder = load_clip(clip_model, "cpu")
    classifier = Classifier(bundle_for(encoder, clip_model, normalize), encoder, threshold_vector(LABELS, 0.5))
    config = export_config(classifier.bundle, encoder, {"cat": ["kitten"]}, thresholds or {})
    return write_export(tmp_path / name, classifier, config, "# card\n", onnx), classifier


def images(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return folder


def no_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load called: an export must load without pickle")

    monkeypatch.setattr(torch, "load", refuse)


def test_an_export_describes_itself_and_loads_without_pickle(tmp_path, tiny_clip, monkeypatch):
    folder, classifier = export_of(tmp_path, str(tiny_clip), thresholds={"dog": 0.3})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["labels"] == list(LABELS) and config["synonyms"] == {"cat": ["kitten"], "dog": [], "car": []}
    assert config["thresholds"] == {"cat": 0.5, "dog": 0.3, "car": 0.5}
    assert config["clip"]["identity"].startswith("file:") and config["clip"]["image_resolution"] == 64
    assert config["clip"]["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert config["adapter"] == {
        **config["adapter"],
        "embed_dim": 64,
        "hidden_dim": 16,
        "n_labels": 3,
        "normalize_input": False,
    }
    assert config["project_version"] and config["onnx"] is None
    with monkeypatch.context() as patch:
        no_pickle(patch)
        bundle, thresholds = read_export(folder)
    assert bundle.labels == LABELS and thresholds == {"cat": 0.5, "dog": 0.3, "car": 0.5}
    for name, weight in classifier.bundle.model.state_dict().items():
        torch.testing.assert_close(bundle.model.state_dict()[name], weight, rtol=0, atol=0)
    loaded = load_classifier(folder, device="cpu")
    assert loaded.thresholds.tolist() == [0.5, 0.3, 0.5]
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(loaded.scores(pixels), classifier.scores(pixels))


def test_an_open_clip_classifier_with_safetensors_weights_needs_no_pickle_at_all(tmp_path, monkeypatch):
    import open_clip
    from safetensors.torch import save_file

    from pipeline.encoding.open_clip_backbones import register_configs

    register_configs()
    torch.manual_seed(0)
    save_file(open_clip.create_model("tai-tiny-vit").state_dict(), str(tmp_path / "clip.safetensors"))
    folder, classifier = export_of(tmp_path, f"open_clip:tai-tiny-vit/{tmp_path / 'clip.safetensors'}")
    pictures = images(tmp_path / "images", n=2)
    expected = classifier.scores(torch.stack([classifier.transform(Image.open(p)) for p in sorted(pictures.glob("*"))]))
    no_pickle(monkeypatch)
    loaded = load_classifier(folder, device="cpu")
    pixels = torch.stack([loaded.transform(Image.open(p)) for p in sorted(pictures.glob("*"))])
    np.testing.assert_array_equal(loaded.scores(pixels), expected)
    assert len(loaded.predict(sorted(pictures.glob("*")))) == 2


def test_a_workspace_bundle_and_its_export_predict_the_same(tmp_path, tiny_clip):
    folder, classifier = export_of(tmp_path, str(tiny_clip))
    classifier.bundle.save(tmp_path / "adapter.pt")
    pictures = images(tmp_path / "images")
    runner = CliRunner()
    out = {}
    for name, source in (("bundle", ["--adapter", str(tmp_path / "adapter.pt")]), ("export", ["--model", str(folder)])):
        out[name] = tmp_path / f"{name}.parquet"
        result = runner.invoke(
            app,
            ["predict", str(pictures), *source, "--device", "cpu", "--out", str(out[name])],
            env={"TAI_CACHE_DIR": str(tmp_path / f"cache-{name}")},
        )  # each encodes the images
        assert result.exit_code == 0, result.output
    bundle, export = pl.read_parquet(out["bundle"]), pl.read_parquet(out["export"])
    assert bundle.columns == ["path", "predicted", *LABELS] and len(bundle) == 4
    assert bundle.equals(export)
    api = load_classifier(folder, device="cpu").predict(sorted(pictures.glob("*.jpg")))
    assert api == export["predicted"].to_list()


def test_top_k_and_per_label_thresholds_choose_the_labels():
    probabilities = np.array([[0.9, 0.6, 0.2], [0.1, 0.4, 0.45]])
    assert select_labels(probabilities, LABELS, threshold_vector(LABELS, 0.5)) == [["cat", "dog"], []]
    assert select_labels(probabilities, LABELS, threshold_vector(LABELS, 0.5), top_k=1) == [["cat"], []]
    assert select_labels(probabilities, LABELS, threshold_vector(LABELS, 0.0), top_k=2) == [
        ["cat", "dog"],
        ["car", "dog"],
    ]
    per_label = threshold_vector(LABELS, 0.5, {"car": 0.15, "cat": 0.95})
    assert select_labels(probabilities, LABELS, per_label) == [["dog", "car"], ["car"]]


def test_threshold_files_are_read_and_checked(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps({"dog": 0.25}))
    (tmp_path / "t.csv").write_text("label,threshold\ncar,0.7\ncat,0.1\n")
    assert read_thresholds(tmp_path / "t.json", LABELS) == {"dog": 0.25}
    assert read_thresholds(tmp_path / "t.csv", LABELS) == {"car": 0.7, "cat": 0.1}
    (tmp_path / "bad.json").write_text(json.dumps({"horse": 0.5}))
    with pytest.raises(ClassifierError, match=r"unknown label\(s\) \['horse'\]"):
        read_thresholds(tmp_path / "bad.json", LABELS)
    (tmp_path / "range.json").write_text(json.dumps({"cat": 1.5}))
    with pytest.raises(ClassifierError, match=r"\[0, 1\]"):
        read_thresholds(tmp_path / "range.json", LABELS)
    (tmp_path / "broken.csv").write_text("name,value\ncat,0.5\n")
    with pytest.raises(ClassifierError, match="columns label,threshold"):
        read_thresholds(tmp_path / "broken.csv", LABELS)


def test_predict_cli_takes_top_k_and_a_thresholds_file(tmp_path, tiny_clip):
    folder, _ = export_of(tmp_path, str(tiny_clip))
    pictures = images(tmp_path / "images", n=2)
    runner = CliRunner()
    args = ["predict", str(pictures), "--model", str(folder), "--device", "cpu"]
    result = runner.invoke(app, [*args, "--threshold", "0", "--top-k", "2", "--out", str(tmp_path / "top.parquet")])
    assert result.exit_code == 0, result.output
    top = pl.read_parquet(tmp_path / "top.parquet")
    for row in top.iter_rows(named=True):
        expected = sorted(LABELS, key=lambda name: -row[name])[:2]
        assert row["predicted"] == expected
    (tmp_path / "t.json").write_text(json.dumps({name: 0.0 for name in LABELS[:1]} | {"dog": 1.0, "car": 1.0}))
    result = runner.invoke(app, [*args, "--thresholds", str(tmp_path / "t.json"), "--out", str(tmp_path / "t.parquet")])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(tmp_path / "t.parquet")["predicted"].to_list() == [["cat"], ["cat"]]
    (tmp_path / "bad.json").write_text(json.dumps({"horse": 0.5}))
    result = runner.invoke(app, [*args, "--thresholds", str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "horse" in result.output


def test_the_onnx_graph_equals_torch_on_the_tiny_clip(tmp_path, tiny_clip):
    import onnxruntime

    folder, classifier = export_of(tmp_path, str(tiny_clip), onnx=True, normalize=True)
    config = json.loads((folder / "config.json").read_text())
    assert (
        config["onnx"]["input"]["shape"] == ["batch", 3, 64, 64]
        and config["onnx"]["checked_max_abs_difference"] <= 1e-4
    )
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    pixels = torch.randn(5, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # another batch size than exported
    (probabilities,) = session.run(["probabilities"], {"pixels": pixels.numpy()})
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities, classifier.scores(pixels), atol=1e-4)


def test_the_onnx_graph_equals_torch_on_a_tiny_open_clip(tmp_path, tiny_open_clip):
    import onnxruntime

    folder, classifier = export_of(tmp_path, tiny_open_clip, onnx=True)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    pixels = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(session.run(None, {"pixels": pixels.numpy()})[0], classifier.scores(pixels), atol=1e-4)


def test_export_never_replaces_a_folder_of_other_files(tmp_path, tiny_clip):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ExportError, match="not an export of this project"):
        export_of(tmp_path, str(tiny_clip))
    assert (tmp_path / "export" / "holiday.jpg").read_bytes() == b"precious"
    folder, _ = export_of(tmp_path, str(tiny_clip), name="again")
    export_of(tmp_path, str(tiny_clip), name="again")  # an earlier export is replaced
    assert (folder / "model.safetensors").is_file()


def test_a_damaged_export_is_one_clear_error(tmp_path, tiny_clip):
    from safetensors.torch import load_file, save_file

    folder, _ = export_of(tmp_path, str(tiny_clip))
    weights = load_file(str(folder / "model.safetensors"))
    weights["net.0.weight"][0, 0] = float("nan")
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(AdapterError, match="NaN or infinity"):
        read_export(folder)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ExportError, match="not the adapter config.json describes"):
        read_export(folder)
    (folder / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ExportError, match="not a classifier exported by `tai export`"):
        read_export(folder)


def test_a_moved_clip_checkpoint_is_found_by_identity_and_a_changed_one_refused(tmp_path, tiny_clip):
    import shutil

    from pipeline.testbeds.random_clip import save_random_clip

    moved = shutil.copy(tiny_clip, tmp_path / "clip-at-training.pt")
    folder, _ = export_of(tmp_path, str(moved))
    (tmp_path / "clip-at-training.pt").unlink()  # another machine: the training path is gone
    with pytest.raises(
        ClassifierError,
        match=r"if this classifier's CLIP \(file:\w+\) is elsewhere on this machine, point --clip-model",
    ):
        load_classifier(folder, device="cpu")
    assert load_classifier(folder, device="cpu", clip_model=str(tiny_clip)).labels == LABELS  # same bytes elsewhere
    other = save_random_clip(tmp_path / "other.pt", "tiny", seed=1)
    with pytest.raises(ClassifierError, match="but the adapter was trained on file:"):
        load_classifier(folder, device="cpu", clip_model=str(other))


def test_export_from_a_workspace_writes_the_card_and_refuses_stale_params(tmp_path, tiny_clip, monkeypatch):
    import yaml

    from conftest import ROOT
    from pipeline.data.labels import LabelSet
    from pipeline.shipping.export import export_workspace

    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["prepare"].update(dataset="labels", root="data", splits=["test"], label_names="labels.txt")
    params["encode"]["model"] = str(tiny_clip)
    (tmp_path / "labels.txt").write_text("cat\ndog\ncar\n")
    Path("params.yaml").write_text(yaml.safe_dump(params))
    labels = LabelSet.from_names(LABELS, {"cat": ["kitten"]})
    Path("artifacts/data/labels").mkdir(parents=True)
    labels.to_frame().write_parquet("artifacts/data/labels/labels.parquet")
    encoder = load_clip(str(tiny_clip), "cpu")
    bundle_for(encoder, str(tiny_clip)).save("adapter.pt")

    folder = export_workspace("out", "adapter.pt", thresholds_file=None)
    card = (folder / "README.md").read_text()
    assert "No evaluation was recorded" in card and "not recorded (no `reports/generate.json`)" in card
    assert "| 0 | cat | kitten | 0.5 |" in card and "zero-shot: texts only" in card

    # thresholds train chose on held-out labelled images travel with the adapter into the export, by default
    import dataclasses
    import json

    dataclasses.replace(
        bundle_for(encoder, str(tiny_clip)), thresholds=(0.2, 0.5, 0.7), threshold_source="8 few-shot support images"
    ).save("adapter.pt")
    chosen = export_workspace("out-chosen", "adapter.pt")
    config = json.loads((chosen / "config.json").read_text())
    assert config["thresholds"] == {"cat": 0.2, "dog": 0.5, "car": 0.7}
    assert config["threshold_source"] == "8 few-shot support images"
    assert "| 0 | cat | kitten | 0.2 |" in (chosen / "README.md").read_text()
    assert load_classifier(chosen, device="cpu").thresholds.tolist() == [0.2, 0.5, 0.7]

    params["train"]["normalize"] = True
    Path("params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        ExportError, match=r"train.normalize is True in params.yaml but False in the adapter: run `dvc repro`"
    ):
        export_workspace("out2", "adapter.pt")
    assert not Path("out2").exists()


def test_predict_cli_applies_the_per_label_thresholds_the_export_recorded(tmp_path, tiny_clip):
    """`tai predict --model <export>` with no threshold flag: each label's recorded threshold, not 0.5 for all."""
    recorded = {"cat": 0.0, "dog": 1.0, "car": 1.0}
    folder, _ = export_of(tmp_path, str(tiny_clip), thresholds=recorded)
    out = tmp_path / "predicted.parquet"
    result = CliRunner().invoke(
        app, ["predict", str(images(tmp_path / "images")), "--model", str(folder), "--device", "cpu", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(out)
    assert table["predicted"].to_list() == [["cat"]] * table.height
    at_half = [[name for name in LABELS if row[name] >= 0.5] for row in table.iter_rows(named=True)]
    assert at_half != [["cat"]] * table.height  # 0.5 everywhere would predict otherwise: the test tells them apart
