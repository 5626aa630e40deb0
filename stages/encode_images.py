"""encode_eval_images / encode_support_images / encode_partial_images: CLIP image embeddings of exactly the image sets the
setting needs (the Plan's, `pipeline.settings`), through the shared embedding cache; unreadable images are
skipped and listed in <out>/skipped.parquet.

    python -m stages.encode_images eval    # -> artifacts/embeddings/eval/<split>-<px>/
    python -m stages.encode_images support # -> artifacts/embeddings/support/<split>-<px>/ (few-shot only)
    python -m stages.encode_images partial # -> artifacts/embeddings/partial/<split>-<px>/ (partial labels only)
"""

import logging
import sys

import polars as pl

from pipeline import paths
from pipeline.data.manifest import read_split
from pipeline.encoding.embeddings import SKIPPED_SCHEMA, EmbeddingCache, write_shards
from pipeline.encoding.encode_images import encode_images
from pipeline.encoding.load import load_clip
from pipeline.io import atomic_dir, write_parquet
from pipeline.settings import plan
from pipeline.stage import run

PURPOSES = tuple(paths.IMAGE_EMBEDDINGS)  # eval, support, partial

log = logging.getLogger("encode_images")


def main(params, purpose: str) -> None:
    encode = params.encode
    wanted = plan(params).encode[purpose]  # the sets the setting's readers read, and no other
    root = paths.IMAGE_EMBEDDINGS[purpose]
    log.info(
        "%s image sets: %s",
        purpose,
        ", ".join(f"{s.split}@{s.resolution}px" + (" (support)" if s.support_only else "") for s in wanted)
        or "none (not needed by this setting)",
    )
    if wanted:  # load CLIP first: a bad encode.model fails before anything is written
        encoder = load_clip(encode.model, encode.device, encode.precision, encode.runtime)
        cache = EmbeddingCache(paths.embedding_cache_dir())
    skipped = []
    with atomic_dir(root) as tmp:  # the whole folder is swapped in at the end: no stale set survives a settings change
        for image_set in wanted:
            manifest = read_split(params.prepare.dataset, image_set.split)
            if image_set.support_only:
                support = pl.read_parquet(paths.FEWSHOT_SUPPORT, columns=["image_id"])
                manifest = manifest.filter(pl.col("image_id").is_in(support["image_id"].implode()))
            ids, image_paths = manifest["image_id"].to_list(), manifest["path"].to_list()
            result = encode_images(
                encoder,
                image_paths,
                image_set.resolution,
                cache,
                encode.batch_size,
                encode.num_workers,
                encode.resize,
                encode.engine,
                encode.ray_address,
            )
            metadata = {
                "model": encode.model,
                "model_identity": encoder.identity,
                "kind": "image",
                "resolution": str(image_set.resolution),
                "resize": encode.resize,
                "precision": encode.precision,
                "split": image_set.split,
                "normalized": "false",
            }
            out = paths.image_embeddings_dir(tmp, image_set.split, image_set.resolution)
            write_shards(out, [ids[i] for i in result.kept], result.vectors, metadata, encode.shard_rows)
            skipped += [
                (image_set.split, image_set.resolution, ids[i], image_paths[i], why) for i, why in result.skipped
            ]
        if wanted:
            cache.compact()
        write_parquet(pl.DataFrame(skipped, schema=SKIPPED_SCHEMA, orient="row"), paths.skipped_images_path(tmp))


if __name__ == "__main__":
    purpose = sys.argv[1] if len(sys.argv) > 1 else ""
    if purpose not in PURPOSES:
        sys.exit(f"usage: python -m stages.encode_images {{{'|'.join(PURPOSES)}}}")
    run(lambda params: main(params, purpose), f"encode_{purpose}_images")
