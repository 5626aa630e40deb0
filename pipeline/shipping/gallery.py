"""`tai gallery`: one self-contained HTML page to look at predictions, opened from disk with no server and no
network (a Content-Security-Policy forbids every request; images are data: URIs).

It shows each image as a small thumbnail (downscaled JPEG, base64 in the page), the labels predicted with their
probabilities and the threshold used per label; on an evaluated split also the ground truth, with false
positives and false negatives marked. The page filters by label (images *predicted* with it), sorts by
confidence or by error count, and pages through the set: the thumbnails stay strings in one JSON block and only
the visible page's <img> elements are created, so a 5,000-image page opens as fast as a 60-image one.
State lives in the URL fragment (`#label=dog&sort=error&page=2`), so a view can be bookmarked, and a test
drives the page with no clicks.

Sources: a `tai predict --out X.parquet` table (`path`, `predicted`, one probability column per label), or the
workspace's evaluation split (artifacts/eval/scores.parquet joined with prepare's manifest for the paths and the
ground truth). Thresholds: the model's own (chosen on held-out labelled images by train, or 0.5), or one
`--threshold` for every label; the page recomputes nothing, it shows what Python computed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.errors import UserError
from pipeline.evaluation.thresholds import DEFAULT_THRESHOLD
from pipeline.io import write_text

log = logging.getLogger(__name__)

THUMBNAIL_PX = 112  # longest side of a thumbnail
THUMBNAIL_QUALITY = 70  # JPEG quality of a thumbnail
PAGE_SIZE = 60  # cards per page


class GalleryError(UserError, ValueError):
    """A predictions table or workspace that a gallery cannot be made from."""


@dataclass
class GalleryData:
    """What the page shows: per image a name, its file, probabilities (images x labels), truth (or None)."""

    names: list[str]
    files: list[Path]
    labels: tuple[str, ...]
    probabilities: np.ndarray
    thresholds: np.ndarray
    threshold_source: str
    truth: np.ndarray | None = None  # 0/1 (images x labels) on an evaluated split
    title: str = "predictions"


def thumbnail(path: Path) -> str | None:
    """Base64 JPEG of the image downscaled to THUMBNAIL_PX on its longest side; None when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))  # JPEG: decode at a fraction of full size
            small = image.convert("RGB")
            small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        log.warning("%s: no thumbnail (%s)", path, e)
        return None
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def from_predictions(
    table: Path, labels: tuple[str, ...] | None, thresholds: np.ndarray | None, threshold_source: str
) -> GalleryData:
    """A `tai predict` table (Parquet or CSV): its label columns are the labels after `predicted`."""
    if not table.is_file():
        raise GalleryError(f"{table}: no predictions table there; write one with `tai predict FOLDER --out {table}`")
    frame = pl.read_csv(table) if table.suffix.lower() == ".csv" else pl.read_parquet(table)
    if "path" not in frame.columns or "predicted" not in frame.columns:
        raise GalleryError(f"{table}: not a `tai predict` table (it needs columns path, predicted and one per label)")
    columns = tuple(c for c in frame.columns if c not in ("path", "predicted"))
    if labels is not None and set(labels) != set(columns):
        raise GalleryError(
            f"{table}: its labels {list(columns)[:10]} are not the model's {list(labels)[:10]}: "
            "pass the --model that predicted it"
        )
    labels = labels or columns
    if thresholds is None:
        thresholds, threshold_source = np.full(len(labels), DEFAULT_THRESHOLD), "none"
    files = [Path(p) for p in frame["path"]]
    return GalleryData(
        [f.name for f in files],
        files,
        labels,
        frame.select(labels).to_numpy().astype(np.float64),
        np.asarray(thresholds, np.float64),
        threshold_source,
        None,
        f"predictions of {table.name}",
    )


def from_evaluation(
    scores_path: Path,
    manifest: pl.DataFrame,
    labels: tuple[str, ...],
    thresholds: np.ndarray,
    threshold_source: str,
    root: Path = Path("."),
) -> GalleryData:
    """The evaluated split: evaluate's scores (image_id + one column per label) with the manifest's paths
    (relative ones under `root`) and labels as the ground truth."""
    if not scores_path.is_file():
        raise GalleryError(f"{scores_path}: no evaluation scores; run `dvc repro evaluate` first")
    scores = pl.read_parquet(scores_path)
    if scores.height == 0:
        raise GalleryError(f"{scores_path}: no image was scored (a labels-only project?): nothing to show")
    joined = scores.join(
        manifest.select("image_id", "path", "labels"), on="image_id", how="left", maintain_order="left"
    )
    files = [Path(p) if Path(p).is_absolute() else root / p for p in joined["path"].fill_null("")]
    index = {name: i for i, name in enumerate(labels)}
    truth = np.zeros((joined.height, len(labels)), dtype=np.int8)
    for row, found in enumerate(joined["labels"].fill_null([]).to_list()):
        for name in found:
            if name in index:
                truth[row, index[name]] = 1
    return GalleryData(
        joined["image_id"].to_list(),
        files,
        labels,
        joined.select(labels).to_numpy().astype(np.float64),
        np.asarray(thresholds, np.float64),
        threshold_source,
        truth,
        "the evaluation split",
    )


def page_items(data: GalleryData) -> list[dict]:
    """Per image: n (name), t (thumbnail, base64 JPEG or ""), p (indices of predicted labels, most likely first),
    s (probabilities cut, not rounded, to 3 decimals, so one below its threshold never displays at it), g (truth indices, or absent). Predictions: probability >= threshold."""
    items = []
    for row, (name, path) in enumerate(zip(data.names, data.files)):
        probabilities = data.probabilities[row]
        order = np.argsort(-probabilities, kind="stable")
        item = {
            "n": name,
            "t": thumbnail(path) or "",
            "p": [int(c) for c in order if probabilities[c] >= data.thresholds[c]],
            "s": [math.floor(float(p) * 1000 + 1e-9) / 1000 for p in probabilities],
        }  # down: 0.4996 never shows 0.50
        if data.truth is not None:
            item["g"] = [int(c) for c in np.flatnonzero(data.truth[row])]
        items.append(item)
    return items


def render(data: GalleryData, items: list[dict] | None = None) -> str:
    """The page's HTML: the items as one JSON block, the template's script draws a page at a time."""
    items = page_items(data) if items is None else items
    payload = {
        "labels": list(data.labels),
        "thresholds": [round(float(t), 4) for t in data.thresholds],
        "source": data.threshold_source,
        "truth": data.truth is not None,
        "title": data.title,
        "page_size": PAGE_SIZE,
        "items": items,
    }
    # "</" cannot end the script block early inside JSON strings once escaped
    blob = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return TEMPLATE.replace("__TITLE__", html.escape(f"tai gallery: {data.title}")).replace("__DATA__", blob)


def write_gallery(data: GalleryData, out: Path) -> Path:
    return write_text(render(data), out)


def model_thresholds(
    model: Path | None, threshold: float | None
) -> tuple[tuple[str, ...] | None, np.ndarray | None, str]:
    """(the model's labels, thresholds, where they came from): `threshold` for every label when given, else
    the model's own (an export's or an adapter bundle's), else (None, None, "none")."""
    labels, per_label, source = None, {}, "none"
    if model is not None:
        from .classifier import load_bundle  # lazy: torch; a gallery of a predictions table needs none

        bundle, per_label = load_bundle(model)
        labels, source = bundle.labels, bundle.threshold_source
    if labels is None:
        return None, None, "none" if threshold is None else f"--threshold {threshold:g} for every label"
    if threshold is not None:
        return labels, np.full(len(labels), threshold), f"--threshold {threshold:g} for every label"
    return labels, np.array([per_label.get(name, DEFAULT_THRESHOLD) for name in labels]), source


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font:14px system-ui,sans-serif;margin:12px;background:#fafafa;color:#222}
header{display:flex;flex-wrap:wrap;gap:12px;align-items:center;margin-bottom:8px}
h1{font-size:18px;margin:0 12px 0 0}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:8px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}
.card img{width:100%;height:120px;object-fit:contain;background:#eee;display:block}
.name{font-size:11px;color:#666;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.chip{display:inline-block;border-radius:4px;padding:0 4px;margin:1px;font-size:12px;background:#e3f0ff}
.chip.tp{background:#d8f5d0}.chip.fp{background:#ffd6d6;outline:1px solid #d33}
.chip.fn{background:#fff1c9;outline:1px dashed #b80;text-decoration:line-through}
.legend .chip{font-size:11px}
#pager button{margin:0 2px}
details{font-size:12px}
</style></head><body>
<header>
<h1 id="title"></h1>
<label>label <select id="label"><option value="">all</option></select></label>
<label>sort <select id="sort"><option value="confidence">confidence</option><option value="error">errors</option><option value="name">name</option></select></label>
<span id="count"></span>
<span id="pager"><button id="prev">&#8592;</button><span id="pageinfo"></span><button id="next">&#8594;</button></span>
<span class="legend" id="legend"></span>
</header>
<details id="thresholds"><summary id="threshold-summary"></summary><div id="threshold-list"></div></details>
<main id="grid"></main>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const L = D.labels, T = D.thresholds, items = D.items;
const $ = (id) => document.getElementById(id);
const errors = (it) => {
  if (!it.g) return 0;
  const p = new Set(it.p), g = new Set(it.g);
  let n = 0; p.forEach((c) => { if (!g.has(c)) n++; }); g.forEach((c) => { if (!p.has(c)) n++; });
  return n;
};
items.forEach((it) => { it.conf = it.p.length ? it.s[it.p[0]] : Math.max(0, ...it.s); it.err = errors(it); });
function readState() {
  const h = new URLSearchParams(location.hash.slice(1));
  return {label: h.get("label") || "", sort: h.get("sort") || "confidence", page: Math.max(1, parseInt(h.get("page") || "1", 10) || 1)};
}
function writeState(s) {
  const h = new URLSearchParams();
  if (s.label) h.set("label", s.label);
  h.set("sort", s.sort); h.set("page", String(s.page));
  history.replaceState(null, "", "#" + h.toString());
  draw(s);
}
const shown2 = (p) => (Math.floor(p * 100 + 1e-9) / 100).toFixed(2);   // cut, as Python cut s: 0.499 is 0.49
function chip(text, cls) { const e = document.createElement("span"); e.className = "chip " + cls; e.textContent = text; return e; }
function card(it) {
  const c = document.createElement("div"); c.className = "card";
  c.dataset.name = it.n; c.dataset.predicted = it.p.map((i) => L[i]).join("|");
  if (it.g) c.dataset.truth = it.g.map((i) => L[i]).join("|");
  const img = document.createElement("img"); img.alt = it.n; img.loading = "lazy";
  if (it.t) img.src = "data:image/jpeg;base64," + it.t;
  c.appendChild(img);
  const n = document.createElement("div"); n.className = "name"; n.textContent = it.n; n.title = it.n; c.appendChild(n);
  const g = new Set(it.g || []);
  it.p.forEach((i) => c.appendChild(chip(L[i] + " " + shown2(it.s[i]), it.g ? (g.has(i) ? "tp" : "fp") : "")));
  if (it.g) it.g.forEach((i) => { if (!it.p.includes(i)) c.appendChild(chip(L[i] + " " + shown2(it.s[i]), "fn")); });
  if (!it.p.length && !(it.g && it.g.length)) c.appendChild(chip("no label", ""));
  return c;
}
function draw(s) {
  const li = L.indexOf(s.label);
  let shown = items.filter((it) => li < 0 || it.p.includes(li));
  const key = {confidence: (a, b) => b.conf - a.conf, error: (a, b) => b.err - a.err || b.conf - a.conf,
               name: (a, b) => a.n < b.n ? -1 : a.n > b.n ? 1 : 0}[s.sort] || ((a, b) => b.conf - a.conf);
  shown = shown.slice().sort(key);
  const pages = Math.max(1, Math.ceil(shown.length / D.page_size));
  s.page = Math.min(s.page, pages);
  const grid = $("grid"); grid.replaceChildren();
  shown.slice((s.page - 1) * D.page_size, s.page * D.page_size).forEach((it) => grid.appendChild(card(it)));
  $("label").value = li < 0 ? "" : s.label; $("sort").value = s.sort;
  $("count").textContent = shown.length + " of " + items.length + " images";
  $("pageinfo").textContent = " page " + s.page + " / " + pages + " ";
  document.body.dataset.page = String(s.page); document.body.dataset.shown = String(shown.length);
  document.body.dataset.ready = "1";
}
$("title").textContent = D.title;
L.forEach((name) => { const o = document.createElement("option"); o.value = name; o.textContent = name; $("label").appendChild(o); });
if (!D.truth) $("sort").querySelector("option[value=error]").disabled = true;
$("legend").append(...(D.truth ? [chip("predicted, true", "tp"), chip("false positive", "fp"), chip("false negative", "fn")] : [chip("predicted", "")]));
$("threshold-summary").textContent = "threshold per label (a label is predicted at or above it); chosen on: " + D.source;
$("threshold-list").textContent = L.map((name, i) => name + " " + T[i]).join(" \\u00b7 ");
$("label").onchange = () => writeState({...readState(), label: $("label").value, page: 1});
$("sort").onchange = () => writeState({...readState(), sort: $("sort").value, page: 1});
$("prev").onclick = () => { const s = readState(); s.page = Math.max(1, s.page - 1); writeState(s); };
$("next").onclick = () => { const s = readState(); s.page += 1; writeState(s); };
window.addEventListener("hashchange", () => draw(readState()));
draw(readState());
document.body.dataset.drawnMs = String(Math.round(performance.now()));   // parse + first page built
new PerformanceObserver((list) => list.getEntries().forEach((e) => {
  if (e.name === "first-contentful-paint") document.body.dataset.firstPaintMs = String(Math.round(e.startTime));
})).observe({type: "paint", buffered: true});
</script></body></html>
"""
