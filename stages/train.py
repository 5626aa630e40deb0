"""train: the adapter on perturbed text embeddings (plus images in the few-shot and
partial-label settings); resumes from the last finished epoch after a kill. The per-epoch checkpoint lives
in the per-user cache, named by the training set and params (pipeline.paths.train_checkpoint), and is
removed once the model is written: no DVC out, so a queued or --temp experiment's fresh copy lacks nothing."""

import logging

import polars as pl

from pipeline import paths
from pipeline.adapter import AdapterBundle
from pipeline.embeddings import read_metadata
from pipeline.io import write_json, write_text
from pipeline.labels import read_labels
from pipeline.stage import run
from pipeline.train import run_fingerprint, train_adapter
from pipeline.training_data import build_training_set

log = logging.getLogger("train")


def training_set(params, labels):
    """`build_training_set` for this setting: (training set, the resolution to evaluate at)."""
    e = params.encode
    return build_training_set(labels, params.prepare.dataset, params.train.radius, e.image_resolution,
                              e.partial_resolution, params.fewshot, params.partial)


def main(params) -> None:
    labels = read_labels(params.prepare.dataset)
    data, eval_resolution = training_set(params, labels)
    summary = {
        "n_texts": len(data.text),
        "n_images": 0 if data.images is None else len(data.images),
        "mean_text_norm": float(data.text.norm(dim=1).mean()),
        "text_radius": data.text_radius,
        # every experiment gets the same columns in `dvc exp show`: 0 when no image is trained on
        "mean_image_norm": float(data.images.norm(dim=1).mean()) if data.images is not None and len(data.images) else 0.0,
    }
    log.info("mean raw text-embedding norm %.3f (noise radius %.3g, normalize=%s)",
             summary["mean_text_norm"], data.text_radius, params.train.normalize)
    checkpoint = paths.train_checkpoint(run_fingerprint(data, params.train))
    model, history = train_adapter(data, params.train, checkpoint=checkpoint)
    clip_identity = read_metadata(paths.TEXT_EMBEDDINGS).get("model_identity")   # the CLIP encode_text ran
    AdapterBundle(model.cpu(), labels.names, params.train.normalize, params.encode.model, eval_resolution,
                  params.encode.resize, clip_identity, params.encode.precision).save(paths.MODEL)
    write_text(pl.DataFrame(history).write_csv(), paths.TRAIN_LOG)
    write_json({**summary, "final_loss": history[-1]["loss"]}, paths.TRAIN_METRICS)
    checkpoint.unlink(missing_ok=True)   # the outputs are written: nothing is left to resume


if __name__ == "__main__":
    run(main, "train")
