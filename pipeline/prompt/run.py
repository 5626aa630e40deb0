"""One prompt method end to end on the project's artifacts: read what it learns from, train, score the
evaluation split. The stage (`stages/prompt.py`) only writes what this returns."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .. import paths
from ..config import Params
from ..dense import DENSE_METHODS, DenseFeatures, check_dense_model, dense_dir, grid_of, positional_term
from ..encoders import load_clip
from ..labelled_images import labelled_images
from ..labels import LabelSet
from ..manifest import read_split
from ..metrics import known_mean_ap, mean_ap
from ..partial import MASK_PATH, mask_arrays
from ..texts import read_texts
from . import defaults
from .coop import CoOp, train_coop
from .dualcoop import DualCoOp, train_dualcoop
from .fit import PromptDiverged, held_out
from .taidpt import IMAGE_SPATIAL_SCALE, TaIDPT, TextTokens, train_taidpt
from .templates import TEMPLATES_PER_LABEL, with_templates

log = logging.getLogger(__name__)


@dataclass
class PromptResult:
    ids: list[str]                      # the evaluation split's scored images
    scores: np.ndarray                  # (images, labels): what evaluate.integrate_with: prompt averages
    targets: np.ndarray
    history: list[dict]                 # per epoch: epoch, loss, lr, seconds
    context: dict[str, torch.Tensor]    # the learned context vectors by name
    summary: dict = field(default_factory=dict)
    checkpoint: Path | None = None      # the per-epoch checkpoint: the stage removes it once its outputs are written


def _targets(params: Params, labels: LabelSet, split: str, ids: list[str]) -> np.ndarray:
    manifest = read_split(params.prepare.dataset, split).select("image_id", "labels")
    aligned = pl.DataFrame({"image_id": ids}).join(manifest, on="image_id", how="left", maintain_order="left")
    return labels.multi_hot(aligned["labels"].to_list())


def _dense(split: str, resolution: int) -> DenseFeatures:
    directory = dense_dir(split, resolution)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no dense features for {split} at {resolution} px; run `dvc repro encode_dense_images`")
    return DenseFeatures(directory)


# What the prompt stage reads (its dvc.yaml data deps): a checkpoint is resumed only while they are unchanged.
TRAINING_INPUTS = (paths.PREPARED, paths.TEXTS, paths.FEWSHOT_SUPPORT, paths.PARTIAL_MASK, paths.EVAL_EMBEDDINGS,
                   paths.SUPPORT_EMBEDDINGS, paths.DENSE_EMBEDDINGS)


def _fingerprint(params: Params, labels: LabelSet, hp: dict, clip_identity: str) -> str:
    """What a resumable checkpoint must match: the method and its values, the labels, the CLIP, and every
    input file's path, size and modification time (hashing tens of GB of dense features would cost more
    than the epochs it saves; a file rewritten with the same bytes just restarts training)."""
    digest = hashlib.sha256(json.dumps({"prompt": dataclasses.asdict(params.prompt), "resolved": hp,
                                        "labels": list(labels.names), "clip": clip_identity}, sort_keys=True).encode())
    for root in TRAINING_INPUTS:
        for file in sorted(Path(root).rglob("*")) if Path(root).is_dir() else [Path(root)]:
            if file.is_file():
                stat = file.stat()
                digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def resolved_hyperparameters(params: Params) -> dict:
    """prompt.epochs, lr, batch_size and class_specific, nulls replaced by the method's own values for this
    dataset and shot count (pipeline/prompt/defaults.py)."""
    p = params.prompt
    return defaults.resolved(p.method, epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                             class_specific=p.class_specific, shots=params.fewshot.shots, dataset=params.prepare.dataset)


def run_prompt_method(params: Params, labels: LabelSet) -> PromptResult:
    p = params.prompt
    hp = resolved_hyperparameters(params)
    encoder = load_clip(params.encode.model, p.device)   # float32 on every device: the contexts train in it
    model = encoder.model
    if p.method in DENSE_METHODS:
        check_dense_model(model, p.method)
    log.info("%s: %s", p.method, ", ".join(f"{k} {v}" for k, v in hp.items()))
    setup = {"names": list(labels.names), "n_ctx": p.n_ctx, "class_specific": hp["class_specific"],
             "generator": torch.Generator().manual_seed(p.seed), "ctx_init": p.ctx_init}
    fitting = {"epochs": hp["epochs"], "lr": hp["lr"], "batch_size": hp["batch_size"], "seed": p.seed,
               "fingerprint": _fingerprint(params, labels, hp, encoder.identity),
               "loss_weight": defaults.resolved_loss_weight(p.method, p.loss_weight)}
    fitting["checkpoint"] = paths.prompt_checkpoint(fitting["fingerprint"])   # per-user cache; see stages/prompt.py
    runner = {"coop": _coop, "dualcoop": _dualcoop, "taidpt": _taidpt}[p.method]
    ids, scores, targets, n_train, history, context = runner(params, labels, model, encoder.device, setup, fitting)
    scores = scores.detach().cpu().double().numpy()
    if not np.isfinite(scores).all():
        raise PromptDiverged(f"prompt.method {p.method!r} produced non-finite scores: lower prompt.lr and rerun")
    summary = {"n_train": n_train, "epochs": hp["epochs"], "lr": hp["lr"], "batch_size": hp["batch_size"],
               "class_specific": int(hp["class_specific"]), "n_ctx": p.n_ctx,
               "loss_weight": fitting["loss_weight"],
               "n_template_texts": len(labels) * TEMPLATES_PER_LABEL if p.method == "taidpt" and p.taidpt_templates else 0,
               "selected_epoch": _selected_epoch(history),
               "final_loss": history[-1]["loss"], "seconds_per_epoch": float(np.mean([h["seconds"] for h in history]))}
    return PromptResult(ids, scores, targets, history, {k: v.detach().cpu() for k, v in context.items()}, summary,
                        fitting["checkpoint"])


def _selected_epoch(history: list[dict]) -> int:
    """The epoch whose prompts scored the test split: the best held-out mAP (prompt.select val) or the last."""
    if history and "val_map" in history[0]:
        return int(max(history, key=lambda row: row["val_map"])["epoch"])
    return int(history[-1]["epoch"])


def _split(params: Params, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows trained on, held-out rows or None): prompt.select val holds out a seeded slice of the
    method's own training set (never the test split)."""
    if params.prompt.select != "val":
        return np.arange(n), None
    train, val = held_out(n, params.prompt.seed, defaults.PROMPT_VAL_FRACTION)
    log.info("prompt.select val: %d of %d training rows held out to pick the epoch", len(val), n)
    return train.numpy(), val.numpy()


def _coop(params: Params, labels: LabelSet, model, device, setup: dict, fitting: dict):
    """Few-shot support images -> CoOp; scored on the evaluation split's global embeddings."""
    support = labelled_images(params.prepare.dataset, labels, params.fewshot.split, params.encode.image_resolution, "support")
    test = labelled_images(params.prepare.dataset, labels, params.evaluate.split, params.encode.image_resolution, "eval")
    method = CoOp(model, **setup).to(device)
    images, targets = torch.from_numpy(support.vectors), torch.from_numpy(support.targets)
    train, val = _split(params, len(images))
    select_by = None if val is None else (
        lambda: mean_ap(method.scores(images[val].to(device)).cpu().double().numpy(), support.targets[val]))
    history = train_coop(method, images[train], targets[train], **fitting, loss=params.prompt.coop_loss,
                         select_by=select_by)
    scores = method.scores(torch.from_numpy(test.vectors).to(device))
    return test.ids, scores, test.targets, len(train), history, {"ctx": method.prompts.context.ctx}


def _dualcoop(params: Params, labels: LabelSet, model, device, setup: dict, fitting: dict):
    """The partially labelled split's dense features and known entries -> DualCoOp; scored on the
    evaluation split's dense features, both at encode.partial_resolution."""
    resolution = params.encode.partial_resolution
    train, test = _dense(params.partial.split, resolution), _dense(params.evaluate.split, resolution)
    targets, known = mask_arrays(pl.read_parquet(MASK_PATH), labels, train.ids)
    attnpool = model.visual.attnpool
    positional = positional_term(attnpool, attnpool.positional_embedding, grid_of(train.locations))
    method = DualCoOp(model, positional=positional, **setup).to(device)
    rows, val = _split(params, len(train.ids))
    select_by = None if val is None else (lambda: known_mean_ap(
        method.scores(lambda r: train.take(val[r.numpy()]), len(val)).cpu().double().numpy(), targets[val], known[val]))
    history = train_dualcoop(method, lambda r: train.take(rows[np.asarray(r)]), torch.from_numpy(targets[rows]),
                             torch.from_numpy(known[rows]), **fitting, select_by=select_by)
    scores = method.scores(test.take, len(test.ids))   # Delta = positive - negative logit
    context = {"positive": method.positive.context.ctx, "negative": method.negative.context.ctx}
    return test.ids, scores, _targets(params, labels, params.evaluate.split, test.ids), len(rows), history, context


def _taidpt(params: Params, labels: LabelSet, model, device, setup: dict, fitting: dict):
    """The generated texts -> TaI-DPT; scored on the evaluation split's global and dense features."""
    texts = read_texts(labels)
    sentences, targets = texts["text"].to_list(), labels.multi_hot(texts["labels"].to_list())
    if params.prompt.taidpt_templates:   # TaI-DPT's own training set adds its template sentences
        sentences, targets = with_templates(sentences, targets, list(labels.names))
    scale = defaults.image_spatial_scale(params.prompt.method, params.prepare.dataset) or IMAGE_SPATIAL_SCALE
    method = TaIDPT(model, **setup, image_spatial_scale=scale).to(device)
    tokens = TextTokens.encode(method.encoder, sentences)
    rows, val = _split(params, len(tokens))
    select_by = None if val is None else (lambda: mean_ap(
        method.text_scores(tokens, torch.from_numpy(val)).cpu().double().numpy(), targets[val]))
    history = train_taidpt(method, tokens, torch.from_numpy(targets), **fitting, rows=torch.from_numpy(rows),
                           select_by=select_by)
    test = labelled_images(params.prepare.dataset, labels, params.evaluate.split, params.encode.image_resolution, "eval")
    dense = _dense(params.evaluate.split, params.encode.image_resolution)
    row_of = {image_id: row for row, image_id in enumerate(dense.ids)}
    lacking = [i for i in test.ids if i not in row_of]
    if lacking:
        raise FileNotFoundError(f"{len(lacking)} evaluation image(s) have no dense features, e.g. {lacking[:3]}: "
                                "run `dvc repro encode_dense_images`")
    dense_rows = np.array([row_of[i] for i in test.ids])
    scores = method.scores(torch.from_numpy(test.vectors), lambda rows: dense.take(dense_rows[rows.numpy()]))
    context = {"global": method.global_prompts.context.ctx, "local": method.local_prompts.context.ctx}
    return test.ids, scores, test.targets, len(rows), history, context
