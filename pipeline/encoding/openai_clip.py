"""CLIP, loaded by name or from a checkpoint path, with encoders at any resolution.

`clip.load` takes a model name (downloaded, checksum-verified, for users with
internet) or a path to a checkpoint (a JIT archive or a plain state dict). The
image encoder's positional embedding is resized (bicubic) so an RN50 trained at
224 px can encode at 448 px (7 x 7 -> 14 x 14 attention-pool grid), or any
multiple of 32. Names starting with `open_clip:` are open_clip models
(`pipeline.encoding.open_clip_backbones`, a subclass with the same methods); `pipeline.encoding.load.load_clip`
loads either kind by name.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config import OPEN_CLIP_PREFIX
from pipeline.device import resolve_device
from pipeline.errors import UserError

from .precision import autocast, precision_problem

log = logging.getLogger(__name__)

CONTEXT_LENGTH = 77
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's image normalisation (clip.clip._transform)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipError(UserError, ValueError):
    """A CLIP model name or checkpoint that cannot be used."""


def is_open_clip(model: str) -> bool:
    """Whether `model` names an open_clip model (`open_clip:ARCH/TAG`, see pipeline.encoding.open_clip_backbones)."""
    return model.startswith(OPEN_CLIP_PREFIX)


def file_digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256: a checkpoint's identity, whatever its name."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def model_identity(model: str) -> str:
    """A stable id for cache keys: the name of a released model, or a checksum of a checkpoint file.
    Two backbones never share an id, so they never share cache entries."""
    import clip

    if model in clip.available_models():
        return f"openai:{model}"
    path = Path(model)
    if not path.is_file():
        raise ClipError(
            f"encode.model = {model!r} is neither a CLIP model name {clip.available_models()}, an open_clip name "
            "('open_clip:ViT-B-16/laion2b_s34b_b88k'), nor an existing checkpoint file: fix the name or the path"
        )
    return f"file:{file_digest(path)}"


def resize_positional_embedding(embedding: torch.Tensor, grid: int) -> torch.Tensor:
    """(1 + g*g, c) -> (1 + grid*grid, c): the class token kept, the spatial grid interpolated bicubically."""
    cls_token, spatial = embedding[:1], embedding[1:]
    old = math.isqrt(spatial.shape[0])
    if old * old != spatial.shape[0]:
        raise ClipError(f"positional embedding of {spatial.shape[0]} positions is not a square grid")
    if old == grid:
        return embedding
    spatial = spatial.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    spatial = F.interpolate(spatial, size=(grid, grid), mode="bicubic", align_corners=False)
    spatial = spatial.permute(0, 2, 3, 1).reshape(grid * grid, -1).to(embedding.dtype)
    return torch.cat([cls_token, spatial])


def _to_rgb(image):
    return image.convert("RGB")


def image_transform(
    resolution: int,
    resize: str = "square",
    mean: tuple[float, ...] = OPENAI_MEAN,
    std: tuple[float, ...] = OPENAI_STD,
    interpolation: str = "bicubic",
):
    """PIL image -> normalised tensor at `resolution` x `resolution`.

    `square` (the paper's protocol, as its peers evaluate): the whole image resized to N x N,
    aspect ratio not kept, nothing cut off. `center_crop` (CLIP's own preprocessing):
    the short side resized to N, then the centre N x N kept, which drops objects near the border.
    Both convert to RGB and normalise with the model's mean and std (CLIP's by default); the
    interpolation is the model's too (bicubic for CLIP, as `clip.clip._transform`) (`pipeline.config` checks encode.resize.)
    """
    from torchvision import transforms as T

    mode = T.InterpolationMode(interpolation)
    if resize == "center_crop":
        geometry = [T.Resize(resolution, interpolation=mode), T.CenterCrop(resolution)]
    else:
        geometry = [T.Resize((resolution, resolution), interpolation=mode)]
    return T.Compose([*geometry, _to_rgb, T.ToTensor(), T.Normalize(mean, std)])


def tokenize(texts: list[str]) -> torch.Tensor:
    """(n, 77) OpenAI CLIP token ids, start and end tokens included, zero-padded; a text over 77 tokens is cut."""
    import clip

    return clip.tokenize(texts, context_length=CONTEXT_LENGTH, truncate=True)


def text_mask_is_causal(model) -> bool:
    """Whether every text block masks future tokens, so text features can be taken from trimmed tokens."""
    causal = torch.full((CONTEXT_LENGTH, CONTEXT_LENGTH), float("-inf")).triu(1)
    blocks = list(model.transformer.resblocks)
    return bool(blocks) and all(
        getattr(block, "attn_mask", None) is not None and torch.equal(block.attn_mask.float().cpu(), causal)
        for block in blocks
    )


class ClipEncoder:
    """One loaded CLIP model; text features as float32 numpy arrays (raw, not normalised). Its image tower is
    run by `pipeline.encoding.image_runtime.ImageEncoder` (set_resolution and transform here prepare it).

    `pipeline.encoding.load.load_clip` makes one for any backbone: this class for OpenAI names and checkpoints,
    `pipeline.encoding.open_clip_backbones.OpenClipEncoder` (a subclass with the same methods) for open_clip names."""

    mean, std, interpolation = OPENAI_MEAN, OPENAI_STD, "bicubic"  # image normalisation (`transform`)

    def __init__(self, model: str = "RN50", device: str = "auto", precision: str = "fp32", runtime: str = "auto"):
        import clip

        self.name = model
        self.identity = model_identity(model)
        self.requested_device = device  # "auto" lets the Ray engine use a cluster's GPUs that this process lacks
        self.device = resolve_device(device)
        problem = precision_problem(precision, self.device)
        if problem:  # before the model loads: no work is done in a precision this machine cannot run
            raise ClipError(problem)
        self.precision, self.runtime = (
            precision,
            runtime,
        )  # runtime: how `pipeline.encoding.image_runtime` runs the image tower
        try:
            self.model, _ = clip.load(model, device=self.device, jit=False)
        except Exception as e:  # a corrupt or foreign checkpoint: say which file and our fix, not torch's advice
            raise ClipError(
                f"encode.model = {model!r} is not a CLIP checkpoint ({type(e).__name__} reading it as a JIT archive "
                f"or a state dict of CLIP weights): point encode.model at a CLIP .pt file, or name a released "
                f"model such as RN50 or ViT-B/32"
            ) from None
        self.model.float().eval()  # clip.load leaves fp16 weights on a GPU: encode.precision alone says what runs
        visual = self.model.visual
        self._pos_owner = visual.attnpool if hasattr(visual, "attnpool") else visual
        self._native_pos = self._pos_owner.positional_embedding.data.clone()
        self._patch = visual.conv1.kernel_size[0] if hasattr(visual, "transformer") else 32
        self.native_resolution = visual.input_resolution

    @property
    def embed_dim(self) -> int:
        return self.model.text_projection.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def set_resolution(self, resolution: int) -> None:
        if resolution == self.model.visual.input_resolution:
            return
        if resolution % self._patch:
            raise ClipError(f"resolution {resolution} is not a multiple of the model's stride {self._patch}")
        grid = resolution // self._patch
        resized = resize_positional_embedding(self._native_pos, grid).clone()  # never share memory with the native copy
        self._pos_owner.positional_embedding = torch.nn.Parameter(resized)
        self.model.visual.input_resolution = resolution

    def transform(self, resolution: int, resize: str = "square"):
        """Preprocessing at `resolution` (`image_transform`) with this model's normalisation."""
        return image_transform(resolution, resize, self.mean, self.std, self.interpolation)

    def token_lengths(self, tokens: torch.Tensor) -> list[int]:
        """Tokens each `tokenize` row costs `encode_tokens`: up to its end token when the text tower is
        causal (the end token has the largest id), else the whole padded row."""
        if text_mask_is_causal(self.model):
            return (tokens.argmax(dim=-1) + 1).tolist()
        return [tokens.shape[1]] * len(tokens)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return tokenize(texts)

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        """Features of a batch of `tokenize` rows, run only up to the batch's longest text.

        Exact: the text transformer is causal (a token attends to itself and earlier ones)
        and the feature is read at the end token, so the padding after it changes nothing.
        CLIP's `encode_text` takes the first n positional embeddings and each block slices
        its causal mask to n x n (clip-anytorch; tests check it). A model whose text mask
        is not causal keeps the 77 tokens.
        """
        if len(tokens) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        if text_mask_is_causal(self.model):
            tokens = tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]  # the end token has the largest id
        with autocast(self.precision, self.device):
            return self.model.encode_text(tokens.to(self.device)).float().cpu().numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return self.encode_tokens(self.tokenize(texts))
