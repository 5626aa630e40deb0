"""encode_images: CLIP image embeddings of every split in encode.splits, at each
resolution the settings need; unreadable images are skipped and listed."""

import polars as pl

from pipeline import paths
from pipeline.artifacts import read_manifest
from pipeline.clip_model import ClipEncoder
from pipeline.embeddings import EmbeddingCache, write_shards
from pipeline.encode import encode_images
from pipeline.io import write_parquet
from pipeline.stage import run

SKIPPED_SCHEMA = {"split": pl.Utf8, "resolution": pl.Int32, "image_id": pl.Utf8, "path": pl.Utf8, "error": pl.Utf8}


def main(params) -> None:
    p = params.encode
    encoder = ClipEncoder(p.model, p.device)
    cache = EmbeddingCache(paths.CACHE / "clip")
    skipped = []
    for split in p.splits:
        manifest = read_manifest(params, split)
        ids, image_paths = manifest["image_id"].to_list(), manifest["path"].to_list()
        for resolution in p.resolutions:
            result = encode_images(encoder, image_paths, resolution, cache, p.batch_size, p.num_workers, p.engine, p.ray_address)
            metadata = {"model": p.model, "model_identity": encoder.identity, "kind": "image",
                        "resolution": str(resolution), "split": split, "normalized": "false"}
            write_shards(paths.image_embeddings_dir(split, resolution), [ids[i] for i in result.kept],
                         result.vectors, metadata, p.shard_rows)
            skipped += [(split, resolution, ids[i], image_paths[i], why) for i, why in result.skipped]
    cache.compact()
    write_parquet(pl.DataFrame(skipped, schema=SKIPPED_SCHEMA, orient="row"), paths.IMAGE_SKIPPED)


if __name__ == "__main__":
    run(main, "encode_images")
