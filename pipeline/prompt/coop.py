"""CoOp (Zhou et al., IJCV 2022; KaiyangZhou/CoOp `trainers/coop.py`) for few-shot multi-label recognition.

One learnable context (16 vectors; per label with class_specific, CoOp's CSC) before every label
name; a label's logit is the cosine between the image's CLIP feature and the prompt's text feature,
times CLIP's logit scale (exp of the model's `logit_scale`: 100 for the released weights), as CoOp's
`CustomCLIP.forward`. No multi-label CoOp exists upstream: CoOp itself is single-label (softmax
cross-entropy), and TaI-DPT's `trainers/coop.py` is the same single-label trainer, registered but
unused by its scripts; TaI-DPT's only few-shot objective is BCE on logits. So the multi-label loss is
ours to choose (prompt.coop_loss): `ranking` (default), TaI-DPT's ranking loss (`losses.ranking_loss`),
which depends only on score differences within an image and so suits CLIP's scaled cosines; or `bce`,
mean binary cross-entropy on the logits (a sigmoid of 100 x cosine starts saturated: docs/benchmarks.md
measures both). prompt.ctx_init starts the context from words, CoOp's "a photo of a".

Images are CLIP's global features, precomputed by the encode stages (the few-shot support images and
the evaluation split): no image augmentation (CoOp trains with random resized crops and flips; with a
frozen image encoder and cached features we cannot; our reading).
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.data.labelled_images import labelled_images
from pipeline.encoding.vectors import normalize
from pipeline.evaluation.metrics import mean_ap

from .fit import Fitted, fit, shuffled_batches, train_and_held_out
from .losses import multilabel_bce, ranking_loss
from .text import FrozenTextEncoder, LabelPrompts, check_text_encoder


class CoOp(nn.Module):
    def __init__(
        self,
        clip_model,
        names: list[str],
        n_ctx: int = 16,
        class_specific: bool = False,
        generator: torch.Generator | None = None,
        ctx_init: str | None = None,
    ):
        super().__init__()
        check_text_encoder(clip_model, "coop")
        self.prompts = LabelPrompts(FrozenTextEncoder(clip_model), names, n_ctx, class_specific, generator, ctx_init)
        self.register_buffer("logit_scale", clip_model.logit_scale.detach().float().exp())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(batch, dim) raw image features -> (batch, labels) logits."""
        return self.logit_scale * normalize(images.float()) @ self.prompts().T

    @torch.no_grad()
    def scores(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        text = self.prompts()
        return torch.cat([self.logit_scale * normalize(chunk.float()) @ text.T for chunk in images.split(batch_size)])


COOP_LOSS_FUNCTIONS = {"ranking": ranking_loss, "bce": multilabel_bce}


def train_coop(
    model: CoOp,
    images: torch.Tensor,
    targets: torch.Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    warmup_epochs: int = 1,
    on_epoch=None,
    checkpoint=None,
    fingerprint: str = "",
    loss: str = "ranking",
    loss_weight: float = 1.0,
    select_by=None,
) -> list[dict]:
    """Few-shot training on (n, dim) image features with (n, labels) 0/1 targets; `loss`: prompt.coop_loss."""
    device = model.logit_scale.device
    images, targets = images.to(device), targets.to(device).float()
    criterion = COOP_LOSS_FUNCTIONS[loss]

    def batches(epoch: int):
        return shuffled_batches(len(images), batch_size, seed, epoch)

    return fit(
        model,
        batches,
        lambda rows: loss_weight * criterion(model(images[rows]), targets[rows]),
        epochs,
        lr,
        warmup_epochs,
        on_epoch,
        checkpoint,
        fingerprint,
        select_by,
    )


def fit_coop(peer, prompt, dataset: str, labels, model, device, setup: dict, fitting: dict) -> Fitted:
    """Few-shot support images -> CoOp; scored on the evaluation split's global embeddings (the Plan's
    `peer.train_images` and `peer.test_images`; pipeline/prompt/train_and_score.py calls it through pipeline/peers.py)."""
    train_set, test_set = peer.train_images, peer.test_images
    support = labelled_images(dataset, labels, train_set.split, train_set.resolution, train_set.purpose)
    test = labelled_images(dataset, labels, test_set.split, test_set.resolution, test_set.purpose)
    method = CoOp(model, **setup).to(device)
    images, targets = torch.from_numpy(support.vectors), torch.from_numpy(support.targets)
    train, val = train_and_held_out(prompt.select, len(images), prompt.seed)
    select_by = (
        None
        if val is None
        else (lambda: mean_ap(method.scores(images[val].to(device)).cpu().double().numpy(), support.targets[val]))
    )
    history = train_coop(method, images[train], targets[train], **fitting, loss=prompt.coop_loss, select_by=select_by)
    scores = method.scores(torch.from_numpy(test.vectors).to(device))
    return Fitted(test.ids, scores, test.targets, len(train), history, {"ctx": method.prompts.context.ctx})
