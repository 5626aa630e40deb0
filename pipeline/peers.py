"""The peers (`prompt.method`), one small spec each: the setting a peer needs, what it reads, and its own
values, which a null `prompt.*` param takes (read from each peer's code and configs; docs/peers.md lists the
sources). open_clip's pattern: `pipeline.settings.plan` chooses the spec once, and the prompt stage runs its
`fit` function without asking which peer it is.

Torch-free, so that config.py checks `prompt.method` against these names and every stage can read the Plan
without loading torch; a dep of the stages that read the Plan, so an edit here reruns them
(tests/test_stale_cache.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PeerSpec:
    name: str
    needs: str | None = None          # the setting it trains in (pipeline.settings.SETTINGS); None: any with images
    trains_on: str = ""               # what it learns from: support images, partially labelled images, texts
    resolution: str = "image"         # encode.image_resolution ("image") or encode.partial_resolution ("partial")
    features: tuple[str, ...] = ()    # whose global image features it reads: "train" (its training split), "test"
    dense: tuple[str, ...] = ()       # whose per-location features it reads (pipeline.dense), the same way
    defaults: dict[str, Any] = field(default_factory=dict)   # epochs, lr, batch_size, class_specific
    loss_weight: float = 1.0          # a null prompt.loss_weight takes this
    by_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)   # prepare.dataset -> its own values there
    epochs_by_shots: dict[int, int] = field(default_factory=dict)          # fewshot.shots -> its own epochs
    fit: str | None = None            # "module:function" the prompt stage runs (torch, imported there only);
                                      # None: no peer, the prompt stage writes empty tables


PEERS: dict[str, PeerSpec] = {spec.name: spec for spec in (
    PeerSpec("none"),
    # CoOp's epochs follow its few-shot scripts: 50 for 1 shot, 100 for 2 and 4, 200 for 8 and 16
    # (configs rn50_ep50, rn50_ep100, rn50).
    PeerSpec("coop", needs="few-shot", trains_on="support images", features=("train", "test"),
             defaults={"epochs": 200, "lr": 0.002, "batch_size": 32, "class_specific": False},
             epochs_by_shots={1: 50, 2: 100, 4: 100, 8: 200, 16: 200},
             fit="pipeline.prompt.coop:fit_coop"),
    # DualCoOp multiplies its summed asymmetric loss by --loss_w (utils/trainers.py: loss = args.loss_w *
    # criterion(output, target)); its README's partial-label example (COCO, 50% known, lr 0.002) runs --loss_w
    # 0.03 (opts.py's argparse default, 1.0, is not what its authors ran), and TaI-DPT's DualCoOp reproduction
    # divides the sum by the batch size (1/32, about 0.03). Its README: lr 0.002 for COCO.
    PeerSpec("dualcoop", needs="partial labels", trains_on="partially labelled images", resolution="partial",
             dense=("train", "test"),
             defaults={"epochs": 50, "lr": 0.001, "batch_size": 32, "class_specific": True}, loss_weight=0.03,
             by_dataset={"coco2014": {"lr": 0.002}},
             fit="pipeline.prompt.dualcoop:fit_dualcoop"),
    # TaI-DPT's configs/trainers/Caption_distill_double/rn50_nuswide.yaml: lr 0.001 and an image softmax scale
    # of 4 (spatial_SCALE_image; 40 for VOC and COCO, pipeline/prompt/taidpt.py).
    PeerSpec("taidpt", trains_on="texts", features=("test",), dense=("test",),
             defaults={"epochs": 20, "lr": 1e-4, "batch_size": 512, "class_specific": False},
             by_dataset={"nuswide": {"lr": 0.001, "image_spatial_scale": 4.0}},
             fit="pipeline.prompt.taidpt:fit_taidpt"),
)}


def hyperparameters(spec: PeerSpec, *, epochs: int | None, lr: float | None, batch_size: int | None,
                    class_specific: bool | None, loss_weight: float | None, shots: int = 0,
                    dataset: str = "voc2007") -> dict[str, Any]:
    """epochs, lr, batch_size, class_specific and loss_weight with nulls replaced by the peer's own values (for
    the dataset and, CoOp, the shots), plus its other per-dataset values (TaI-DPT's image_spatial_scale)."""
    own = {**spec.defaults, "loss_weight": spec.loss_weight, **spec.by_dataset.get(dataset, {})}
    if shots in spec.epochs_by_shots:
        own["epochs"] = spec.epochs_by_shots[shots]
    mine = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "class_specific": class_specific,
            "loss_weight": loss_weight}
    resolved = {name: own.get(name) if value is None else value for name, value in mine.items()}
    return {**resolved, **{name: value for name, value in own.items() if name not in resolved}}
