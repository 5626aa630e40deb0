"""train: the adapter on perturbed text embeddings (plus images in the few-shot and
partial-label settings); resumes from the last finished epoch after a kill. The per-epoch checkpoint lives
in the per-user cache, named by the training set and params (pipeline.paths.train_checkpoint): no DVC out, so a
queued or --temp experiment's fresh copy lacks nothing. The last one stays as the finished weights, so a rerun
that changes only what the bundle records (encode.resize, the resolution to evaluate at) trains no epoch."""

import dataclasses
import logging

import polars as pl
import torch

from pipeline import paths
from pipeline.data.labels import read_labels
from pipeline.encoding.embeddings import read_metadata
from pipeline.evaluation.thresholds import ZERO_SHOT_MESSAGE, choose_thresholds, holdout_rows
from pipeline.io import prune_unused, write_json, write_text
from pipeline.method.adapter import AdapterBundle
from pipeline.method.train import run_fingerprint, train_adapter
from pipeline.method.training_data import build_training_set
from pipeline.settings import plan
from pipeline.stage import run

log = logging.getLogger("train")


def training_set(params, labels):
    """`build_training_set` for this run's Plan: (training set, the resolution to evaluate at)."""
    p = plan(params)
    data = build_training_set(
        labels,
        params.prepare.dataset,
        p.text_noise,
        p.text_shift,
        p.training_images if p.image_noise else None,
        p.image_noise,
        p.image_weight,
    )
    return data, p.eval_resolution


def hold_out_images(data, params):
    """(what the adapter trains on, the labelled images held out of it to choose thresholds on, or None):
    train.threshold_holdout of the few-shot support images or of the partially labelled images that join
    training (partial.image_weight > 0), drawn with train.seed."""
    fraction = params.train.threshold_holdout
    if fraction == 0 or data.images is None or len(data.images) < 2:
        if fraction > 0:
            log.warning(
                "train.threshold_holdout is %g but no labelled image joins training (few-shot support "
                "images, or partial labels with partial.image_weight > 0): no threshold is chosen",
                fraction,
            )
        return data, None
    held = torch.from_numpy(holdout_rows(len(data.images), fraction, params.train.seed))
    pick = lambda t, rows: None if t is None else t[rows]
    kept = dataclasses.replace(
        data,
        images=data.images[~held],
        image_targets=data.image_targets[~held],
        image_known=pick(data.image_known, ~held),
    )
    out = dataclasses.replace(
        data, images=data.images[held], image_targets=data.image_targets[held], image_known=pick(data.image_known, held)
    )
    log.info("thresholds: %d of %d labelled images held out of training to choose them on", int(held.sum()), len(held))
    return kept, out


def with_thresholds(bundle: AdapterBundle, held, params) -> tuple[AdapterBundle, int]:
    """The bundle with per-label thresholds maximising F1 on the held-out images (labels with no held-out
    positive keep 0.5), and how many were chosen; unchanged (0.5 for all) when nothing was held out."""
    if held is None:
        log.info(ZERO_SHOT_MESSAGE)
        return bundle, 0
    scores = bundle.scores(held.images).numpy()
    known = None if held.image_known is None else held.image_known.numpy()
    thresholds, chosen = choose_thresholds(scores, held.image_targets.numpy(), known)
    # partially labelled images carry their mask (image_known); few-shot support images are labelled in full
    source = "few-shot support images" if held.image_known is None else "known entries of partially labelled images"
    source = (
        f"{len(held.images)} {source} held out of training (train.threshold_holdout "
        f"{params.train.threshold_holdout:g}, seed {params.train.seed}); F1-best per label"
    )
    log.info("thresholds chosen for %d of %d labels on %s", int(chosen.sum()), len(chosen), source)
    return dataclasses.replace(bundle, thresholds=tuple(float(t) for t in thresholds), threshold_source=source), int(
        chosen.sum()
    )


def encoded_with(text_metadata: dict[str, str]) -> tuple[str | None, str]:
    """(CLIP identity, precision) that encode_text recorded in the text embeddings: predict encodes images with
    the same CLIP in the same precision. Read there, not from encode.precision, so train depends on the
    embeddings it learns from, not on a param (sets written before encode.precision existed were fp32)."""
    return text_metadata.get("model_identity"), text_metadata.get("precision", "fp32")


def main(params) -> None:
    labels = read_labels(params.prepare.dataset)
    data, eval_resolution = training_set(params, labels)
    summary = {
        "n_texts": len(data.text),
        "n_images": 0 if data.images is None else len(data.images),
        "mean_text_norm": float(data.text.norm(dim=1).mean()),
        "text_radius": data.text_radius,
        # every experiment gets the same columns in `dvc exp show`: 0 when no image is trained on
        "mean_image_norm": float(data.images.norm(dim=1).mean())
        if data.images is not None and len(data.images)
        else 0.0,
    }
    log.info(
        "mean raw text-embedding norm %.3f (noise radius %.3g, normalize=%s)",
        summary["mean_text_norm"],
        data.text_radius,
        params.train.normalize,
    )
    data, held = hold_out_images(data, params)
    summary["n_images_threshold_holdout"] = 0 if held is None else len(held.images)
    summary["n_images"] -= summary["n_images_threshold_holdout"]
    checkpoint = paths.train_checkpoint(run_fingerprint(data, params.train))
    model, history = train_adapter(data, params.train, checkpoint=checkpoint)
    bundle = AdapterBundle(
        model.cpu(),
        labels.names,
        params.train.normalize,
        params.encode.model,
        eval_resolution,
        params.encode.resize,
        *encoded_with(read_metadata(paths.TEXT_EMBEDDINGS)),
    )
    bundle, summary["n_thresholds_chosen"] = with_thresholds(bundle, held, params)
    bundle.save(paths.MODEL)
    write_text(pl.DataFrame(history).write_csv(), paths.TRAIN_LOG)
    write_json({**summary, "final_loss": history[-1]["loss"]}, paths.TRAIN_METRICS)
    # The last epoch's checkpoint stays: the finished weights of this training set and these params. A rerun
    # that changes no training input (an encode.resize or encode.image_resolution sweep in the zero-shot
    # setting, which only restamps the bundle) resumes after the last epoch and trains none.
    prune_unused(checkpoint.parent, checkpoint, "train checkpoints")  # other settings' after a week unused


if __name__ == "__main__":
    run(main, "train")
