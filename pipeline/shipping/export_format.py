"""The folder `tai export` writes, as a reader sees it: file names, the format's version, and loading the
adapter back from safetensors + JSON with no pickle (`pipeline.shipping.classifier` and `tai predict --model DIR` use
`read_export`; `pipeline.shipping.export` writes the folder)."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.errors import UserError
from pipeline.method.adapter import Adapter, AdapterBundle, AdapterConfig, check_finite

FORMAT = "tai-adapter-classifier"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
ONNX_FILE = "model.onnx"


class ExportError(UserError, ValueError):
    """An export folder that cannot be written or read."""


def read_config(folder: Path, quiet: bool = False) -> dict | None:
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
        if config.get("format") != FORMAT:
            raise ValueError(f"format is {config.get('format')!r}, not {FORMAT!r}")
        if config.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"format version {config['format_version']} is newer than this project reads "
                f"({FORMAT_VERSION}): upgrade tai-adapter"
            )
        return config
    except (OSError, ValueError, AttributeError) as e:
        if quiet:
            return None
        raise ExportError(f"{path}: not a classifier exported by `tai export` ({e})") from None


def read_export(folder: str | Path) -> tuple[AdapterBundle, dict[str, float]]:
    """(adapter bundle, per-label thresholds) from an exported folder: JSON and safetensors, no pickle."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config = read_config(folder)
    shape, clip = config["adapter"], config["clip"]
    try:
        state = load_file(str(folder / WEIGHTS_FILE))
        model = Adapter(AdapterConfig(shape["embed_dim"], shape["n_labels"], shape["hidden_dim"], shape["dropout"]))
        model.load_state_dict(state)
    except (OSError, SafetensorError, RuntimeError, KeyError) as e:
        raise ExportError(
            f"{folder / WEIGHTS_FILE}: not the adapter {CONFIG_FILE} describes ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200]}): export it again"
        ) from None
    check_finite(state, folder / WEIGHTS_FILE)
    labels = tuple(config["labels"])
    if len(labels) != shape["n_labels"]:
        raise ExportError(
            f"{folder / CONFIG_FILE}: {len(labels)} labels but an adapter with {shape['n_labels']} outputs"
        )
    bundle = AdapterBundle(
        model.eval(),
        labels,
        shape["normalize_input"],
        clip["model"],
        clip["image_resolution"],
        clip["resize"],
        clip["identity"],
        clip.get("precision", "fp32"),
        threshold_source=config.get("threshold_source", "none"),
    )
    return bundle, {k: float(v) for k, v in config.get("thresholds", {}).items()}
