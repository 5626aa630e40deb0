"""The peers' optimisation, shared by the three methods: SGD (momentum 0.9, weight decay 5e-4, Dassl's
defaults, which CoOp, DualCoOp and TaI-DPT all use) on the context vectors only, one warm-up epoch at a
constant 1e-5, then a cosine decay from `lr` over the epochs, stepped once per epoch as Dassl's
`build_lr_scheduler` does ("cosine", WARMUP_TYPE constant, WARMUP_CONS_LR 1e-5, WARMUP_RECOUNT True):
the cosine starts counting after the warm-up, so the first epoch after it runs at the full lr and
epoch e >= 1 (0-based) at lr * (1 + cos(pi (e - 1) / E)) / 2.

The loss a method hands `fit` is already multiplied by its weight (prompt.loss_weight). Under SGD with
weight decay, scaling the loss by k is not scaling the lr by k: the gradient of the loss is scaled,
the decay term (5e-4 x the context) is not, so a smaller loss weight also makes the decay relatively
stronger, and momentum carries the scaled gradients."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from pipeline.errors import UserError
from pipeline.io import read_checkpoint, write_torch

log = logging.getLogger(__name__)

MOMENTUM, WEIGHT_DECAY, WARMUP_LR = 0.9, 5e-4, 1e-5


class PromptDiverged(UserError, ValueError):
    """The prompt method's loss stopped being a finite number: the params, not the code, need changing."""


class NothingToTrain(UserError, ValueError):
    """A prompt method's training set is empty."""


def epoch_lr(epoch: int, lr: float, epochs: int, warmup_epochs: int = 1) -> float:
    """Learning rate of `epoch` (0-based), Dassl's sequence. With a single epoch there is nothing to warm
    up: it runs at lr."""
    if epochs > 1 and epoch < warmup_epochs:
        return WARMUP_LR
    after_warmup = epoch - warmup_epochs if epochs > 1 else epoch
    return lr * 0.5 * (1 + math.cos(math.pi * max(after_warmup, 0) / epochs))


def trainable(module: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters a prompt method learns (the context vectors), by name; CLIP's are frozen."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def fit(
    module: nn.Module,
    batches: Callable[[int], Iterable],
    loss_of: Callable,
    epochs: int,
    lr: float,
    warmup_epochs: int = 1,
    on_epoch: Callable[[dict], None] | None = None,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    select_by: Callable[[], float] | None = None,
) -> list[dict]:
    """Train `module`'s trainable parameters: `batches(epoch)` yields batches, `loss_of(batch)` their loss.
    Returns one row per epoch: epoch, loss (mean over batches), lr, seconds.

    With `checkpoint`, every epoch ends with an atomic checkpoint (the trainable parameters, the optimiser,
    the history), and a checkpoint with the same `fingerprint` (the caller's hash of what is trained on
    and how) is resumed after its last epoch. The batch order is a function of the seed and the epoch
    (`shuffled_batches`), so a resumed run ends where an uninterrupted one does.

    With `select_by` (prompt.select: val; the mAP on a held-out slice of the training set), each epoch's
    row gains `val_map` and the module ends with the parameters of the best epoch, not the last."""
    named = trainable(module)
    best = {"value": -math.inf, "epoch": 0, "params": None}
    optimizer = torch.optim.SGD(list(named.values()), lr=lr, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    history, start = [], 0
    state = read_checkpoint(checkpoint) if checkpoint is not None else None
    if state is not None and state.get("fingerprint") == fingerprint and set(state["params"]) == set(named):
        with torch.no_grad():
            for name, p in named.items():
                p.copy_(state["params"][name])
        optimizer.load_state_dict(state["optimizer"])
        history, start = state["history"], state["epoch"]
        best = state.get("best", best)
        log.info("resuming from %s after epoch %d of %d", checkpoint, start, epochs)
    elif state is not None:
        log.info("ignoring checkpoint %s: it belongs to other data or params", checkpoint)
    for epoch in range(start, epochs):
        started, rate = time.perf_counter(), epoch_lr(epoch, lr, epochs, warmup_epochs)
        for group in optimizer.param_groups:
            group["lr"] = rate
        total, n = 0.0, 0
        for batch in batches(epoch):
            loss = loss_of(batch)
            if not torch.isfinite(loss):
                raise PromptDiverged(
                    f"the prompt method's loss became {loss.item()} in epoch {epoch + 1}: lower prompt.lr (now {lr:g})"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, n = total + loss.item(), n + 1
        if n == 0:
            raise NothingToTrain(
                "the prompt method has nothing to train on (no batch in an epoch): check that its "
                "training set (support images, partially labelled images or texts) is not empty"
            )
        row = {"epoch": epoch + 1, "loss": total / n, "lr": rate, "seconds": time.perf_counter() - started}
        if select_by is not None:
            row["val_map"] = float(select_by())
            if row["val_map"] > best["value"]:
                best = {
                    "value": row["val_map"],
                    "epoch": epoch + 1,
                    "params": {name: p.detach().cpu().clone() for name, p in named.items()},
                }
        history.append(row)
        if checkpoint is not None:
            write_torch(
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch + 1,
                    "history": history,
                    "best": best,
                    "params": {name: p.detach().cpu() for name, p in named.items()},
                    "optimizer": optimizer.state_dict(),
                },
                checkpoint,
            )
        if on_epoch:
            on_epoch(row)
        log.info("epoch %d/%d: loss %.4f (lr %.2g, %.1f s)", epoch + 1, epochs, row["loss"], rate, row["seconds"])
    if select_by is not None and best["params"] is not None:
        with torch.no_grad():
            for name, p in named.items():
                p.copy_(best["params"][name])
        log.info("prompt.select val: keeping epoch %d (held-out mAP %.4f)", best["epoch"], best["value"])
    return history


def held_out(n: int, seed: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows) of n: a seeded `fraction` (at least one row) is held out for
    prompt.select: val; never the test split. Refused when nothing would be left to train on."""
    n_val = max(1, round(n * fraction))
    if n - n_val < 1:
        raise NothingToTrain(
            f"prompt.select is val but the training set has {n} row(s): nothing is left to train "
            "on after holding out a validation slice; set prompt.select to last"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    return order[n_val:].sort().values, order[:n_val].sort().values


def shuffled_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Row indices of each batch of `epoch`, a seeded permutation (the same seed, epoch: the same order)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return [rows for rows in order.split(batch_size) if len(rows)]  # torch splits an empty range into one empty batch


# prompt.select: val holds this share of the method's own training set out (seeded by prompt.seed), never test.
PROMPT_VAL_FRACTION = 0.2


def train_and_held_out(select: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows trained on, held-out rows or None): prompt.select val holds out a seeded slice of the
    method's own training set (never the test split)."""
    if select != "val":
        return np.arange(n), None
    train, val = held_out(n, seed, PROMPT_VAL_FRACTION)
    log.info("prompt.select val: %d of %d training rows held out to pick the epoch", len(val), n)
    return train.numpy(), val.numpy()


@dataclass
class Fitted:
    """What a peer's fit function (pipeline/peers.py: PeerSpec.fit) returns."""

    ids: list[str]  # the evaluation split's scored images
    scores: torch.Tensor  # (images, labels)
    targets: np.ndarray
    n_train: int  # rows trained on
    history: list[dict]  # per epoch: epoch, loss, lr, seconds
    context: dict[str, torch.Tensor]  # the learned context vectors by name
    n_template_texts: int = 0  # TaI-DPT: its template sentences among the rows
