"""Image encoding on a Ray cluster (`encode.engine: ray`), for image sets that outgrow one process.

Ray Data spreads the images over a pool of CLIP actors, one per GPU of the cluster (or
`encode.num_workers` CPU actors where it has none); each actor decodes its batch with the
same `decode_image` as the local engine and encodes it. The driver (`pipeline.encoding.encode_images`)
hashes the files, sends only those missing from the cache, and writes every returned batch
to the cache itself, so both engines leave the same cache entries and the same shards.

`encode.ray_address` (or Ray's own RAY_ADDRESS variable) joins a running cluster; with
neither, a local Ray is started. Workers read the image and checkpoint paths themselves:
on a multi-node cluster they must see the same files (a shared file system) and have this
project installed.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import UserError

from .decode import decode_image
from .image_runtime import image_encoder
from .load import load_clip
from .openai_clip import ClipEncoder

log = logging.getLogger(__name__)

DECODE_THREADS = 4  # per actor: PIL decodes outside the GIL, so a GPU actor is not starved by JPEG decoding


def connect(address: str | None):
    """The Ray module, connected: to `address`, else to RAY_ADDRESS (Ray reads it), else to a new local Ray."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING)
    return ray


class ClipActor:
    """One CLIP model per actor; a batch of paths in, (position, embedding, error) rows out."""

    def __init__(
        self, model: str, device: str, resolution: int, transform, precision: str = "fp32", runtime: str = "auto"
    ):
        self.encoder = load_clip(model, device, precision, runtime)
        self.images = image_encoder(self.encoder)
        self.resolution, self.transform = resolution, transform
        self.pool = ThreadPoolExecutor(DECODE_THREADS)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        decoded = list(self.pool.map(lambda path: decode_image(str(path), self.transform), batch["path"]))
        good = [i for i, (_, error) in enumerate(decoded) if error is None]
        vectors = np.zeros((len(decoded), self.encoder.embed_dim), np.float32)
        if good:
            pixels = torch.stack([decoded[i][0] for i in good])
            vectors[good] = self.images(pixels, self.resolution)
        errors = np.array([error or "" for _, error in decoded], dtype=object)
        return {"position": batch["position"], "embedding": vectors, "error": errors}


def ray_batches(
    encoder: ClipEncoder,
    paths: list[str],
    positions: list[int],
    resolution: int,
    transform,
    batch_size: int,
    num_workers: int,
    address: str | None,
):
    """(positions, vectors, [(position, why)]) per finished batch, in the order they finish."""
    if not positions:
        return
    ray = connect(address)
    requested = getattr(encoder, "requested_device", "auto")
    gpus = int(ray.cluster_resources().get("GPU", 0)) if requested != "cpu" else 0
    if requested == "cuda" and not gpus:
        raise UserError("encode.device is cuda but the Ray cluster has no GPU: set encode.device to auto or cpu")
    actors = gpus or max(1, num_workers)
    model = (
        str(Path(encoder.name).resolve()) if Path(encoder.name).is_file() else encoder.name
    )  # workers may run elsewhere
    log.info("ray: %d %s actor(s) for %d images @%dpx", actors, "GPU" if gpus else "CPU", len(positions), resolution)
    items = ray.data.from_items([{"position": p, "path": os.path.abspath(paths[p])} for p in positions])
    encoded = items.map_batches(
        ClipActor,
        fn_constructor_kwargs={
            "model": model,
            "device": "cuda" if gpus else "cpu",
            "resolution": resolution,
            "transform": transform,
            "precision": encoder.precision,
            "runtime": encoder.runtime,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=1,
        num_gpus=1 if gpus else 0,
    )
    for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        ok = batch["error"] == ""
        bad = [(int(p), str(why)) for p, why in zip(batch["position"][~ok], batch["error"][~ok])]
        yield batch["position"][ok].tolist(), np.asarray(batch["embedding"][ok], np.float32), bad
