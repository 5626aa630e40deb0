"""DualCoOp (Sun et al., NeurIPS 2022; sunxm2357/DualCoOp `models/dualcoop.py`) for partial labels.

Per label a positive and a negative learnable prompt (16 context vectors each; class-specific by
default, as TaI-DPT's DualCoOp runs use `--csc` for partial labels). The image side is RN50's dense
features at encode.partial_resolution in DualCoOp's form (`pipeline.encoding.dense.with_positions`: the mean
location and the H x W locations, positional embedding added, through v_proj and c_proj).

Class-specific region aggregation (DualCoOp's `forward`): with unit features, s = 20 x cosine between
every location and every prompt; per label, weights w = softmax over locations of the positive
prompt's s; both prompts' logits are 5 x sum(s x w), the positive prompt's weights used for the
negative one too. A label's probability is the softmax over its (negative, positive) logit pair, and
the loss is DualCoOp's asymmetric loss on the known entries only (`losses.dual_asymmetric_loss`;
unknown entries of the partial-label mask contribute nothing), times prompt.loss_weight (DualCoOp's
--loss_w; 0.03 by default, its README's partial-label example). Test score: the logit difference
Delta = positive - negative logit, which the softmax over the pair turns into the positive probability
monotonically (the same ranking, so the same mAP), but which does not saturate: in float32 the
probability of a confident positive is exactly 1.0, and the integration (evaluate.integrate_with)
would then leave those ties to the adapter alone. TaI-DPT's DualCoOp reproduction
(`trainers/Caption_dual.py`) hands the same difference to its `ensemble_score.py`.

No image augmentation: DualCoOp trains on 448 x 448 resized images with Cutout (half the side) and
RandAugment (`dataloaders/coco_detection.py`), which would need the dense features recomputed every
epoch (docs/benchmarks.md gives that cost); ours are computed once (our reading).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from pipeline.data.manifest import read_split
from pipeline.data.partial_labels import MASK_PATH, mask_arrays
from pipeline.encoding.dense import grid_of, positional_term, read_dense, with_positions
from pipeline.encoding.vectors import normalize
from pipeline.evaluation.metrics import known_mean_ap

from .fit import Fitted, fit, shuffled_batches, train_and_held_out
from .losses import dual_asymmetric_loss
from .text import FrozenTextEncoder, LabelPrompts, check_text_encoder

SIMILARITY_SCALE = 20.0  # DualCoOp: 20 * conv1d(normalised image features, text features)
OUTPUT_SCALE = 5.0  # DualCoOp: 5 * (output * w).sum(-1)


class DualCoOp(nn.Module):
    def __init__(
        self,
        clip_model,
        names: list[str],
        positional: torch.Tensor,
        n_ctx: int = 16,
        class_specific: bool = True,
        generator: torch.Generator | None = None,
        ctx_init: str | None = None,
    ):
        """`positional`: (1 + L, dim) from `pipeline.encoding.dense.positional_term` at the features' grid."""
        super().__init__()
        check_text_encoder(clip_model, "dualcoop")
        encoder = FrozenTextEncoder(clip_model)
        self.positive = LabelPrompts(encoder, names, n_ctx, class_specific, generator, ctx_init)
        self.negative = LabelPrompts(encoder, names, n_ctx, class_specific, generator, ctx_init)
        self.register_buffer("positional", positional.detach().float())

    def logits(self, dense: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """Stored dense features (batch, L, dim) -> (batch, 2, labels): [:, 0] negative, [:, 1] positive."""
        f = normalize(with_positions(dense.float(), self.positional))
        s_pos = SIMILARITY_SCALE * f @ positive.T  # (batch, 1 + L, labels)
        s_neg = SIMILARITY_SCALE * f @ negative.T
        w = s_pos.softmax(dim=1)  # over locations, from the positive prompt
        return OUTPUT_SCALE * torch.stack([(s_neg * w).sum(1), (s_pos * w).sum(1)], dim=1)

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        return self.logits(dense, self.positive(), self.negative())

    @torch.no_grad()
    def scores(self, dense_rows, n: int, batch_size: int = 64) -> torch.Tensor:
        """Delta (positive - negative logit) of n images; `dense_rows(rows)` gives their stored dense features.
        sigmoid(Delta) is the positive probability."""
        positive, negative = self.positive(), self.negative()
        device = self.positional.device
        chunks = [
            logit_difference(self.logits(dense_rows(rows).to(device), positive, negative))
            for rows in torch.arange(n).split(batch_size)
        ]
        return torch.cat(chunks) if chunks else torch.zeros(0, positive.shape[0])


def logit_difference(logits: torch.Tensor) -> torch.Tensor:
    """(batch, 2, labels) [negative, positive] logits -> (batch, labels) positive - negative: DualCoOp's
    integration score (softmax over the pair = sigmoid of it)."""
    return logits[:, 1] - logits[:, 0]


def train_dualcoop(
    model: DualCoOp,
    dense_rows,
    targets: torch.Tensor,
    known: torch.Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    warmup_epochs: int = 1,
    on_epoch=None,
    checkpoint=None,
    fingerprint: str = "",
    loss_weight: float = 1.0,
    select_by=None,
) -> list[dict]:
    """`dense_rows(rows)` -> (batch, L, dim) stored features; targets and known (n, labels) 0/1; the summed
    asymmetric loss is multiplied by `loss_weight` (prompt.loss_weight, DualCoOp's --loss_w)."""
    device = model.positional.device
    targets, known = targets.to(device).float(), known.to(device).float()

    def loss_of(rows):
        return loss_weight * dual_asymmetric_loss(model(dense_rows(rows).to(device)), targets[rows], known[rows])

    return fit(
        model,
        lambda epoch: shuffled_batches(len(targets), batch_size, seed, epoch),
        loss_of,
        epochs,
        lr,
        warmup_epochs,
        on_epoch,
        checkpoint,
        fingerprint,
        select_by,
    )


def fit_dualcoop(peer, prompt, dataset: str, labels, model, device, setup: dict, fitting: dict) -> Fitted:
    """The partially labelled split's dense features and known entries -> DualCoOp; scored on the
    evaluation split's dense features (the Plan's `peer.train_dense` and `peer.test_dense`, both at
    encode.partial_resolution)."""
    train, test = (
        read_dense(peer.train_dense.split, peer.train_dense.resolution),
        read_dense(peer.test_dense.split, peer.test_dense.resolution),
    )
    targets, known = mask_arrays(pl.read_parquet(MASK_PATH), labels, train.ids)
    attnpool = model.visual.attnpool
    positional = positional_term(attnpool, attnpool.positional_embedding, grid_of(train.locations))
    method = DualCoOp(model, positional=positional, **setup).to(device)
    rows, val = train_and_held_out(prompt.select, len(train.ids), prompt.seed)
    select_by = (
        None
        if val is None
        else (
            lambda: known_mean_ap(
                method.scores(lambda r: train.take(val[r.numpy()]), len(val)).cpu().double().numpy(),
                targets[val],
                known[val],
            )
        )
    )
    history = train_dualcoop(
        method,
        lambda r: train.take(rows[np.asarray(r)]),
        torch.from_numpy(targets[rows]),
        torch.from_numpy(known[rows]),
        **fitting,
        select_by=select_by,
    )
    scores = method.scores(test.take, len(test.ids))  # Delta = positive - negative logit
    context = {"positive": method.positive.context.ctx, "negative": method.negative.context.ctx}
    manifest = read_split(dataset, peer.test_dense.split).select("image_id", "labels")
    aligned = pl.DataFrame({"image_id": test.ids}).join(manifest, on="image_id", how="left", maintain_order="left")
    return Fitted(test.ids, scores, labels.multi_hot(aligned["labels"].to_list()), len(rows), history, context)
