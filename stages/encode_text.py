"""encode_text: CLIP text embeddings of every generated text, through the content cache."""

import polars as pl

from pipeline import paths
from pipeline.encoding.embeddings import EmbeddingCache, write_shards
from pipeline.encoding.encode import encode_texts
from pipeline.encoding.load import load_clip
from pipeline.stage import run


def main(params) -> None:
    texts = pl.read_parquet(paths.TEXTS, columns=["text_id", "text"])
    encoder = load_clip(params.encode.model, params.encode.device, params.encode.precision)
    cache = EmbeddingCache(paths.embedding_cache_dir())
    result = encode_texts(encoder, texts["text"].to_list(), cache, params.encode.batch_size)
    cache.compact()
    metadata = {
        "model": params.encode.model,
        "model_identity": encoder.identity,
        "kind": "text",
        "precision": params.encode.precision,
        "normalized": "false",
    }
    write_shards(paths.TEXT_EMBEDDINGS, texts["text_id"].to_list(), result.vectors, metadata, params.encode.shard_rows)


if __name__ == "__main__":
    run(main, "encode_text")
