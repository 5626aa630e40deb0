"""encode_images: CLIP image embeddings of every split in encode.splits, at each
resolution the settings need; unreadable images are skipped and listed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from pipeline import paths  # noqa: E402
from pipeline.artifacts import read_manifest  # noqa: E402
from pipeline.clip_model import ClipEncoder  # noqa: E402
from pipeline.embeddings import EmbeddingCache, write_shards  # noqa: E402
from pipeline.encode import encode_images  # noqa: E402
from pipeline.io import write_parquet  # noqa: E402
from pipeline.stage import run  # noqa: E402

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
            result = encode_images(encoder, image_paths, resolution, cache, p.batch_size, p.num_workers)
            metadata = {"model": p.model, "model_identity": encoder.identity, "kind": "image",
                        "resolution": str(resolution), "split": split, "normalized": "false"}
            write_shards(paths.image_embeddings_dir(split, resolution), [ids[i] for i in result.kept],
                         result.vectors, metadata, p.shard_rows)
            skipped += [(split, resolution, ids[i], image_paths[i], why) for i, why in result.skipped]
    cache.compact()
    write_parquet(pl.DataFrame(skipped, schema=SKIPPED_SCHEMA, orient="row"), paths.IMAGE_SKIPPED)


if __name__ == "__main__":
    run(main, "encode_images")
