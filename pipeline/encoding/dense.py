"""CLIP RN50's dense (per-location) image features, for the prompt methods that look at regions.

CLIP's ModifiedResNet ends in an attention pool: the 2048-channel layer4 map (7 x 7 at 224 px, 14 x 14
at 448 px) plus its mean, with a positional embedding, attended by the mean, then value (v_proj) and
output (c_proj) projections into the joint space. The peers take the map's locations through the two
projections without the attention, which puts every location in the space of the text features:

- TaI-DPT (`trainers/Caption_distill_double.py`, `DenseCLIP.forward` at test): the H*W locations,
  no positional embedding.
- DualCoOp (`clip/model.py`, `AttentionConv`): the mean and the H*W locations, with the (resized)
  positional embedding.

Both come from one stored array: v_proj and c_proj are affine, so
c(v(x + p)) = c(v(x)) + Wc Wv p and c(v(mean x)) = mean c(v(x)). We store TaI-DPT's form (locations,
no positional embedding) and `with_positions` builds DualCoOp's exactly from it.

Storage (`artifacts/embeddings/dense/<split>-<px>/part-*.arrow`): Arrow IPC, columns `id` (Utf8) and
`features` (FixedSizeList<float16>[locations * dim]), location-major; the schema metadata records the
model, resolution, resize mode, grid and dim. float16 halves the bytes; the features are cast to
float32 for training. Files are read memory-mapped, so a set larger than memory is paged in as used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import torch
import torch.nn.functional as F

from pipeline import paths
from pipeline.io import atomic_path

from .decode import decoded_batches
from .openai_clip import ClipError, resize_positional_embedding

log = logging.getLogger(__name__)


def check_dense_model(model, method: str) -> None:
    visual = getattr(model, "visual", None)
    if not hasattr(visual, "attnpool"):
        raise ClipError(
            f"prompt.method = {method!r} needs dense image features from a CLIP ResNet's attention pool "
            f"(OpenAI CLIP RN50, RN101, ...), and encode.model's image encoder ({type(visual).__name__}) has none: "
            "use encode.model RN50, or prompt.method coop (global features only) or none"
        )


def feature_map(visual, pixels: torch.Tensor) -> torch.Tensor:
    """ModifiedResNet up to layer4: (batch, 3, N, N) -> (batch, channels, N/32, N/32)."""
    x = pixels.type(visual.conv1.weight.dtype)
    x = visual.relu1(visual.bn1(visual.conv1(x)))
    x = visual.relu2(visual.bn2(visual.conv2(x)))
    x = visual.relu3(visual.bn3(visual.conv3(x)))
    x = visual.avgpool(x)
    return visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))


def project_locations(attnpool, locations: torch.Tensor) -> torch.Tensor:
    """(..., channels) -> (..., dim): the attention pool's value then output projection, no attention."""
    x = F.linear(locations, attnpool.v_proj.weight, attnpool.v_proj.bias)
    return F.linear(x, attnpool.c_proj.weight, attnpool.c_proj.bias)


@torch.no_grad()
def dense_features(visual, pixels: torch.Tensor) -> torch.Tensor:
    """(batch, 3, N, N) -> (batch, (N/32)^2, dim): every location projected, no positional embedding."""
    x = feature_map(visual, pixels)
    return project_locations(visual.attnpool, x.flatten(2).transpose(1, 2)).float()


def positional_term(attnpool, native: torch.Tensor, grid: int) -> torch.Tensor:
    """(1 + grid^2, dim): what the positional embedding (resized bicubically to the grid, as DualCoOp
    and `ClipEncoder.set_resolution` do) adds after the two projections, Wc Wv p (the biases are in the
    stored features already)."""
    pos = resize_positional_embedding(native.float(), grid)
    return pos @ attnpool.v_proj.weight.float().T @ attnpool.c_proj.weight.float().T


def with_positions(features: torch.Tensor, term: torch.Tensor) -> torch.Tensor:
    """Stored (batch, L, dim) -> DualCoOp's (batch, 1 + L, dim): the mean location first, positions added."""
    return torch.cat([features.mean(dim=1, keepdim=True), features], dim=1) + term


def bytes_per_image(resolution: int, dim: int, stride: int = 32, itemsize: int = 2) -> int:
    """Stored bytes of one image's dense features (float16): (resolution / 32)^2 locations x dim."""
    return (resolution // stride) ** 2 * dim * itemsize


# ---- storage ----------------------------------------------------------------------------------


def _schema(length: int, metadata: dict[str, str]) -> pa.Schema:
    return pa.schema(
        [("id", pa.string()), ("features", pa.list_(pa.float16(), length))],
        metadata={k: str(v) for k, v in metadata.items()},
    )


class DenseWriter:
    """Appends batches of (ids, (batch, L, dim) features) to one Arrow IPC file; the encode stage
    writes into a folder that is swapped in whole (`pipeline.io.atomic_dir`)."""

    def __init__(self, path: Path, locations: int, dim: int, metadata: dict[str, str]):
        self.schema = _schema(locations * dim, {**metadata, "locations": locations, "dim": dim})
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = ipc.new_file(str(path), self.schema)

    def __enter__(self) -> "DenseWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._writer.close()

    def write_batch(self, batch: pa.RecordBatch) -> None:
        """A batch as another DenseWriter of the same shape wrote it."""
        self._writer.write_batch(batch.replace_schema_metadata(self.schema.metadata))

    def write(self, ids: list[str], features: np.ndarray) -> None:
        flat = np.ascontiguousarray(features, dtype=np.float16).reshape(-1)
        size = self.schema.field("features").type.list_size
        column = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float16()), size)
        self._writer.write_batch(pa.record_batch([pa.array(ids, pa.string()), column], schema=self.schema))


class DenseFeatures:
    """A dense feature set, memory-mapped: `ids`, `metadata`, and `take(rows)` -> float32 tensor."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        files = sorted(directory.glob("*.arrow"))
        if not files:
            raise FileNotFoundError(f"{directory}: no dense features there; run `dvc repro encode_dense_images`")
        self._chunks: list[np.ndarray] = []
        self.ids: list[str] = []
        starts = [0]
        for file in files:
            reader = ipc.open_file(pa.memory_map(str(file)))
            meta = {k.decode(): v.decode() for k, v in (reader.schema.metadata or {}).items()}
            for b in range(reader.num_record_batches):
                batch = reader.get_batch(b)
                self.ids += batch.column(0).to_pylist()
                values = batch.column(1).values.to_numpy(zero_copy_only=True)  # a view of the mapped file, no copy
                self._chunks.append(values.reshape(len(batch), int(meta["locations"]), int(meta["dim"])))
                starts.append(starts[-1] + len(batch))
        self.metadata = meta
        self.locations, self.dim = int(meta["locations"]), int(meta["dim"])
        self._starts = np.array(starts)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, rows) -> torch.Tensor:
        rows = np.asarray(rows, dtype=np.int64)
        chunk = np.searchsorted(self._starts, rows, side="right") - 1
        out = np.empty((len(rows), self.locations, self.dim), np.float32)
        for i, (c, r) in enumerate(zip(chunk, rows)):
            out[i] = self._chunks[c][r - self._starts[c]]
        return torch.from_numpy(out)


def dense_dir(split: str, resolution: int, root: Path = paths.DENSE_EMBEDDINGS) -> Path:
    return paths.image_embeddings_dir(root, split, resolution)


def read_dense(split: str, resolution: int) -> DenseFeatures:
    """The dense features the encode_dense_images stage wrote for `split` at `resolution` (a set of the Plan's)."""
    directory = dense_dir(split, resolution)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"{directory}: no dense features for {split} at {resolution} px; run `dvc repro encode_dense_images`"
        )
    return DenseFeatures(directory)


def grid_of(locations: int) -> int:
    grid = math.isqrt(locations)
    if grid * grid != locations:
        raise ValueError(f"{locations} locations are not a square grid")
    return grid


def _chunk_ids(chunk: Path) -> list[str]:
    with pa.memory_map(str(chunk)) as source:
        return ipc.open_file(source).read_all().column("id").to_pylist()


def staging_key(metadata: dict[str, str], image_paths: list[str], ids: list[str]) -> str:
    """Names a staging folder by everything its features depend on: the metadata (model identity,
    resolution, resize, split) and each image's id, path, size and modification time."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True, default=str).encode())
    for image_id, path in zip(ids, image_paths):
        try:
            stat = os.stat(path)
            digest.update(f"{image_id}\0{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:  # unreadable: skipped whatever the run
            digest.update(f"{image_id}\0{path}\0-\n".encode())
    return digest.hexdigest()[:16]


def encode_dense(
    encoder,
    ids: list[str],
    image_paths: list[str],
    resolution: int,
    out_file: Path,
    metadata: dict[str, str],
    staging: Path,
    resize: str = "square",
    batch_size: int = 64,
    num_workers: int = 0,
) -> list[tuple[int, str]]:
    """Dense features of the images into `out_file`; returns (position, why) of the images that could not
    be read (skipped, as the encode stages skip them).

    Each finished batch is first a chunk file in `staging` (atomic; the caller names the folder by
    `staging_key`), so a killed run resumes with the images no chunk holds; at the end the chunks are
    copied into `out_file`, in the order they were written. The caller removes `staging` once the
    output is in place."""
    from tqdm.auto import tqdm

    visual = encoder.model.visual
    grid, dim = resolution // 32, encoder.embed_dim
    staging.mkdir(parents=True, exist_ok=True)
    chunks = sorted(staging.glob("chunk-*.arrow"))
    done = {image_id for chunk in chunks for image_id in _chunk_ids(chunk)}
    todo = [i for i, image_id in enumerate(ids) if image_id not in done]
    if done:
        log.info(
            "dense features @%d: %d of %d images already encoded by an interrupted run, %d to encode",
            resolution,
            len(ids) - len(todo),
            len(ids),
            len(todo),
        )
    skipped: list[tuple[int, str]] = []
    with tqdm(total=len(todo), desc=f"dense features @{resolution}", unit="img") as bar:
        for good, pixels, bad in decoded_batches(
            image_paths, todo, encoder.transform(resolution, resize), batch_size, num_workers
        ):
            skipped += bad
            if pixels is not None:
                features = dense_features(visual, pixels.to(encoder.device)).cpu().numpy()
                with (
                    atomic_path(staging / f"chunk-{len(chunks):06d}.arrow", unique=True) as tmp,
                    DenseWriter(tmp, grid * grid, dim, metadata) as writer,
                ):
                    writer.write([ids[p] for p in good], features)
                chunks.append(staging / f"chunk-{len(chunks):06d}.arrow")
            bar.update(len(good) + len(bad))
    with DenseWriter(out_file, grid * grid, dim, metadata) as writer:
        for chunk in chunks:
            reader = ipc.open_file(pa.memory_map(str(chunk)))
            for b in range(reader.num_record_batches):
                writer.write_batch(reader.get_batch(b))
    for position, why in skipped:
        log.warning("skipped image %s: %s", image_paths[position], why)
    return sorted(skipped)
