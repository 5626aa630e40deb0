"""One prompt method end to end on the project's artifacts: read what it learns from, train, score the
evaluation split. The stage (`stages/prompt.py`) only writes what this returns."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from .. import paths
from ..artifacts import labelled_images, read_manifest
from ..config import Params
from ..dense import DenseFeatures, check_dense_model, dense_dir, grid_of, positional_term
from ..labels import LabelSet

log = logging.getLogger(__name__)


@dataclass
class PromptResult:
    ids: list[str]                      # the evaluation split's scored images
    scores: np.ndarray                  # (images, labels): what evaluate.integrate_with: prompt averages
    targets: np.ndarray
    history: list[dict]                 # per epoch: epoch, loss, lr, seconds
    context: dict[str, torch.Tensor]    # the learned context vectors by name
    summary: dict = field(default_factory=dict)


def _targets(params: Params, labels: LabelSet, split: str, ids: list[str]) -> np.ndarray:
    manifest = read_manifest(params, split).select("image_id", "labels")
    aligned = pl.DataFrame({"image_id": ids}).join(manifest, on="image_id", how="left", maintain_order="left")
    return labels.multi_hot(aligned["labels"].to_list())


def _dense(split: str, resolution: int) -> DenseFeatures:
    directory = dense_dir(split, resolution)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no dense features for {split} at {resolution} px; run `dvc repro encode_dense_images`")
    return DenseFeatures(directory)


def run_prompt_method(params: Params, labels: LabelSet) -> PromptResult:
    from ..clip_model import ClipEncoder

    p = params.prompt
    hp = p.resolved(params.fewshot.shots)
    encoder = ClipEncoder(params.encode.model, p.device)
    model = encoder.model.float()      # trained in float32 (clip.load gives float16 weights on CUDA)
    if p.method in ("dualcoop", "taidpt"):
        check_dense_model(model, p.method)
    generator = torch.Generator().manual_seed(p.seed)
    names = list(labels.names)
    log.info("%s: %s", p.method, ", ".join(f"{k} {v}" for k, v in hp.items()))
    common = {"epochs": hp["epochs"], "lr": hp["lr"], "batch_size": hp["batch_size"], "seed": p.seed}
    if p.method == "coop":
        from .coop import CoOp, train_coop

        support = labelled_images(params, labels, params.fewshot.split, params.encode.image_resolution, "support")
        test = labelled_images(params, labels, params.evaluate.split, params.encode.image_resolution, "eval")
        method = CoOp(model, names, p.n_ctx, hp["class_specific"], generator).to(encoder.device)
        history = train_coop(method, torch.from_numpy(support.vectors), torch.from_numpy(support.targets), **common)
        ids, targets, n_train = test.ids, test.targets, len(support.ids)
        scores = method.scores(torch.from_numpy(test.vectors).to(encoder.device))
        context = {"ctx": method.prompts.context.ctx}
    elif p.method == "dualcoop":
        from ..partial import MASK_PATH, mask_arrays
        from .dualcoop import DualCoOp, train_dualcoop

        resolution = params.encode.partial_resolution
        train, test = _dense(params.partial.split, resolution), _dense(params.evaluate.split, resolution)
        mask = pl.read_parquet(MASK_PATH)
        known_targets, known = mask_arrays(mask, labels, train.ids)
        visual = model.visual
        positional = positional_term(visual.attnpool, visual.attnpool.positional_embedding, grid_of(train.locations))
        method = DualCoOp(model, names, positional, p.n_ctx, hp["class_specific"], generator).to(encoder.device)
        history = train_dualcoop(method, train.take, torch.from_numpy(known_targets), torch.from_numpy(known), **common)
        ids, n_train = test.ids, len(train.ids)
        targets = _targets(params, labels, params.evaluate.split, ids)
        scores = method.scores(test.take, len(ids))
        context = {"positive": method.positive.context.ctx, "negative": method.negative.context.ctx}
    elif p.method == "taidpt":
        from .taidpt import TaIDPT, TextTokens, train_taidpt

        texts = pl.read_parquet(paths.TEXTS, columns=["text", "labels"])
        labels.check_known({l for ls in texts["labels"].to_list() for l in ls}, str(paths.TEXTS))
        method = TaIDPT(model, names, p.n_ctx, hp["class_specific"], generator).to(encoder.device)
        tokens = TextTokens.encode(method.encoder, texts["text"].to_list())
        text_targets = torch.from_numpy(labels.multi_hot(texts["labels"].to_list()))
        history = train_taidpt(method, tokens, text_targets, **common)
        test = labelled_images(params, labels, params.evaluate.split, params.encode.image_resolution, "eval")
        dense = _dense(params.evaluate.split, params.encode.image_resolution)
        row_of = {image_id: row for row, image_id in enumerate(dense.ids)}
        lacking = [i for i in test.ids if i not in row_of]
        if lacking:
            raise FileNotFoundError(f"{len(lacking)} evaluation image(s) have no dense features, e.g. {lacking[:3]}: "
                                    "run `dvc repro encode_dense_images`")
        dense_rows = np.array([row_of[i] for i in test.ids])
        scores = method.scores(torch.from_numpy(test.vectors), lambda rows: dense.take(dense_rows[rows.numpy()]))
        ids, targets, n_train = test.ids, test.targets, len(tokens)
        context = {"global": method.global_prompts.context.ctx, "local": method.local_prompts.context.ctx}
    else:
        raise ValueError(f"prompt.method {p.method!r} has no runner")
    scores = scores.detach().cpu().double().numpy()
    if not np.isfinite(scores).all():
        raise ValueError(f"prompt.method {p.method!r} produced non-finite scores: lower prompt.lr and rerun")
    summary = {"n_train": n_train, "epochs": hp["epochs"], "lr": hp["lr"], "batch_size": hp["batch_size"],
               "class_specific": int(hp["class_specific"]), "n_ctx": p.n_ctx,
               "final_loss": history[-1]["loss"], "seconds_per_epoch": float(np.mean([h["seconds"] for h in history]))}
    return PromptResult(ids, scores, targets, history, {k: v.detach().cpu() for k, v in context.items()}, summary)
