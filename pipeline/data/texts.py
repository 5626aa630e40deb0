"""Readers of the text side: generate's texts table and encode_text's embeddings of it, row by row.

Read by the centroids stage (text centroids) and by training (`pipeline.method.training_data`), so neither
depends on the other's code."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline import paths
from pipeline.encoding.embeddings import read_shards

from .labels import LabelSet


def read_texts(labels: LabelSet) -> pl.DataFrame:
    """artifacts/texts.parquet (columns: `pipeline.generate.TEXTS_SCHEMA`), its labels checked against `labels`."""
    texts = pl.read_parquet(paths.TEXTS)
    labels.check_known({l for ls in texts["labels"].to_list() for l in ls}, str(paths.TEXTS))
    return texts


def text_embeddings(texts: pl.DataFrame) -> np.ndarray:
    """(texts x dim) float32 text embeddings in the row order of `texts`."""
    return read_shards(paths.TEXT_EMBEDDINGS).select(texts["text_id"].to_list())
