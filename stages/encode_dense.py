"""encode_dense_images: per-location CLIP RN50 features (`pipeline.encoding.dense`) of exactly the image sets
prompt.method reads (the Plan's peer, `pipeline.settings`: DualCoOp: partial.split and evaluate.split at encode.partial_resolution; TaI-DPT:
evaluate.split at encode.image_resolution; nothing otherwise), float16, into
artifacts/embeddings/dense/<split>-<px>/; unreadable images are skipped and listed in skipped.parquet.
Finished batches wait in the per-user cache (pipeline.paths.dense_staging, one folder per image set and
model) until the stage completes, so a killed run resumes with the images no batch holds
(`pipeline.encoding.dense.encode_dense`), in the workspace or in a queued experiment's copy alike."""

import logging
import shutil

import polars as pl

from pipeline import paths
from pipeline.data.manifest import read_split
from pipeline.encoding.dense import check_dense_model, dense_dir, encode_dense, staging_key
from pipeline.encoding.embeddings import SKIPPED_SCHEMA
from pipeline.encoding.load import load_clip
from pipeline.io import atomic_dir, write_parquet
from pipeline.settings import plan
from pipeline.stage import run

log = logging.getLogger("encode_dense_images")


def main(params) -> None:
    encode = params.encode
    peer = plan(params).peer
    wanted = peer.dense
    log.info(
        "dense feature sets: %s",
        ", ".join(f"{s.split}@{s.resolution}px" for s in wanted) or "none (prompt.method does not read them)",
    )
    if wanted:  # load CLIP first: a bad encode.model fails before anything is written
        encoder = load_clip(encode.model, encode.device)
        check_dense_model(encoder.model, peer.name)
    skipped, staged = [], []
    with atomic_dir(paths.DENSE_EMBEDDINGS) as tmp:
        for dense_set in wanted:
            manifest = read_split(params.prepare.dataset, dense_set.split)
            ids, image_paths = manifest["image_id"].to_list(), manifest["path"].to_list()
            metadata = {
                "model": encode.model,
                "model_identity": encoder.identity,
                "kind": "dense",
                "resize": encode.resize,
                "resolution": dense_set.resolution,
                "split": dense_set.split,
                "positional": "none",
            }
            out = dense_dir(dense_set.split, dense_set.resolution, tmp) / "part-00000.arrow"
            staging = paths.dense_staging(staging_key(metadata, image_paths, ids))
            staged.append(staging)
            bad = encode_dense(
                encoder,
                ids,
                image_paths,
                dense_set.resolution,
                out,
                metadata,
                staging,
                encode.resize,
                encode.batch_size,
                encode.num_workers,
            )
            skipped += [(dense_set.split, dense_set.resolution, ids[i], image_paths[i], why) for i, why in bad]
        write_parquet(pl.DataFrame(skipped, schema=SKIPPED_SCHEMA, orient="row"), paths.skipped_images_path(tmp))
    for staging in staged:  # the output is in place: no run resumes from these (other runs' folders stay)
        shutil.rmtree(staging, ignore_errors=True)


if __name__ == "__main__":
    run(main, "encode_dense_images")
