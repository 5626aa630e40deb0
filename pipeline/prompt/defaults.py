"""The peers' own values, which a null `prompt.*` param takes: one home, read from each peer's code and configs
(docs/peers.md lists the sources). Torch-free, and inside pipeline/prompt/ so that it is a dep of the `prompt`
stage: an edit here reruns the peers (tests/test_stale_cache.py), while config.py only reads and checks."""

from __future__ import annotations

from typing import Any

# A null prompt.epochs / lr / batch_size / class_specific takes these. CoOp's epochs follow its few-shot scripts:
# 50 for 1 shot, 100 for 2 and 4, 200 for 8 and 16 (configs rn50_ep50, rn50_ep100, rn50).
PEER_DEFAULTS: dict[str, dict[str, Any]] = {
    "coop": {"epochs": 200, "lr": 0.002, "batch_size": 32, "class_specific": False},
    "dualcoop": {"epochs": 50, "lr": 0.001, "batch_size": 32, "class_specific": True},
    "taidpt": {"epochs": 20, "lr": 1e-4, "batch_size": 512, "class_specific": False},
}
COOP_EPOCHS_BY_SHOTS = {1: 50, 2: 100, 4: 100, 8: 200, 16: 200}
# prompt.loss_weight: null takes these. DualCoOp multiplies its summed asymmetric loss by --loss_w
# (utils/trainers.py: loss = args.loss_w * criterion(output, target)); its README's partial-label example
# (COCO, 50% known, lr 0.002) runs --loss_w 0.03 (opts.py's argparse default, 1.0, is not what its
# authors ran), and TaI-DPT's DualCoOp reproduction divides the sum by the batch size (1/32, about 0.03).
PEER_LOSS_WEIGHTS = {"coop": 1.0, "dualcoop": 0.03, "taidpt": 1.0}
# Where a peer's own config differs by dataset (prepare.dataset): DualCoOp's README, lr 0.002 for COCO;
# TaI-DPT's configs/trainers/Caption_distill_double/rn50_nuswide.yaml, lr 0.001 and an image softmax
# scale of 4 (spatial_SCALE_image; 40 for VOC and COCO).
PEER_DATASET_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("dualcoop", "coco2014"): {"lr": 0.002},
    ("taidpt", "nuswide"): {"lr": 0.001, "image_spatial_scale": 4.0},
}
# prompt.select: val holds this share of the method's own training set out (seeded by prompt.seed), never test.
PROMPT_VAL_FRACTION = 0.2


def resolved(method: str, *, epochs: int | None, lr: float | None, batch_size: int | None,
             class_specific: bool | None, shots: int = 0, dataset: str = "voc2007") -> dict[str, Any]:
    """epochs, lr, batch_size and class_specific with nulls replaced by the method's own values (for the dataset
    and, CoOp, the shots)."""
    own = {**PEER_DEFAULTS.get(method, {}), **PEER_DATASET_DEFAULTS.get((method, dataset), {})}
    if method == "coop" and shots in COOP_EPOCHS_BY_SHOTS:
        own["epochs"] = COOP_EPOCHS_BY_SHOTS[shots]
    mine = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "class_specific": class_specific}
    return {name: own.get(name) if value is None else value for name, value in mine.items()}


def resolved_loss_weight(method: str, loss_weight: float | None) -> float:
    """prompt.loss_weight, null replaced by the method's own (PEER_LOSS_WEIGHTS)."""
    return PEER_LOSS_WEIGHTS.get(method, 1.0) if loss_weight is None else loss_weight


def image_spatial_scale(method: str, dataset: str) -> float | None:
    """TaI-DPT's test-time softmax scale over image locations for `dataset` (no param: its configs' value)."""
    return PEER_DATASET_DEFAULTS.get((method, dataset), {}).get("image_spatial_scale")
