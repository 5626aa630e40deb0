"""`tai gallery`: one self-contained HTML page, tested in headless Chromium (tests/browser.py): filtering to a
label shows only images predicted with it, paging shows the rest, an evaluated split marks false positives
and negatives, and the page makes no network request."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from pipeline.shipping.gallery import PAGE_SIZE, GalleryData, from_evaluation, render, write_gallery
from pipeline.testbeds.headless_browser import dump_dom, find_chromium, screenshot

LABELS = ("cat", "dog", "car")
COLOURS = {"cat": (220, 40, 40), "dog": (40, 200, 40), "car": (40, 40, 220)}


def make_world(folder: Path, n: int, seed: int = 0) -> GalleryData:
    """n images whose coloured stripes are their true labels; probabilities that get most right, and the
    "dog" threshold at 0.3 (so a dog at 0.35 is predicted, a cat at 0.45 is not)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files, truth = [], np.zeros((n, len(LABELS)), dtype=np.int8)
    for i in range(n):
        truth[i] = rng.random(len(LABELS)) < 0.45
        pixels = np.full((90, 120, 3), 30, dtype=np.uint8)
        for j, name in enumerate(LABELS):
            if truth[i, j]:
                pixels[10 + j * 25 : 30 + j * 25] = COLOURS[name]
        files.append(folder / f"img_{i:04d}.jpg")
        Image.fromarray(pixels).save(files[-1])
    probabilities = np.clip(truth * 0.6 + rng.random(truth.shape) * 0.45, 0, 1)
    truth[0, 0], probabilities[0, 0] = 1, 0.4996  # a true label just below 0.5: a false negative, shown below 0.5
    return GalleryData(
        [f.name for f in files],
        files,
        LABELS,
        probabilities,
        np.array([0.5, 0.3, 0.5]),
        "test thresholds",
        truth.astype(np.int8),
        "a test split",
    )


class Cards(HTMLParser):
    """The gallery's cards as the browser left them: data-* attributes and chip classes per card."""

    def __init__(self):
        super().__init__()
        self.cards, self.body = [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "div" and attrs.get("class") == "card":
            self.cards.append(
                {
                    "name": attrs["data-name"],
                    "predicted": set(filter(None, attrs["data-predicted"].split("|"))),
                    "truth": set(filter(None, (attrs.get("data-truth") or "").split("|"))),
                    "chips": [],
                }
            )
        if tag == "span" and (attrs.get("class") or "").startswith("chip") and self.cards:
            self.cards[-1]["chips"].append(attrs["class"].split()[-1])
            self.in_chip = True
        if tag == "img" and self.cards:
            self.cards[-1]["img"] = attrs.get("src", "")

    def handle_data(self, data):
        if getattr(self, "in_chip", False):
            self.cards[-1].setdefault("texts", []).append(data)
            self.in_chip = False


def cards(dom: str) -> Cards:
    parser = Cards()
    parser.feed(dom)
    return parser


def predicted_with(data: GalleryData, label: str) -> list[str]:
    c = data.labels.index(label)
    return [name for name, row in zip(data.names, data.probabilities) if row[c] >= data.thresholds[c]]


def test_the_page_is_self_contained(tmp_path):
    data = make_world(tmp_path / "images", 12)
    page = render(data)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"https?://", page)  # nothing to fetch, anywhere in the page
    assert page.count('"t":"/9j/') == 12  # every thumbnail embedded as a base64 JPEG
    assert len(page) < 12 * 6000  # downscaled: a few kB per image


def test_evaluation_split_joins_paths_and_truth(tmp_path):
    data = make_world(tmp_path / "images", 4)
    scores = pl.DataFrame({"image_id": ["b", "a"], "cat": [0.9, 0.1], "dog": [0.2, 0.8], "car": [0.6, 0.4]})
    scores.write_parquet(tmp_path / "scores.parquet")
    manifest = pl.DataFrame(
        {
            "image_id": ["a", "b"],
            "path": [str(data.files[0]), "images/" + data.files[1].name],
            "labels": [["dog"], ["cat", "dog"]],
        }
    )
    joined = from_evaluation(tmp_path / "scores.parquet", manifest, LABELS, np.full(3, 0.5), "none", root=tmp_path)
    assert joined.names == ["b", "a"] and joined.files == [tmp_path / "images" / data.files[1].name, data.files[0]]
    assert joined.truth.tolist() == [[1, 1, 0], [0, 1, 0]]
    assert joined.probabilities[0].tolist() == [0.9, 0.2, 0.6]


def test_the_gallery_command_uses_the_models_thresholds(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig

    data = make_world(tmp_path / "images", 5)
    table = pl.DataFrame(
        {
            "path": [str(f) for f in data.files],
            "predicted": [[]] * 5,
            **{name: data.probabilities[:, i] for i, name in enumerate(LABELS)},
        }
    )
    table.write_parquet(tmp_path / "predictions.parquet")
    model = Adapter(AdapterConfig(embed_dim=8, n_labels=3, hidden_dim=4, dropout=0.0))
    AdapterBundle(
        model, LABELS, False, "RN50", 64, thresholds=(0.5, 0.3, 0.5), threshold_source="held-out support images"
    ).save(tmp_path / "adapter.pt")
    out = tmp_path / "g.html"
    result = CliRunner().invoke(
        app,
        ["gallery", str(tmp_path / "predictions.parquet"), "--model", str(tmp_path / "adapter.pt"), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert '"thresholds":[0.5,0.3,0.5]' in page and "held-out support images" in page
    dog = [i for i in range(5) if data.probabilities[i, 1] >= 0.3]
    assert page.count('"p":[') == 5 and all(f'"n":"{data.names[i]}"' in page for i in dog)

    result = CliRunner().invoke(app, ["gallery", str(tmp_path / "nope.parquet"), "--out", str(out)])
    assert result.exit_code == 2 and "nope.parquet" in result.output


@pytest.fixture(scope="module")
def chromium():
    if find_chromium() is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/browser installs it)")


def test_filtering_paging_and_errors_in_headless_chromium(tmp_path, chromium):
    data = make_world(tmp_path / "images", 2 * PAGE_SIZE + 30)
    page = write_gallery(data, tmp_path / "gallery.html")
    url = page.resolve().as_uri()

    dom, requests = dump_dom(url + "#label=dog&sort=confidence&page=1")
    shown = cards(dom)
    dogs = predicted_with(data, "dog")
    assert len(dogs) > PAGE_SIZE  # the filter's result spans pages
    assert shown.body["data-shown"] == str(len(dogs))
    assert len(shown.cards) == PAGE_SIZE and all("dog" in c["predicted"] for c in shown.cards)
    assert all(c["img"].startswith("data:image/jpeg;base64,") for c in shown.cards)
    assert requests == []  # the page asked the network for nothing

    dom, _ = dump_dom(url + "#label=dog&page=2")
    second = cards(dom)
    assert {c["name"] for c in second.cards} == set(dogs) - {c["name"] for c in shown.cards}

    dom, _ = dump_dom(url + "#sort=error")
    ranked = cards(dom).cards
    errors = [sum(k in ("fp", "fn") for k in c["chips"]) for c in ranked]
    assert errors == sorted(errors, reverse=True) and errors[0] > 0
    by_name = cards(dump_dom(url + "#sort=name")[0]).cards
    assert by_name[0]["name"] == "img_0000.jpg" and "cat 0.49" in by_name[0]["texts"]
    thresholds = dict(zip(LABELS, data.thresholds))
    for c in ranked + by_name:  # FP: predicted, not true; FN: true, not predicted
        assert c["chips"].count("fp") == len(c["predicted"] - c["truth"])
        assert c["chips"].count("fn") == len(c["truth"] - c["predicted"])
        for kind, text in zip(c["chips"], c["texts"]):  # a shown probability is on its side of the threshold
            label, value = text.rsplit(" ", 1)
            if kind in ("tp", "fp"):
                assert float(value) >= thresholds[label], text
            elif kind == "fn":
                assert float(value) < thresholds[label], text

    shot = tmp_path / "gallery.png"
    assert screenshot(url + "#label=dog", shot) == []
    with Image.open(shot) as image:
        assert image.size == (1280, 900)
        colours = image.convert("RGB").getcolors(1 << 20)
    assert len(colours) > 50  # thumbnails and text drawn, not a blank page
