"""The peers' own values (`prompt.method`), which a null `prompt.*` param takes: read from each peer's code and
configs (docs/peers.md lists the sources). Apart from the PEERS table (pipeline/peers.py) on purpose: only the
prompt stage imports this module, so an edit to a peer's default reruns `prompt` and nothing else, while every
stage that reads the Plan depends on the table (tests/test_stale_cache.py, tests/test_narrow_deps.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PeerValues:
    defaults: dict[str, Any] = field(default_factory=dict)  # epochs, lr, batch_size, class_specific
    loss_weight: float = 1.0  # a null prompt.loss_weight takes this
    by_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)  # prepare.dataset -> its own values there
    epochs_by_shots: dict[int, int] = field(default_factory=dict)  # fewshot.shots -> its own epochs


PEER_VALUES: dict[str, PeerValues] = {
    "none": PeerValues(),
    # CoOp's epochs follow its few-shot scripts: 50 for 1 shot, 100 for 2 and 4, 200 for 8 and 16
    # (configs rn50_ep50, rn50_ep100, rn50).
    "coop": PeerValues(
        defaults={"epochs": 200, "lr": 0.002, "batch_size": 32, "class_specific": False},
        epochs_by_shots={1: 50, 2: 100, 4: 100, 8: 200, 16: 200},
    ),
    # DualCoOp multiplies its summed asymmetric loss by --loss_w (utils/trainers.py: loss = args.loss_w *
    # criterion(output, target)); its README's partial-label example (COCO, 50% known, lr 0.002) runs --loss_w
    # 0.03 (opts.py's argparse default, 1.0, is not what its authors ran), and TaI-DPT's DualCoOp reproduction
    # divides the sum by the batch size (1/32, about 0.03). Its README: lr 0.002 for COCO.
    "dualcoop": PeerValues(
        defaults={"epochs": 50, "lr": 0.001, "batch_size": 32, "class_specific": True},
        loss_weight=0.03,
        by_dataset={"coco2014": {"lr": 0.002}},
    ),
    # TaI-DPT's configs/trainers/Caption_distill_double/rn50_nuswide.yaml: lr 0.001 and an image softmax scale
    # of 4 (spatial_SCALE_image; 40 for VOC and COCO, pipeline/prompt/taidpt.py).
    "taidpt": PeerValues(
        defaults={"epochs": 20, "lr": 1e-4, "batch_size": 512, "class_specific": False},
        by_dataset={"nuswide": {"lr": 0.001, "image_spatial_scale": 4.0}},
    ),
}


# The values a prompt.* param can set (null: the peer's own); a peer's other own values (TaI-DPT's
# image_spatial_scale for NUS-WIDE) go to its method's constructor (pipeline.prompt.train_and_score).
PARAM_KEYS = ("epochs", "lr", "batch_size", "class_specific", "loss_weight")


def own_values(peer: str, dataset: str = "voc2007", shots: int = 0) -> dict[str, Any]:
    """The peer's own values for the dataset and, CoOp, the shots: epochs, lr, batch_size, class_specific,
    loss_weight and its other per-dataset values (TaI-DPT's image_spatial_scale)."""
    values = PEER_VALUES[peer]
    own = {**values.defaults, "loss_weight": values.loss_weight, **values.by_dataset.get(dataset, {})}
    if shots in values.epochs_by_shots:
        own["epochs"] = values.epochs_by_shots[shots]
    return own


def hyperparameters(
    peer: str,
    *,
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    class_specific: bool | None,
    loss_weight: float | None,
    shots: int = 0,
    dataset: str = "voc2007",
) -> dict[str, Any]:
    """epochs, lr, batch_size, class_specific and loss_weight with nulls replaced by the peer's own values,
    plus its other per-dataset values."""
    own = own_values(peer, dataset, shots)
    mine = dict(zip(PARAM_KEYS, (epochs, lr, batch_size, class_specific, loss_weight), strict=True))
    resolved = {name: own.get(name) if value is None else value for name, value in mine.items()}
    return {**resolved, **{name: value for name, value in own.items() if name not in resolved}}


def resolved(peer: str, params) -> dict[str, Any]:
    """`peer`'s values (the Plan's `peer.name`: the Plan looks prompt.method up, once) with the nulls of
    params.prompt resolved for params' dataset and shots."""
    prompt = params.prompt
    return hyperparameters(
        peer,
        epochs=prompt.epochs,
        lr=prompt.lr,
        batch_size=prompt.batch_size,
        class_specific=prompt.class_specific,
        loss_weight=prompt.loss_weight,
        shots=params.fewshot.shots,
        dataset=params.prepare.dataset,
    )
