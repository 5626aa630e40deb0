"""The training loop: text embeddings (plus, in the few-shot and partial-label
settings, image embeddings) perturbed on a hypersphere, BCE on sigmoid outputs,
AdamW with a one-cycle schedule.

Every epoch ends with an atomic checkpoint; a run killed mid-way resumes from the
last finished epoch when started again with the same data and params, and ends
with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .adapter import Adapter, AdapterConfig, normalize
from .config import TrainParams
from .device import resolve_device
from .io import atomic_path
from .perturb import perturb
from .errors import UserError

log = logging.getLogger(__name__)


class TrainingDiverged(UserError, ValueError):
    """The loss or the weights stopped being finite numbers: the params, not the code, need changing."""


@dataclass
class TrainingSet:
    """What the adapter learns from. Embeddings are raw CLIP outputs; targets are 0/1 per label."""

    text: torch.Tensor
    text_targets: torch.Tensor
    text_radius: float
    text_offsets: torch.Tensor | None = None   # per-text shift towards the images (partial labels)
    images: torch.Tensor | None = None          # labelled images (few-shot support or partially labelled)
    image_targets: torch.Tensor | None = None
    image_known: torch.Tensor | None = None     # 1 where a label is known; unknown entries are ignored by the loss
    image_radius: float = 0.0
    image_weight: float = 0.0                   # share of each batch drawn from the images
    image_noise: str | None = None              # noise kind for the images; None = the texts' (TrainParams.noise)

    def fingerprint(self) -> str:
        """A hash of the data, so a checkpoint of another run is never resumed."""
        digest = hashlib.sha256()
        for t in (self.text, self.text_targets, self.text_offsets, self.images, self.image_targets, self.image_known):
            digest.update(b"-" if t is None else t.detach().cpu().contiguous().numpy().tobytes())
        digest.update(repr((self.text_radius, self.image_radius, self.image_weight)).encode())
        if self.image_noise is not None:
            digest.update(self.image_noise.encode())
        return digest.hexdigest()


def batch_split(batch_size: int, data: TrainingSet) -> tuple[int, int]:
    """(texts, images) per batch."""
    if data.images is None or len(data.images) == 0 or data.image_weight == 0:
        return batch_size, 0
    n_images = min(batch_size - 1, max(1, round(batch_size * data.image_weight)))
    return batch_size - n_images, n_images


def _check_finite_inputs(data: TrainingSet) -> None:
    for name, t in (("text embeddings", data.text), ("text offsets", data.text_offsets), ("image embeddings", data.images)):
        if t is not None and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).any(dim=-1).sum())
            raise TrainingDiverged(
                f"{bad} of {len(t)} {name} hold NaN or infinity: training on them cannot work; "
                "rerun the stage that wrote them (dvc repro --force encode_text / encode_images / centroids)"
            )


def _diverged(what: str, epoch: int, step: int, steps: int, lr: float, data: TrainingSet, params: TrainParams) -> TrainingDiverged:
    radius = f"text noise radius {data.text_radius:g}"
    if data.images is not None and len(data.images):
        radius += f", image noise radius {data.image_radius:g}"
    return TrainingDiverged(
        f"training diverged: {what} at epoch {epoch} of {params.epochs}, step {step} of {steps} "
        f"(lr {lr:.3g} of train.max_lr {params.max_lr:g}, {radius}, noise {params.noise}); no model was written. "
        f"Try a lower train.max_lr (e.g. {params.max_lr / 10:g}), a smaller radius (train.radius, or "
        f"fewshot.radius / partial.radius in those settings), or train.normalize: true"
    )


def _load_checkpoint(path: Path) -> dict | None:
    """A checkpoint of tensors and plain data only (weights_only: a tampered file cannot run code);
    one that cannot be read that way is ignored, and training starts afresh."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for foreign or truncated files
        log.warning("ignoring checkpoint %s: not a plain checkpoint of tensors (%s); training from scratch",
                    path, type(e).__name__)
        return None


def train_adapter(
    data: TrainingSet,
    params: TrainParams,
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[Adapter, list[dict]]:
    """Train an adapter; returns it with one log row per epoch (epoch, loss, lr, seconds)."""
    device = resolve_device(params.device)
    torch.manual_seed(params.seed)
    generator = torch.Generator().manual_seed(params.seed)

    text, images = data.text.float(), None if data.images is None else data.images.float()
    n_text, n_labels = data.text_targets.shape
    if n_text == 0:
        raise ValueError("no training texts: the generate stage produced an empty table")
    _check_finite_inputs(data)
    model = Adapter(AdapterConfig(text.shape[1], n_labels, params.hidden_dim, params.dropout)).to(device)
    texts_per_batch, images_per_batch = batch_split(params.batch_size, data)
    steps_per_epoch = math.ceil(n_text / texts_per_batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.max_lr, weight_decay=params.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=params.max_lr, total_steps=params.epochs * steps_per_epoch)
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")

    fingerprint = hashlib.sha256((data.fingerprint() + repr(asdict(params))).encode()).hexdigest()
    history: list[dict] = []
    start_epoch = 0
    state = _load_checkpoint(checkpoint) if checkpoint is not None and checkpoint.is_file() else None
    if state is not None:
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history, start_epoch = state["history"], state["epoch"]
            log.info("resuming training from %s after epoch %d of %d", checkpoint, start_epoch, params.epochs)
        else:
            log.info("ignoring checkpoint %s: it belongs to other data or params", checkpoint)

    def prepare(x: torch.Tensor, radius: float, offsets: torch.Tensor | None, kind: str = params.noise) -> torch.Tensor:
        if offsets is not None:
            x = x + offsets
        if params.normalize:
            x = normalize(x)
        return perturb(x, radius, kind, generator)

    bar = tqdm(range(start_epoch, params.epochs), desc="train", unit="epoch", initial=start_epoch, total=params.epochs)
    for epoch in bar:
        model.train()
        started = time.perf_counter()
        order = torch.randperm(n_text, generator=generator)
        total, count = 0.0, 0
        for step in range(steps_per_epoch):
            idx = order[step * texts_per_batch : (step + 1) * texts_per_batch]
            offsets = None if data.text_offsets is None else data.text_offsets[idx].float()
            x = prepare(text[idx], data.text_radius, offsets)
            y = data.text_targets[idx].float()
            known = torch.ones_like(y)
            if images_per_batch:
                img = torch.randint(len(images), (images_per_batch,), generator=generator)
                x = torch.cat([x, prepare(images[img], data.image_radius, None, data.image_noise or params.noise)])
                y = torch.cat([y, data.image_targets[img].float()])
                mask = torch.ones(len(img), n_labels) if data.image_known is None else data.image_known[img].float()
                known = torch.cat([known, mask])
            x, y, known = x.to(device), y.to(device), known.to(device)
            loss = (loss_fn(model(x), y) * known).sum() / known.sum().clamp_min(1)
            if not torch.isfinite(loss):
                raise _diverged(f"the loss is {loss.item()}", epoch + 1, step + 1, steps_per_epoch,
                                schedule.get_last_lr()[0], data, params)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
            count += len(idx)
        if not all(torch.isfinite(w).all() for w in model.parameters()):
            raise _diverged("the weights are no longer finite", epoch + 1, steps_per_epoch, steps_per_epoch,
                            schedule.get_last_lr()[0], data, params)
        row = {"epoch": epoch + 1, "loss": total / count, "lr": schedule.get_last_lr()[0], "seconds": time.perf_counter() - started}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if checkpoint is not None:
            with atomic_path(checkpoint) as tmp:
                torch.save(
                    {
                        "fingerprint": fingerprint, "epoch": epoch + 1, "history": history,
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "generator": generator.get_state(),
                        "torch_rng": torch.get_rng_state(),
                    },
                    tmp,
                )
        if on_epoch:
            on_epoch(row)
    model.eval()
    return model, history
