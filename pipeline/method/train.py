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

from pipeline.config import TrainParams
from pipeline.device import resolve_device
from pipeline.encoding.vectors import normalize
from pipeline.errors import UserError
from pipeline.io import read_checkpoint, write_torch

from .adapter import Adapter, AdapterConfig
from .perturb import perturb

log = logging.getLogger(__name__)


class TrainingDiverged(UserError, ValueError):
    """The loss or the weights ran away (not finite, or finite but far out of bounds): the params, not the
    code, need changing."""


# Divergence that stays finite (lr 1e9 took a two-step run's loss from 0.70 to 1.8e28): an epoch's mean
# BCE more than LOSS_GROWTH times the first epoch's, or above LOSS_LIMIT (a thousand times the loss of
# answering 0.5 for every label: logits of several hundred on the wrong side), or a weight whose magnitude
# passes WEIGHT_LIMIT (weights start below 1 and AdamW moves each by about lr per step: 1e-4 x 10k steps
# is 1), stops training like a NaN does.
LOSS_GROWTH = 1e3
LOSS_LIMIT = 1e3 * math.log(2)
WEIGHT_LIMIT = 1e6


@dataclass
class TrainingSet:
    """What the adapter learns from. Embeddings are raw CLIP outputs; targets are 0/1 per label."""

    text: torch.Tensor
    text_targets: torch.Tensor
    text_radius: float
    text_offsets: torch.Tensor | None = None  # per-text shift towards the images (partial labels)
    images: torch.Tensor | None = None  # labelled images (few-shot support or partially labelled)
    image_targets: torch.Tensor | None = None
    image_known: torch.Tensor | None = None  # 1 where a label is known; unknown entries are ignored by the loss
    image_radius: float = 0.0
    image_weight: float = 0.0  # share of each batch drawn from the images
    image_noise: str | None = None  # noise kind for the images; None = the texts'
    text_noise: str | None = None  # noise kind for the texts (the Plan's); None = TrainParams.noise

    def fingerprint(self) -> str:
        """A hash of the data, so a checkpoint of another run is never resumed."""
        digest = hashlib.sha256()
        for t in (self.text, self.text_targets, self.text_offsets, self.images, self.image_targets, self.image_known):
            digest.update(b"-" if t is None else t.detach().cpu().contiguous().numpy().tobytes())
        digest.update(repr((self.text_radius, self.image_radius, self.image_weight)).encode())
        if self.image_noise is not None:
            digest.update(self.image_noise.encode())
        if self.text_noise is not None:
            digest.update(b"text:" + self.text_noise.encode())
        return digest.hexdigest()


def run_fingerprint(data: TrainingSet, params: TrainParams) -> str:
    """What a checkpoint must match to be resumed: the training set and every train param. It also names
    the stage's checkpoint file in the per-user cache (pipeline.paths.train_checkpoint)."""
    return hashlib.sha256((data.fingerprint() + repr(asdict(params))).encode()).hexdigest()


def batch_split(batch_size: int, data: TrainingSet) -> tuple[int, int]:
    """(texts, images) per batch."""
    if data.images is None or len(data.images) == 0 or data.image_weight == 0:
        return batch_size, 0
    n_images = min(batch_size - 1, max(1, round(batch_size * data.image_weight)))
    return batch_size - n_images, n_images


def _check_finite_inputs(data: TrainingSet) -> None:
    for name, t in (
        ("text embeddings", data.text),
        ("text offsets", data.text_offsets),
        ("image embeddings", data.images),
    ):
        if t is not None and not torch.isfinite(t).all():
            bad = int((~torch.isfinite(t)).any(dim=-1).sum())
            raise TrainingDiverged(
                f"{bad} of {len(t)} {name} hold NaN or infinity: training on them cannot work; "
                "rerun the stage that wrote them (dvc repro --force encode_text / encode_images / centroids)"
            )


def _diverged(
    what: str, epoch: int, step: int | None, steps: int, lr: float, data: TrainingSet, params: TrainParams
) -> TrainingDiverged:
    """`step` None: found at the end of the epoch."""
    radius = f"text noise radius {data.text_radius:g}"
    if data.images is not None and len(data.images):
        radius += f", image noise radius {data.image_radius:g}"
    where = (
        f"at epoch {epoch} of {params.epochs}, step {step} of {steps}"
        if step
        else f"at the end of epoch {epoch} of {params.epochs}"
    )
    return TrainingDiverged(
        f"training diverged: {what} {where} "
        f"(lr {lr:.3g} of train.max_lr {params.max_lr:g}, {radius}, noise {params.noise}); no model was written. "
        f"Try a lower train.max_lr (e.g. {params.max_lr / 10:g}), a smaller radius (train.radius, or "
        f"fewshot.radius / partial.radius in those settings), or train.normalize: true"
    )


def _runaway(model: nn.Module, loss: float, first_loss: float | None) -> str | None:
    """Why the epoch that just ended has diverged (weights not finite or out of bounds, or a loss far above
    the first epoch's or LOSS_LIMIT), or None. Checked before its checkpoint is written."""
    if not all(torch.isfinite(w).all() for w in model.parameters()):
        return "the weights are no longer finite"
    largest = max(float(w.detach().abs().max()) for w in model.parameters())
    if largest > WEIGHT_LIMIT:
        return f"a weight reached {largest:.3g} (the bound is {WEIGHT_LIMIT:g}; weights start below 1)"
    if first_loss is not None and loss > LOSS_GROWTH * first_loss:
        return (
            f"the epoch's mean loss is {loss:.3g}, more than {LOSS_GROWTH:g} times the first epoch's {first_loss:.3g}"
        )
    if loss > LOSS_LIMIT:
        return (
            f"the epoch's mean loss is {loss:.3g}, above {LOSS_LIMIT:.3g} (a thousand times the loss of "
            "answering 0.5 for every label)"
        )
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
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=params.max_lr, total_steps=params.epochs * steps_per_epoch
    )
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")

    fingerprint = run_fingerprint(data, params)
    history: list[dict] = []
    start_epoch = 0
    state = read_checkpoint(checkpoint) if checkpoint is not None else None
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

    text_kind = data.text_noise or params.noise

    def prepare(x: torch.Tensor, radius: float, offsets: torch.Tensor | None, kind: str = text_kind) -> torch.Tensor:
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
                x = torch.cat([x, prepare(images[img], data.image_radius, None, data.image_noise or text_kind)])
                y = torch.cat([y, data.image_targets[img].float()])
                mask = torch.ones(len(img), n_labels) if data.image_known is None else data.image_known[img].float()
                known = torch.cat([known, mask])
            x, y, known = x.to(device), y.to(device), known.to(device)
            loss = (loss_fn(model(x), y) * known).sum() / known.sum().clamp_min(1)
            if not torch.isfinite(loss):
                raise _diverged(
                    f"the loss is {loss.item()}",
                    epoch + 1,
                    step + 1,
                    steps_per_epoch,
                    schedule.get_last_lr()[0],
                    data,
                    params,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
            count += len(idx)
        row = {
            "epoch": epoch + 1,
            "loss": total / count,
            "lr": schedule.get_last_lr()[0],
            "seconds": time.perf_counter() - started,
        }
        runaway = _runaway(model, row["loss"], history[0]["loss"] if history else None)
        if runaway:
            raise _diverged(runaway, epoch + 1, None, steps_per_epoch, schedule.get_last_lr()[0], data, params)
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if checkpoint is not None:
            write_torch(
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch + 1,
                    "history": history,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                },
                checkpoint,
            )
        if on_epoch:
            on_epoch(row)
    model.eval()
    return model, history
