"""`tai export DIR`: a trained classifier as a self-describing folder that any program can load, no pickle.

    DIR/model.safetensors   the adapter's weights (safetensors: tensors and a JSON header, nothing to execute)
    DIR/config.json         labels and synonyms, thresholds, the CLIP (name, identity, resolution, resize rule,
                            normalisation), the adapter's shape, the project version
    DIR/README.md           the model card (`pipeline.shipping.model_card`)
    DIR/model.onnx          optional (`--onnx`): one graph from preprocessed pixels to probabilities, the CLIP
                            image encoder and the adapter together, for runtimes without PyTorch

`pipeline.shipping.export_format.read_export` loads the first two back into an `AdapterBundle` (`pipeline.shipping.classifier.load_classifier`
and `tai predict --model DIR` use it).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.config import load_params
from pipeline.data.labels import read_labels
from pipeline.encoding.image_runtime import ONNX_OPSET, export_onnx
from pipeline.encoding.vectors import normalize
from pipeline.evaluation.thresholds import DEFAULT_THRESHOLD
from pipeline.io import atomic_dir
from pipeline.method.adapter import Adapter, AdapterBundle
from pipeline.settings import plan

from .classifier import load_classifier, read_thresholds
from .export_format import (
    CARD_FILE,
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    ONNX_FILE,
    WEIGHTS_FILE,
    ExportError,
    read_config,
)
from .model_card import model_card

log = logging.getLogger(__name__)

ONNX_CHECK_ROWS = 2  # images of random pixels run through both ONNX Runtime and torch after writing


def project_version() -> str:
    try:
        return importlib.metadata.version("tai-adapter")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def export_config(bundle: AdapterBundle, encoder, synonyms: dict[str, list[str]], thresholds: dict[str, float]) -> dict:
    """What a program needs to use the weights: inputs (CLIP and its preprocessing), shape, labels, thresholds."""
    shape = bundle.model.config
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "project_version": project_version(),
        "exported_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "labels": list(bundle.labels),
        "synonyms": {name: list(synonyms.get(name, ())) for name in bundle.labels},
        "thresholds": {name: float(thresholds.get(name, DEFAULT_THRESHOLD)) for name in bundle.labels},
        "threshold_source": bundle.threshold_source,  # which images chose them ("none": 0.5 unless a file named one)
        "clip": {
            "model": bundle.clip_model,
            "identity": encoder.identity,
            "embed_dim": shape.embed_dim,
            "image_resolution": bundle.image_resolution,
            "resize": bundle.resize,
            "precision": bundle.precision,
            "interpolation": encoder.interpolation,
            "mean": list(encoder.mean),
            "std": list(encoder.std),
        },
        "adapter": {
            "embed_dim": shape.embed_dim,
            "hidden_dim": shape.hidden_dim,
            "n_labels": shape.n_labels,
            "dropout": shape.dropout,
            "normalize_input": bundle.normalize,
            "layers": "Linear(embed_dim, hidden_dim) ReLU Dropout Linear(hidden_dim, hidden_dim) ReLU Dropout "
            "Linear(hidden_dim, n_labels)",
            "output": "sigmoid: one independent probability per label",
        },
        "onnx": None,
    }


def _check_destination(out_dir: Path) -> None:
    """Only an empty folder or an earlier export is replaced: a user's folder is never deleted."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir} is a file: name a folder to export into")
    if any(out_dir.iterdir()) and read_config(out_dir, quiet=True) is None:
        raise ExportError(
            f"{out_dir} holds files that are not an export of this project: choose an empty or new folder"
        )


class PixelsToProbabilities(nn.Module):
    """The exported graph: CLIP image encoder, then the adapter (inputs normalised when trained so), then sigmoid."""

    def __init__(self, clip_model: nn.Module, adapter: Adapter, normalize_input: bool):
        super().__init__()
        self.clip, self.adapter, self.normalize_input = clip_model, adapter, normalize_input

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.clip.encode_image(pixels).float()
        if self.normalize_input:
            features = normalize(features)
        return torch.sigmoid(self.adapter(features))


def write_onnx(path: Path, classifier) -> dict:
    """The classifier's pixels-to-probabilities graph as ONNX (batch size free, resolution fixed); checked
    against torch with ONNX Runtime when it is installed. Returns the config's `onnx` entry."""
    resolution, encoder = classifier.bundle.image_resolution, classifier.encoder
    encoder.set_resolution(resolution)
    graph = PixelsToProbabilities(encoder.model, classifier.bundle.model, classifier.bundle.normalize).eval().float()
    example = torch.randn(ONNX_CHECK_ROWS, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    try:
        export_onnx(graph, example, str(path), "pixels", "probabilities")
    except Exception as e:  # an operator ONNX has no form for, in some backbone
        raise ExportError(
            f"{encoder.name}'s image encoder could not be written as ONNX ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}): export without --onnx"
        ) from None
    with torch.no_grad():
        expected = graph(example).numpy()
    entry = {
        "file": ONNX_FILE,
        "opset": ONNX_OPSET,
        "input": {
            "name": "pixels",
            "shape": ["batch", 3, resolution, resolution],
            "dtype": "float32",
            "preprocessing": "RGB, resized by clip.resize, scaled to [0, 1], normalised by clip.mean/std",
        },
        "output": {"name": "probabilities", "shape": ["batch", len(classifier.labels)], "dtype": "float32"},
    }
    try:
        import onnxruntime
    except ImportError:
        log.warning("onnxruntime is not installed: %s written but not checked against torch", path.name)
        return entry
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    difference = float(np.abs(session.run(None, {"pixels": example.numpy()})[0] - expected).max())
    if not difference <= 1e-4:
        raise ExportError(
            f"{path.name}: ONNX Runtime and torch differ by {difference:.3g} on the same pixels: "
            "the graph is wrong; export without --onnx"
        )
    entry["checked_max_abs_difference"] = difference
    return entry


def write_export(out_dir: str | Path, classifier, config: dict, card: str, onnx: bool = False) -> Path:
    """Write the folder atomically (an interrupted export leaves the old one, or none); `config` is
    `export_config`'s, `card` the model card."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    _check_destination(out_dir)
    config = dict(config)
    with atomic_dir(out_dir) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in classifier.bundle.model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "producer": FORMAT})
        if onnx:
            config["onnx"] = write_onnx(tmp / ONNX_FILE, classifier)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / CARD_FILE).write_text(card)
    return out_dir


def read_reports(folder: Path) -> dict[str, dict]:
    """reports/<stage>.json of the stages the card quotes, those that exist."""
    reports = {}
    for stage in ("generate", "train", "eval", "zeroshot"):
        path = folder / f"{stage}.json"
        if path.is_file():
            reports[stage] = json.loads(path.read_text())
    return reports


def export_workspace(
    out_dir: str | Path,
    adapter: str | Path,
    params_file: str | Path = "params.yaml",
    reports_dir: str | Path = "reports",
    thresholds_file: str | Path | None = None,
    onnx: bool = False,
    clip_model: str | None = None,
) -> Path:
    """Export the workspace's trained adapter with its labels, CLIP, params and reports (`tai export`)."""
    params = load_params(params_file)
    the_plan = plan(params)
    labels = read_labels(params.prepare.dataset)
    classifier = load_classifier(adapter, device="cpu", clip_model=clip_model)
    if classifier.labels != labels.names:
        raise ExportError(
            f"{adapter} was trained on other labels than {params.prepare.dataset}'s label table: "
            "run `dvc repro train` first"
        )
    bundle = classifier.bundle
    stale = [
        f"{key} is {now!r} in {params_file} but {was!r} in the adapter"
        for key, now, was in (
            ("encode.model", params.encode.model, bundle.clip_model),
            ("encode.resize", params.encode.resize, bundle.resize),
            ("encode.precision", params.encode.precision, bundle.precision),
            ("train.normalize", params.train.normalize, bundle.normalize),
        )
        if now != was
    ]
    if stale and clip_model is None:  # the card would describe other params than the weights'
        raise ExportError(f"{'; '.join(stale)}: run `dvc repro` so the adapter matches the params, then export")
    # the thresholds train chose on held-out labelled images (if any), each overridden by --thresholds FILE
    thresholds = {
        **bundle.threshold_table(),
        **(read_thresholds(thresholds_file, labels.names) if thresholds_file else {}),
    }
    synonyms = dict(zip(labels.names, (list(s) for s in labels.synonyms)))
    config = export_config(classifier.bundle, classifier.encoder, synonyms, thresholds)
    if thresholds_file:
        config["threshold_source"] = f"{Path(thresholds_file).name} (tai export --thresholds)" + (
            "" if bundle.threshold_source == "none" else f"; labels it does not name: {bundle.threshold_source}"
        )
    config["onnx"] = {"file": ONNX_FILE} if onnx else None
    card = model_card(config, params, the_plan, read_reports(Path(reports_dir)))
    return write_export(out_dir, classifier, config, card, onnx)
