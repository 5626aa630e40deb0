import polars as pl
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig


def test_predict_scores_a_folder_and_skips_bad_images(tmp_path, tiny_clip):
    torch.manual_seed(0)
    adapter = tmp_path / "adapter.pt"
    model = Adapter(AdapterConfig(embed_dim=64, n_labels=3, hidden_dim=16, dropout=0.1))
    with torch.no_grad():
        model.net[-1].bias.copy_(torch.tensor([20.0, -20.0, 0.0]))  # "cat" always, "dog" never
        model.net[-1].weight.zero_()
    AdapterBundle(model, ("cat", "dog", "car"), False, str(tiny_clip), 64).save(adapter)
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for name in ("a.jpg", "b.png", "sub/c.jpg"):
        Image.new("RGB", (40, 30), (120, 30, 200)).save(images / name)
    (images / "broken.jpg").write_bytes(b"nope")
    out = tmp_path / "predictions.parquet"

    before = sorted(p.relative_to(images) for p in images.rglob("*"))
    cache = tmp_path / "user-cache"
    result = CliRunner().invoke(
        app,
        ["predict", str(images), "--adapter", str(adapter), "--out", str(out), "--device", "cpu"],
        env={"TAI_CACHE_DIR": str(cache)},
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(images) for p in images.rglob("*")) == before  # nothing written into the input folder
    assert list(cache.glob("*.arrow"))  # the per-user cache got the embeddings
    assert "broken.jpg" in result.output and "3 image(s) scored" in result.output
    frame = pl.read_parquet(out)
    assert frame.columns == ["path", "predicted", "cat", "dog", "car"]
    assert len(frame) == 3 and frame.schema["predicted"] == pl.List(pl.Utf8)
    assert all(p[0] == "cat" and "dog" not in p for p in frame["predicted"])  # car is at p=0.5, on the threshold
    assert frame["cat"].min() > 0.99 and frame["dog"].max() < 0.01


def test_predict_names_a_missing_adapter(tmp_path):
    result = CliRunner().invoke(app, ["predict", str(tmp_path), "--adapter", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and "none.pt" in result.output


def test_predict_exits_2_for_a_nan_adapter_and_writes_nothing(tmp_path):
    from test_train_faults import save_adapter

    save_adapter(tmp_path / "adapter.pt", poison=True)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "a.jpg")
    out = tmp_path / "predictions.parquet"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "images"),
            "--adapter",
            str(tmp_path / "adapter.pt"),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 2, result.output
    assert "adapter.pt: the adapter's weights hold NaN or infinity" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_predict_compacts_the_shared_cache(tmp_path, tiny_clip):
    import numpy as np

    from pipeline.encoding.embeddings import EmbeddingCache

    cache = tmp_path / "user-cache"
    for i in range(12):  # twelve earlier runs' chunks
        EmbeddingCache(cache).put([f"earlier-{i}"], np.full((1, 64), i, np.float32))
    torch.manual_seed(0)
    AdapterBundle(Adapter(AdapterConfig(64, 2, 8, 0.0)), ("cat", "dog"), False, str(tiny_clip), 64).save(
        tmp_path / "a.pt"
    )
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "a.jpg")
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(tmp_path / "images"),
            "--adapter",
            str(tmp_path / "a.pt"),
            "--out",
            str(tmp_path / "p.parquet"),
            "--device",
            "cpu",
        ],
        env={"TAI_CACHE_DIR": str(cache)},
    )
    assert result.exit_code == 0, result.output
    assert len(list(cache.glob("*.arrow"))) == 1 and len(EmbeddingCache(cache)) == 13
