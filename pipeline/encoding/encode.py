"""Encoding texts through the content-addressed cache, and what image encoding (`pipeline.encoding.encode_images`) shares.

Only inputs whose key (model, kind and precision, content; for images also resolution and resize mode)
is missing from the cache reach CLIP; each finished batch is written to the cache at once, so a killed run resumes without redoing work.
Texts are encoded in batches of similar token length, each only up to its longest text
(exact: see `ClipEncoder.encode_tokens`). Nothing here runs an image tower, so encode_text does not depend on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .embeddings import EmbeddingCache, content_key
from .openai_clip import CONTEXT_LENGTH, ClipEncoder

log = logging.getLogger(__name__)

TEXT_CHUNK = 16384  # texts are tokenized and sorted by length this many at a time
CALL_COST = 2 * CONTEXT_LENGTH  # a model call's fixed cost, in padded tokens, when grouping texts by length


@dataclass
class EncodeResult:
    vectors: np.ndarray  # rows for the inputs that could be encoded, in input order
    kept: list[int]  # input positions of those rows
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (input position, why)
    n_cached: int = 0
    n_encoded: int = 0


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Rows grouped into model calls, shortest first. A call takes texts of a range of token lengths,
    padded to the longest, and at most `batch_size` x 77 tokens (the padded batch's memory). The
    ranges minimise padded tokens + CALL_COST per call: exact dynamic programming over the <= 77
    distinct lengths, so a long tail of rare lengths does not pad a crowd of short texts."""
    budget = batch_size * CONTEXT_LENGTH
    rows_of: dict[int, list[int]] = {}
    for row, length in enumerate(lengths):
        rows_of.setdefault(length, []).append(row)
    values = sorted(rows_of)
    before = np.concatenate([[0], np.cumsum([len(rows_of[v]) for v in values])])  # rows shorter than values[i]

    def cost(i: int, j: int) -> int:  # values[i..j] in calls padded to values[j]
        n = int(before[j + 1] - before[i])
        return n * values[j] + CALL_COST * -(-n // max(1, budget // values[j]))

    best, cut = [0] + [None] * len(values), [0] * (len(values) + 1)
    for j in range(len(values)):
        best[j + 1], cut[j + 1] = min((best[i] + cost(i, j), i) for i in range(j + 1))
    ranges, j = [], len(values)
    while j:
        ranges.append((cut[j], j))
        j = cut[j]
    batches = []
    for i, j in reversed(ranges):
        rows = [r for v in values[i:j] for r in rows_of[v]]
        batches += _batches(rows, max(1, budget // values[j - 1]))
    return batches


def encode_texts(encoder: ClipEncoder, texts: list[str], cache: EmbeddingCache, batch_size: int = 256) -> EncodeResult:
    """Missing texts are encoded in batches of similar token length (`_length_batches`; put back in
    order through the cache), each run only up to its longest text (`ClipEncoder.encode_tokens`)."""
    keys = [content_key(encoder.identity, cache_kind(encoder, "text"), t) for t in texts]
    missing = sorted({k: i for i, k in enumerate(keys) if k not in cache}.values())
    log.info("texts: %d of %d found in the cache, %d to encode", len(texts) - len(missing), len(texts), len(missing))
    with tqdm(total=len(missing), desc="encode texts", unit="text") as bar:
        for chunk in _batches(
            missing, max(TEXT_CHUNK, batch_size * 16)
        ):  # bounded memory: one chunk's tokens at a time
            tokens = encoder.tokenize([texts[i] for i in chunk])
            lengths = encoder.token_lengths(tokens)
            for rows in _length_batches(lengths, batch_size):
                cache.put([keys[chunk[r]] for r in rows], encoder.encode_tokens(tokens[rows]))
                bar.update(len(rows))
    vectors = np.stack([cache.get(k) for k in keys]) if keys else np.zeros((0, encoder.embed_dim), np.float32)
    return EncodeResult(vectors, list(range(len(texts))), n_cached=len(texts) - len(missing), n_encoded=len(missing))


def cache_kind(encoder: ClipEncoder, kind: str) -> str:
    """The input kind in a cache key, with the precision unless fp32 (whose keys are those of caches written
    before encode.precision existed), so fp32 and bf16 embeddings never mix. The runtime is not in it:
    every fp32 runtime gives the same embeddings to within 1e-5 (`pipeline.encoding.image_runtime`)."""
    return kind if encoder.precision == "fp32" else f"{kind}@{encoder.precision}"
