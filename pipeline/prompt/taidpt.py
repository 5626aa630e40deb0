"""TaI-DPT (Guo et al., CVPR 2023; guozix/TaI-DPT `trainers/Caption_distill_double.py`): double-grained
prompts trained on texts, applied to images.

Two learnable contexts, a global and a local one (16 vectors each, shared by the labels), before
every label name. Training takes texts as images:
- global: 4 x cosine between the text's CLIP feature (its end token) and each label's global prompt
  (TaI-DPT fixes the scale at 4.0: TRAIN.IF_LEARN_SCALE False);
- local: the text's token-level features (every token through ln_final and the text projection,
  padding masked out) against each label's local prompt; per label, softmax over tokens of
  50 x cosine (spatial_SCALE_text) weights the cosines, and the logit is 4 x the weighted sum.
The loss is the ranking loss on each (TaI-DPT's "double_ranking", scale 1, margin 1).
At test the local prompt meets the image's dense features instead (H x W locations through v_proj and
c_proj, no positional embedding; `pipeline.encoding.dense`), with softmax scale 40 (spatial_SCALE_image of the
VOC and COCO configs; 4 for NUS-WIDE), and the score is 0.5 x global + 0.5 x local
(TEST.EVALUATOR_ACT default_merge_aux, GL_merge_rate 0.5).

The training set is the generate stage's texts plus, as TaI-DPT's `*_distill.py` datasets add them,
per label 9 x "a photo of a {}." and the 80 ImageNet templates as single-label texts (`templates`;
prompt.taidpt_templates, on by default: leaving them out weakens the peer).

Our readings: the texts are the generate stage's (TaI-DPT uses COCO captions and OpenImages
narratives) with their `labels` column as targets (TaI-DPT finds label names and synonyms in the
captions); the global image feature is CLIP's own image embedding (the cached eval embeddings, with
the attention pool's positional embedding; TaI-DPT's global test branch drops it); token features are
computed once before training and kept in float16 (the text encoder is frozen and texts are not
augmented, so every epoch would compute the same numbers).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.data.labelled_images import labelled_images
from pipeline.data.texts import read_texts
from pipeline.encoding.dense import read_dense
from pipeline.encoding.openai_clip import tokenize
from pipeline.encoding.vectors import normalize
from pipeline.evaluation.metrics import mean_ap

from .fit import Fitted, fit, shuffled_batches, train_and_held_out
from .losses import ranking_loss
from .templates import TEMPLATES_PER_LABEL, with_templates
from .text import FrozenTextEncoder, LabelPrompts, check_text_encoder

LOGIT_SCALE = 4.0  # TaI-DPT: logit_scale = 4.0 unless TRAIN.IF_LEARN_SCALE
TEXT_SPATIAL_SCALE = 50.0  # TRAIN.spatial_SCALE_text
IMAGE_SPATIAL_SCALE = 40.0  # TRAIN.spatial_SCALE_image (VOC, COCO configs)
GLOBAL_WEIGHT = 0.5  # TRAINER.Caption.GL_merge_rate


def pooled(similarity: torch.Tensor, mask: torch.Tensor | None, spatial_scale: float) -> torch.Tensor:
    """(batch, L, labels) cosines -> (batch, labels): softmax(scale x s) over the L positions weights s."""
    logits = spatial_scale * similarity
    if mask is not None:
        logits = logits.masked_fill(~mask[:, :, None], float("-inf"))
        similarity = similarity.masked_fill(~mask[:, :, None], 0.0)
    return LOGIT_SCALE * (similarity * logits.softmax(dim=1)).sum(dim=1)


class TextTokens:
    """Texts as TaI-DPT's images: each text's feature at its end token (`global_features`, (n, dim)) and
    its token-level features from the start to the end token (ragged, float16)."""

    def __init__(self, global_features: torch.Tensor, token_rows: list[torch.Tensor]):
        self.global_features = global_features.float()
        self._rows = [row.half() for row in token_rows]
        self.lengths = torch.tensor([len(row) for row in token_rows], dtype=torch.long)

    @classmethod
    @torch.no_grad()
    def encode(cls, encoder: FrozenTextEncoder, texts: list[str], batch_size: int = 256) -> "TextTokens":
        """Through the frozen text encoder once, each batch run up to its longest text (exact: causal mask)."""
        device = encoder.text_projection.device
        rows, globals_ = [], []
        for start in range(0, len(texts), batch_size):
            tokens = tokenize(texts[start : start + batch_size])
            end = tokens.argmax(dim=-1)  # the end token has the largest id
            x = encoder.sequence(tokens[:, : int(end.max()) + 1].to(device)).cpu()
            globals_.append(x[torch.arange(len(x)), end])
            rows += [x[i, : e + 1] for i, e in enumerate(end.tolist())]
        dim = encoder.text_projection.shape[1]
        return cls(torch.cat(globals_) if globals_ else torch.zeros(0, dim), rows)

    def __len__(self) -> int:
        return len(self._rows)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(global (b, dim), tokens (b, L, dim) zero-padded, mask (b, L)) of the given texts."""
        rows = rows.tolist()
        length = max(int(self.lengths[r]) for r in rows)
        dim = self.global_features.shape[1]
        tokens = torch.zeros(len(rows), length, dim)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            n = int(self.lengths[r])
            tokens[i, :n] = self._rows[r].float()
            mask[i, :n] = True
        return self.global_features[rows], tokens, mask


class TaIDPT(nn.Module):
    def __init__(
        self,
        clip_model,
        names: list[str],
        n_ctx: int = 16,
        class_specific: bool = False,
        generator: torch.Generator | None = None,
        image_spatial_scale: float = IMAGE_SPATIAL_SCALE,
        ctx_init: str | None = None,
    ):
        super().__init__()
        check_text_encoder(clip_model, "taidpt")
        self.encoder = FrozenTextEncoder(clip_model)
        self.global_prompts = LabelPrompts(self.encoder, names, n_ctx, class_specific, generator, ctx_init)
        self.local_prompts = LabelPrompts(self.encoder, names, n_ctx, class_specific, generator, ctx_init)
        self.image_spatial_scale = image_spatial_scale

    @property
    def device(self) -> torch.device:
        return self.encoder.text_projection.device

    def text_logits(self, global_features, tokens, mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (global, local) logits (batch, labels) of texts."""
        g = LOGIT_SCALE * normalize(global_features.float()) @ self.global_prompts().T
        local = pooled(normalize(tokens.float()) @ self.local_prompts().T, mask, TEXT_SPATIAL_SCALE)
        return g, local

    def loss(self, global_features, tokens, mask, targets) -> torch.Tensor:
        g, local = self.text_logits(global_features, tokens, mask)
        return ranking_loss(g, targets) + ranking_loss(local, targets)

    @torch.no_grad()
    def image_logits(self, images: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Test: (global, local) logits of images from their global (batch, dim) and dense (batch, L, dim)
        features."""
        g = LOGIT_SCALE * normalize(images.float()) @ self.global_prompts().T
        local = pooled(normalize(dense.float()) @ self.local_prompts().T, None, self.image_spatial_scale)
        return g, local

    @torch.no_grad()
    def scores(self, images: torch.Tensor, dense_rows, batch_size: int = 64) -> torch.Tensor:
        out = []
        for rows in torch.arange(len(images)).split(batch_size):
            g, local = self.image_logits(images[rows].to(self.device), dense_rows(rows).to(self.device))
            out.append(GLOBAL_WEIGHT * g + (1 - GLOBAL_WEIGHT) * local)
        return torch.cat(out) if out else torch.zeros(0, len(self.global_prompts.context.end))

    @torch.no_grad()
    def text_scores(self, texts: TextTokens, rows: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Texts scored as images are at test (0.5 x global + 0.5 x local): prompt.select val's held-out texts."""
        out = []
        for chunk in rows.split(batch_size):
            g, local = self.text_logits(*(t.to(self.device) for t in texts.batch(chunk)))
            out.append(GLOBAL_WEIGHT * g + (1 - GLOBAL_WEIGHT) * local)
        return torch.cat(out) if out else torch.zeros(0, len(self.global_prompts.context.end))


def train_taidpt(
    model: TaIDPT,
    texts: TextTokens,
    targets: torch.Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
    warmup_epochs: int = 1,
    on_epoch=None,
    checkpoint=None,
    fingerprint: str = "",
    loss_weight: float = 1.0,
    rows: torch.Tensor | None = None,
    select_by=None,
) -> list[dict]:
    """`rows`: the texts trained on (all by default; prompt.select val holds some out)."""
    device = model.device
    targets = targets.float()
    rows = torch.arange(len(texts)) if rows is None else rows

    def loss_of(batch):
        g, tokens, mask = texts.batch(rows[batch])
        return loss_weight * model.loss(
            g.to(device), tokens.to(device), mask.to(device), targets[rows[batch]].to(device)
        )

    return fit(
        model,
        lambda epoch: shuffled_batches(len(rows), batch_size, seed, epoch),
        loss_of,
        epochs,
        lr,
        warmup_epochs,
        on_epoch,
        checkpoint,
        fingerprint,
        select_by,
    )


def fit_taidpt(peer, prompt, dataset: str, labels, model, device, setup: dict, fitting: dict) -> Fitted:
    """The generated texts -> TaI-DPT; scored on the evaluation split's global and dense features (the Plan's
    `peer.test_images` and `peer.test_dense`, at encode.image_resolution)."""
    texts = read_texts(labels)
    sentences, targets = texts["text"].to_list(), labels.multi_hot(texts["labels"].to_list())
    if prompt.taidpt_templates:  # TaI-DPT's own training set adds its template sentences
        sentences, targets = with_templates(sentences, targets, list(labels.names))
    method = TaIDPT(model, **setup).to(device)  # setup holds image_spatial_scale where the dataset has its own
    tokens = TextTokens.encode(method.encoder, sentences)
    rows, val = train_and_held_out(prompt.select, len(tokens), prompt.seed)
    select_by = (
        None
        if val is None
        else (lambda: mean_ap(method.text_scores(tokens, torch.from_numpy(val)).cpu().double().numpy(), targets[val]))
    )
    history = train_taidpt(
        method, tokens, torch.from_numpy(targets), **fitting, rows=torch.from_numpy(rows), select_by=select_by
    )
    test_set = peer.test_images
    test = labelled_images(dataset, labels, test_set.split, test_set.resolution, test_set.purpose)
    dense = read_dense(peer.test_dense.split, peer.test_dense.resolution)
    row_of = {image_id: row for row, image_id in enumerate(dense.ids)}
    lacking = [i for i in test.ids if i not in row_of]
    if lacking:
        raise FileNotFoundError(
            f"{len(lacking)} evaluation image(s) have no dense features, e.g. {lacking[:3]}: "
            "run `dvc repro encode_dense_images`"
        )
    dense_rows = np.array([row_of[i] for i in test.ids])
    scores = method.scores(torch.from_numpy(test.vectors), lambda rows: dense.take(dense_rows[rows.numpy()]))
    context = {"global": method.global_prompts.context.ctx, "local": method.local_prompts.context.ctx}
    n_templates = len(labels) * TEMPLATES_PER_LABEL if prompt.taidpt_templates else 0
    return Fitted(test.ids, scores, test.targets, len(rows), history, context, n_templates)
