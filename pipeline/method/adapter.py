"""The TaI-Adapter: a small MLP from a CLIP embedding to one logit per label.

The paper describes it as 3 x (Linear, ReLU, Dropout) to one logit per label. A
logit cannot pass a ReLU (every negative logit would become 0, i.e. p >= 0.5), so
we read it as three Linear layers, the first two followed by ReLU and Dropout,
the third producing the logits:

    Linear(d, h) ReLU Dropout  Linear(h, h) ReLU Dropout  Linear(h, n_labels)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.encoding.vectors import normalize
from pipeline.errors import UserError
from pipeline.io import write_torch


class AdapterError(UserError, ValueError):
    """A saved adapter that cannot be used: not an adapter file, or weights that are not finite."""


@dataclass(frozen=True)
class AdapterConfig:
    """The adapter's shape; hidden_dim and dropout come from train.hidden_dim and train.dropout."""

    embed_dim: int
    n_labels: int
    hidden_dim: int
    dropout: float


class Adapter(nn.Module):
    def __init__(self, config: AdapterConfig):
        super().__init__()
        self.config = config
        h = config.hidden_dim
        self.net = nn.Sequential(
            nn.Linear(config.embed_dim, h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, h),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(h, config.n_labels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass(frozen=True)
class AdapterBundle:
    """Everything needed to use a trained adapter: weights plus how its inputs must look."""

    model: Adapter
    labels: tuple[str, ...]
    normalize: bool
    clip_model: str
    image_resolution: int
    resize: str = "square"  # encode.resize the adapter's images were preprocessed with; predict uses the same
    clip_identity: str | None = None  # ClipEncoder.identity of clip_model at training (None: older bundles)
    precision: str = "fp32"  # encode.precision of its embeddings; predict encodes images in the same one
    thresholds: tuple[float, ...] | None = (
        None  # per label, chosen on held-out labelled images (pipeline.evaluation.thresholds)
    )
    threshold_source: str = "none"  # which images chose them, in words; "none": 0.5 for every label

    def scores(self, embeddings: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Sigmoid probabilities (float64, so confident scores do not collapse into ties at 1.0)."""
        return torch.sigmoid(self.logits(embeddings, batch_size).double())

    def logits(self, embeddings: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Logits for raw CLIP image embeddings (normalised here when the adapter was trained so)."""
        self.model.eval()
        device = next(self.model.parameters()).device
        out = []
        with torch.no_grad():
            for chunk in embeddings.split(batch_size):
                x = chunk.to(device, torch.float32)
                if self.normalize:
                    x = normalize(x)
                out.append(self.model(x).cpu())
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def save(self, path: str | Path) -> None:
        payload = {
            "config": asdict(self.model.config),
            "state_dict": {k: v.cpu() for k, v in self.model.state_dict().items()},
            "labels": list(self.labels),
            "normalize": self.normalize,
            "clip_model": self.clip_model,
            "image_resolution": self.image_resolution,
            "resize": self.resize,
            "clip_identity": self.clip_identity,
            "precision": self.precision,
            "thresholds": None if self.thresholds is None else [float(t) for t in self.thresholds],
            "threshold_source": self.threshold_source,
        }
        write_torch(payload, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "AdapterBundle":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no trained adapter there; run `dvc repro train` first")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            model = Adapter(AdapterConfig(**payload["config"]))
            model.load_state_dict(payload["state_dict"])
        except Exception as e:  # noqa: BLE001 - a foreign, truncated or tampered file
            raise AdapterError(
                f"{path} is not an adapter saved by the train stage ({type(e).__name__}): "
                "run `dvc repro train` to write it again"
            ) from e
        check_finite(payload["state_dict"], path)
        return cls(
            model.to(device),
            tuple(payload["labels"]),
            payload["normalize"],
            payload["clip_model"],
            payload["image_resolution"],
            payload.get("resize", "center_crop"),
            payload.get("clip_identity"),  # older bundles: CLIP's crop,
            payload.get("precision", "fp32"),  # no identity, and fp32 (the only precision then)
            None if payload.get("thresholds") is None else tuple(payload["thresholds"]),  # and no thresholds
            payload.get("threshold_source", "none"),
        )

    def threshold_table(self) -> dict[str, float]:
        """{label: threshold} chosen on data; empty when none was (every label then uses 0.5)."""
        return {} if self.thresholds is None else dict(zip(self.labels, self.thresholds))


def check_finite(state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """A trained adapter with NaN or infinite weights would score garbage: refuse it, naming the file."""
    bad = [name for name, w in state_dict.items() if not torch.isfinite(w).all()]
    if bad:
        raise AdapterError(
            f"{path}: the adapter's weights hold NaN or infinity ({', '.join(bad)}), so every score would be "
            "garbage: retrain it (`dvc repro train`) with a lower train.max_lr or a smaller train.radius"
        )
