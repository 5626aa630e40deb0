"""One prompt method end to end on the project's artifacts: the Plan's peer (pipeline.settings) names the
function that reads what it learns from, trains and scores the evaluation split (`fit_<peer>` in its own
module); this loads CLIP, resolves nothing and never asks which peer it runs. The stage (`stages/prompt.py`)
only writes what this returns."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline import paths
from pipeline.config import Params
from pipeline.data.labels import LabelSet
from pipeline.encoding.dense import check_dense_model
from pipeline.encoding.load import load_clip
from pipeline.settings import Peer

# the peers' modules, loaded here: PEERS names their fit functions, and tests/code_deps.py sees their imports
from . import coop, dualcoop, taidpt  # noqa: F401
from .fit import PromptDiverged
from .values import PARAM_KEYS, resolved

log = logging.getLogger(__name__)


@dataclass
class PromptResult:
    ids: list[str]  # the evaluation split's scored images
    scores: np.ndarray  # (images, labels): what evaluate.integrate_with: prompt averages
    targets: np.ndarray
    history: list[dict]  # per epoch: epoch, loss, lr, seconds
    context: dict[str, torch.Tensor]  # the learned context vectors by name
    summary: dict = field(default_factory=dict)
    checkpoint: Path | None = None  # the per-epoch checkpoint: the stage removes it once its outputs are written


# What the prompt stage reads (its dvc.yaml data deps): a checkpoint is resumed only while they are unchanged.
TRAINING_INPUTS = (
    paths.PREPARED,
    paths.TEXTS,
    paths.FEWSHOT_SUPPORT,
    paths.PARTIAL_MASK,
    paths.EVAL_EMBEDDINGS,
    paths.SUPPORT_EMBEDDINGS,
    paths.DENSE_EMBEDDINGS,
)


def _fingerprint(params: Params, labels: LabelSet, hp: dict, clip_identity: str) -> str:
    """What a resumable checkpoint must match: the method and its values, the labels, the CLIP, and every
    input file's path, size and modification time (hashing tens of GB of dense features would cost more
    than the epochs it saves; a file rewritten with the same bytes just restarts training)."""
    digest = hashlib.sha256(
        json.dumps(
            {
                "prompt": dataclasses.asdict(params.prompt),
                "resolved": hp,
                "labels": list(labels.names),
                "clip": clip_identity,
            },
            sort_keys=True,
        ).encode()
    )
    for root in TRAINING_INPUTS:
        for file in sorted(Path(root).rglob("*")) if Path(root).is_dir() else [Path(root)]:
            if file.is_file():
                stat = file.stat()
                digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def run_prompt_method(params: Params, peer: Peer, labels: LabelSet) -> PromptResult:
    """`peer` is the Plan's (pipeline.settings): its spec names the function that trains and scores it."""
    prompt, hp = params.prompt, resolved(peer.name, params)
    encoder = load_clip(params.encode.model, prompt.device)  # float32 on every device: the contexts train in it
    model = encoder.model
    if peer.dense:
        check_dense_model(model, peer.name)
    log.info("%s: %s", peer.name, ", ".join(f"{k} {v}" for k, v in hp.items()))
    setup = {
        "names": list(labels.names),
        "n_ctx": prompt.n_ctx,
        "class_specific": hp["class_specific"],
        "generator": torch.Generator().manual_seed(prompt.seed),
        "ctx_init": prompt.ctx_init,
        **{name: value for name, value in hp.items() if name not in PARAM_KEYS},  # the peer's other own values
    }
    fitting = {
        "epochs": hp["epochs"],
        "lr": hp["lr"],
        "batch_size": hp["batch_size"],
        "seed": prompt.seed,
        "fingerprint": _fingerprint(params, labels, hp, encoder.identity),
        "loss_weight": hp["loss_weight"],
    }
    fitting["checkpoint"] = paths.prompt_checkpoint(fitting["fingerprint"])  # per-user cache; see stages/prompt.py
    module, function = peer.spec.fit.split(":")
    fit = getattr(importlib.import_module(module), function)
    fitted = fit(peer, prompt, params.prepare.dataset, labels, model, encoder.device, setup, fitting)
    scores = fitted.scores.detach().cpu().double().numpy()
    if not np.isfinite(scores).all():
        raise PromptDiverged(f"prompt.method {peer.name!r} produced non-finite scores: lower prompt.lr and rerun")
    history = fitted.history
    summary = {
        "n_train": fitted.n_train,
        "epochs": hp["epochs"],
        "lr": hp["lr"],
        "batch_size": hp["batch_size"],
        "class_specific": int(hp["class_specific"]),
        "n_ctx": prompt.n_ctx,
        "loss_weight": fitting["loss_weight"],
        "n_template_texts": fitted.n_template_texts,
        "selected_epoch": _selected_epoch(history),
        "final_loss": history[-1]["loss"],
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])),
    }
    return PromptResult(
        fitted.ids,
        scores,
        fitted.targets,
        history,
        {k: v.detach().cpu() for k, v in fitted.context.items()},
        summary,
        fitting["checkpoint"],
    )


def _selected_epoch(history: list[dict]) -> int:
    """The epoch whose prompts scored the test split: the best held-out mAP (prompt.select val) or the last."""
    if history and "val_map" in history[0]:
        return int(max(history, key=lambda row: row["val_map"])["epoch"])
    return int(history[-1]["epoch"])
