"""One run's decisions, made once from the params: `plan(params) -> Plan`.

config.py reads params.yaml and checks each key alone; everything that spans keys is decided here, and
nowhere else: the setting (zero-shot, few-shot, partial labels, labels only), the noise on each side, which
image sets each encode stage writes and which one each reader reads, the evaluation resolution, the dense
sets and the peer with the sets it reads (its values, nulls resolved for the dataset and shots, are the prompt
stage's alone: pipeline.prompt.values, so a peer default edit reruns only `prompt`). A combination that cannot work is a
ParamsError naming the keys and the fix; `pipeline.stage.run` makes the Plan before any stage does work.

Stages and library functions take the Plan's plain values, so a writer and its reader cannot disagree about
a set, and no module below re-derives a setting. Torch-free; a dep of every stage that reads it."""

from __future__ import annotations

from dataclasses import dataclass

from .config import OPEN_CLIP_PREFIX, Params, ParamsError
from .data.dataset_kinds import LABELS_ONLY_DATASETS
from .peers import PEERS, PeerSpec

ZERO_SHOT, FEW_SHOT, PARTIAL, LABELS_ONLY = "zero-shot", "few-shot", "partial labels", "labels only"
SETTINGS = (ZERO_SHOT, FEW_SHOT, PARTIAL, LABELS_ONLY)


@dataclass(frozen=True)
class Noise:
    radius: float
    kind: str  # pipeline.method.perturb's kinds


@dataclass(frozen=True)
class ImageSet:
    purpose: str  # which encode stage writes it: eval | support | partial (pipeline.paths.IMAGE_EMBEDDINGS)
    split: str
    resolution: int
    support_only: bool = False  # few-shot: only the images of artifacts/fewshot/support.parquet


@dataclass(frozen=True)
class DenseSet:
    split: str
    resolution: int


@dataclass(frozen=True)
class Peer:
    """prompt.method resolved: its spec and the sets it reads. Its values (nulls replaced by its own) are
    resolved by the prompt stage (pipeline.prompt.values.resolved): a default edit reruns `prompt` only."""

    spec: PeerSpec
    train_images: ImageSet | None  # CoOp: the support images (the Plan's training_images); None for the others
    test_images: ImageSet | None  # the evaluation split's global features at the peer's resolution
    train_dense: DenseSet | None  # DualCoOp: the partially labelled split
    test_dense: DenseSet | None  # DualCoOp, TaI-DPT: the evaluation split

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dense(self) -> tuple[DenseSet, ...]:
        return tuple(dict.fromkeys(s for s in (self.train_dense, self.test_dense) if s is not None))


@dataclass(frozen=True)
class Plan:
    setting: str  # one of SETTINGS
    text_noise: Noise  # train.radius, or partial.radius after the shift; train.noise
    text_shift: str | None  # partial.shift in the partial-label setting; None: texts stay in place
    image_noise: Noise | None  # the labelled images' noise; None: no image joins training
    image_weight: float  # share of each batch drawn from the images (0 with image_noise None)
    eval_resolution: int  # the adapter is evaluated (and stamped) at it
    zeroshot_images: ImageSet | None  # what the CLIP baseline scores; None: no images
    evaluation_images: ImageSet | None  # what evaluate scores
    training_images: ImageSet | None  # few-shot support; partially labelled split (centroids, and train when weighted)
    encode: dict[str, tuple[ImageSet, ...]]  # purpose -> the sets its encode stage writes
    peer: Peer
    off: dict[str, str]  # stage -> why it writes only its empty outputs in this run


def plan(params: Params) -> Plan:
    """The Plan of `params` (checked key by key by config.load_params); a ParamsError for keys that cannot
    work together, before any work."""
    setting = _setting(params)
    _check(params, setting)
    e = params.encode
    images = setting != LABELS_ONLY
    eval_resolution = e.partial_resolution if setting == PARTIAL else e.image_resolution
    zeroshot = ImageSet("eval", params.zeroshot.split, e.image_resolution) if images else None
    evaluation = ImageSet("eval", params.evaluate.split, eval_resolution) if images else None
    if setting == FEW_SHOT:
        f = params.fewshot
        training = ImageSet("support", f.split, e.image_resolution, support_only=True)
        text_noise, image_noise, weight = (
            Noise(params.train.radius, params.train.noise),
            Noise(f.radius, f.noise),
            f.image_weight,
        )
    elif setting == PARTIAL:
        partial = params.partial
        training = ImageSet("partial", partial.split, e.partial_resolution)
        text_noise = Noise(partial.radius, params.train.noise)
        image_noise, weight = (
            (Noise(partial.image_radius, partial.image_noise), partial.image_weight)
            if partial.image_weight > 0
            else (None, 0.0)
        )
    else:
        training, text_noise, image_noise, weight = None, Noise(params.train.radius, params.train.noise), None, 0.0
    scored = [zeroshot, ImageSet("eval", params.evaluate.split, e.image_resolution), evaluation] if images else []
    encode = {
        "eval": tuple(dict.fromkeys(scored)),
        "support": (training,) if setting == FEW_SHOT else (),
        "partial": (training,) if setting == PARTIAL else (),
    }
    peer = _peer(params, training)
    shift = params.partial.shift if setting == PARTIAL else None
    return Plan(
        setting,
        text_noise,
        shift,
        image_noise,
        weight,
        eval_resolution,
        zeroshot,
        evaluation,
        training,
        encode,
        peer,
        _off(params, setting, peer),
    )


def _setting(params: Params) -> str:
    if params.prepare.dataset in LABELS_ONLY_DATASETS:
        return LABELS_ONLY
    if params.fewshot.enabled:
        return FEW_SHOT
    return PARTIAL if params.partial.enabled else ZERO_SHOT


def _peer(params: Params, training: ImageSet | None) -> Peer:
    spec, e, test_split = PEERS[params.prompt.method], params.encode, params.evaluate.split
    if spec.fit is None:
        return Peer(spec, None, None, None, None)
    resolution = e.partial_resolution if spec.resolution == "partial" else e.image_resolution
    train_split = {FEW_SHOT: params.fewshot.split, PARTIAL: params.partial.split}.get(spec.needs)
    return Peer(
        spec,
        training if "train" in spec.features else None,
        ImageSet("eval", test_split, resolution) if "test" in spec.features else None,
        DenseSet(train_split, resolution) if "train" in spec.dense else None,
        DenseSet(test_split, resolution) if "test" in spec.dense else None,
    )


def _off(params: Params, setting: str, peer: Peer) -> dict[str, str]:
    """The stages that write only their empty outputs (tables, metrics, a placeholder picture), and why."""
    off = {}
    if setting == LABELS_ONLY:
        off = dict.fromkeys(("zeroshot", "evaluate"), "prepare.dataset is 'labels' (no images)")
    if setting != FEW_SHOT:
        off["fewshot"] = "fewshot.shots is 0 (zero-shot setting)"
    if setting != PARTIAL:
        off["mask"] = off["centroids"] = "partial.known_proportion is null (partial labels off)"
    if peer.spec.fit is None:
        off["prompt"] = "prompt.method is none"
    return off


def _check(params: Params, setting: str) -> None:
    """Keys that cannot work together: one ParamsError naming them and the fix."""
    if params.fewshot.enabled and params.partial.enabled:
        raise ParamsError(
            "fewshot.shots and partial.known_proportion are both set: the paper's settings are separate; "
            "set fewshot.shots to 0 or partial.known_proportion to null"
        )
    _check_peer(params, setting)
    if setting == LABELS_ONLY:
        for enabled, what in (
            (params.fewshot.enabled, "fewshot.shots"),
            (params.partial.enabled, "partial.known_proportion"),
        ):
            if enabled:
                raise ParamsError(
                    f"{what} is set but prepare.dataset is 'labels' (no images): few-shot and partial labels "
                    "need labelled images; turn the setting off (fewshot.shots: 0, partial.known_proportion: "
                    "null) or use a dataset with images"
                )
        return  # nothing is encoded or evaluated on images
    if setting == PARTIAL and params.encode.partial_resolution is None:
        raise ParamsError(
            "partial.known_proportion is set but encode.partial_resolution is null: set it (448 in the paper)"
        )
    needs = [(params.evaluate.split, "evaluate.split"), (params.zeroshot.split, "zeroshot.split")]
    if setting == FEW_SHOT:
        needs.append((params.fewshot.split, "fewshot.split"))
    if setting == PARTIAL:
        needs.append((params.partial.split, "partial.split"))
    for split, key in needs:
        if split not in params.prepare.splits:
            raise ParamsError(
                f"{key} = {split!r} is not in prepare.splits = {list(params.prepare.splits)}: add it there"
            )


# What each setting a peer may need is called in its refusal: the key that turns it on, and how.
SETTING_KEYS = {
    FEW_SHOT: ("fewshot.shots is 0", "set fewshot.shots (1, 2, 4, 8 or 16)"),
    PARTIAL: ("partial.known_proportion is null", "set partial.known_proportion (0.1 to 0.9 of the labels known)"),
}


def _check_peer(params: Params, setting: str) -> None:
    """A peer in a setting it cannot run in is refused, naming the fix."""
    spec = PEERS[params.prompt.method]
    if spec.fit is None:  # evaluate.integrate_with: prompt then writes null integrated_map (a grid over none,coop runs)
        return
    method = spec.name
    if setting == LABELS_ONLY:
        raise ParamsError(
            f"prompt.method = {method!r} but prepare.dataset is 'labels' (no images to score): set prompt.method "
            "to none, or use a dataset with images"
        )
    if params.encode.model.startswith(OPEN_CLIP_PREFIX):
        raise ParamsError(
            f"prompt.method = {method!r} learns prompts through an OpenAI CLIP's text encoder, as the peers do, but "
            f"encode.model is {params.encode.model!r}: set encode.model to an OpenAI CLIP (RN50 for the paper's "
            "tables), or prompt.method to none"
        )
    if spec.needs is not None and setting != spec.needs:
        off, fix = SETTING_KEYS[spec.needs]
        others = " or ".join(
            f"{p.name} ({p.needs or p.trains_on + ' only'})"
            for p in PEERS.values()
            if p.fit is not None and p.needs in (None, setting)
        )
        raise ParamsError(
            f"prompt.method = {method!r} trains on the {spec.trains_on} ({spec.needs}) but {off}: {fix}, "
            f"or use prompt.method {others}"
        )
