"""open_clip backbones (LAION, DataComp, MetaCLIP, SigLIP, ...) behind the `ClipEncoder` interface.

`encode.model: open_clip:ARCH/WEIGHTS` names one (the optional extra: `pip install -e ".[open_clip]"`):

    open_clip:ViT-B-16/laion2b_s34b_b88k     an architecture and a pretrained tag (open_clip downloads it)
    open_clip:ViT-B-16/path/to/weights.pt    the same architecture, weights from a local file
    open_clip:hf-hub:timm/ViT-B-16-SigLIP    a Hugging Face Hub repository holding config and weights
    open_clip:local-dir:path/to/folder       such a repository downloaded into a folder

All go through `open_clip.create_model_and_transforms`. `TAI_OPEN_CLIP_CONFIGS` (JSON files or folders
of them, separated by the path separator) registers architectures of your own first
(`open_clip.add_model_config`); the tests register tiny ones this way.

What differs from OpenAI CLIP, and how it is handled:
- preprocessing: the model's own mean, std and interpolation, under the project's `encode.resize` rule
  (square or centre crop), so every backbone sees the same image geometry;
- text: a causal text tower pooling at its end token is run only up to the batch's longest text (exact,
  as for OpenAI CLIP); any other (SigLIP's bidirectional tower reading the last, padded position; a
  Hugging Face text tower) gets the tokenizer's full padded rows, as it was trained;
- resolution: ViT and ResNet towers have their positional embedding interpolated (bicubic) from the
  native grid to any multiple of the patch (32 for a ResNet); a timm tower (most SigLIP models)
  encodes at its native size only, and another size is refused with the reason;
- identity: the name, plus a file checksum for local weights and a config checksum for a registered
  architecture, so no two backbones share cache entries.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.config import OPEN_CLIP_PREFIX as PREFIX
from pipeline.device import resolve_device

from .openai_clip import ClipEncoder, ClipError, file_digest, resize_positional_embedding
from .precision import autocast, precision_problem

log = logging.getLogger(__name__)

CONFIGS_ENV = "TAI_OPEN_CLIP_CONFIGS"
SCHEMAS = ("hf-hub:", "local-dir:")
_registered: set[str] = set()


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise ClipError(
            "encode.model names an open_clip model but open_clip is not installed: pip install -e '.[open_clip]'"
        ) from None
    return open_clip


def register_configs() -> None:
    """Register the architectures listed in $TAI_OPEN_CLIP_CONFIGS with open_clip (once per path)."""
    for entry in filter(None, os.environ.get(CONFIGS_ENV, "").split(os.pathsep)):
        if entry in _registered:
            continue
        if not Path(entry).exists():
            raise ClipError(f"{CONFIGS_ENV} lists {entry!r}, which does not exist: fix or remove it")
        _open_clip().add_model_config(entry)
        _registered.add(entry)


@dataclass(frozen=True)
class OpenClipName:
    """`open_clip:ARCH/WEIGHTS` split: `architecture` (or a hf-hub:/local-dir: source) and `pretrained`
    (a tag or a file; None for the schemas, which carry their weights)."""

    architecture: str
    pretrained: str | None

    @classmethod
    def parse(cls, model: str) -> "OpenClipName":
        rest = model[len(PREFIX) :] if model.startswith(PREFIX) else model
        if rest.startswith(SCHEMAS):
            return cls(rest, None)
        architecture, _, pretrained = rest.partition("/")
        if not architecture or not pretrained:
            raise ClipError(
                f"encode.model = {model!r} names no weights: write open_clip:ARCH/TAG (e.g. "
                "open_clip:ViT-B-16/laion2b_s34b_b88k) or open_clip:ARCH/path/to/weights"
            )
        return cls(architecture, pretrained)

    def check(self) -> None:
        """A readable error for an unknown architecture or tag, before open_clip's own."""
        open_clip = _open_clip()
        if self.pretrained is None:
            return
        if open_clip.get_model_config(self.architecture) is None:
            close = difflib.get_close_matches(self.architecture, open_clip.list_models(), n=3)
            raise ClipError(
                f"open_clip has no architecture {self.architecture!r}"
                + (f" (did you mean {close}?)" if close else "")
                + f": see open_clip.list_models(), or register yours with {CONFIGS_ENV}"
            )
        tags = open_clip.list_pretrained_tags_by_model(self.architecture)
        if self.pretrained not in tags and not Path(self.pretrained).is_file():
            raise ClipError(
                f"open_clip:{self.architecture}/{self.pretrained}: {self.pretrained!r} is neither a pretrained tag "
                f"of {self.architecture} {tags} nor a weights file"
            )


def _config_digest(architecture: str) -> str | None:
    """A checksum of a registered architecture's config; None for open_clip's own (its name says it all)."""
    open_clip = _open_clip()
    config = open_clip.get_model_config(architecture)
    builtin = Path(open_clip.__file__).parent / "model_configs" / f"{architecture}.json"
    if builtin.is_file() and json.loads(builtin.read_text()) == config:
        return None
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def open_clip_identity(model: str) -> str:
    """`open_clip:ARCH/TAG`; a local weights file by its checksum (`open_clip:ARCH/file:<sha>`); a
    local-dir by the checksum of its files; `+cfg:<sha>` for an architecture registered by the user."""
    register_configs()
    name = OpenClipName.parse(model)
    name.check()
    if name.architecture.startswith("local-dir:"):
        folder = Path(name.architecture[len("local-dir:") :])
        if not folder.is_dir():
            raise ClipError(f"encode.model = {model!r}: {folder} is not a folder")
        digest = hashlib.sha256(
            "".join(f"{f.name}:{file_digest(f)}" for f in sorted(folder.iterdir()) if f.is_file()).encode()
        )
        return f"{PREFIX}local-dir:{digest.hexdigest()[:16]}"
    if name.pretrained is None:
        return f"{PREFIX}{name.architecture}"
    weights = f"file:{file_digest(Path(name.pretrained))}" if Path(name.pretrained).is_file() else name.pretrained
    config = _config_digest(name.architecture)
    return f"{PREFIX}{name.architecture}/{weights}" + (f"+cfg:{config}" if config else "")


def _text_tower(model: torch.nn.Module) -> torch.nn.Module:
    """The module holding the text transformer's embeddings and mask: `model.text` for custom-text models."""
    return getattr(model, "text", model)


def text_pool_type(model: torch.nn.Module) -> str | None:
    tower = _text_tower(model)
    return getattr(tower, "pool_type", getattr(model, "text_pool_type", None))


def text_is_trimmable(model: torch.nn.Module) -> bool:
    """Whether features from tokens cut after the longest text equal features from full padded rows:
    a causal mask (no token sees a later one), no padding mask or appended class token, and pooling at
    the end token (`argmax` or `eos`), which lies inside the text."""
    tower = _text_tower(model)
    mask = getattr(tower, "attn_mask", None)
    if mask is None or getattr(tower, "cls_emb", None) is not None or getattr(tower, "use_pad_mask", False):
        return False
    causal = torch.full(mask.shape, float("-inf")).triu(1)
    return torch.equal(mask.float().cpu(), causal) and text_pool_type(model) in ("argmax", "eos")


@contextmanager
def _first_positions(tower: torch.nn.Module, n: int):
    """The tower's positional embedding and causal mask cut to the first `n` positions for the block, so
    open_clip's own `encode_text` runs on `n` tokens."""
    position, mask = tower.positional_embedding, tower.attn_mask
    tower.positional_embedding = torch.nn.Parameter(position[:n], requires_grad=False)
    tower.attn_mask = mask[:n, :n]
    try:
        yield
    finally:
        tower.positional_embedding, tower.attn_mask = position, mask


class OpenClipEncoder(ClipEncoder):
    """An open_clip model with `ClipEncoder`'s methods; made by `pipeline.encoding.load.load_clip("open_clip:...")`."""

    def __init__(self, model: str, device: str = "auto", precision: str = "fp32", runtime: str = "auto"):
        open_clip = _open_clip()
        self.name = model
        self.identity = open_clip_identity(model)
        self.requested_device = device
        self.device = resolve_device(device)
        problem = precision_problem(precision, self.device)
        if problem:  # before the weights load, as for OpenAI models
            raise ClipError(problem)
        self.precision, self.runtime = precision, runtime
        name = OpenClipName.parse(model)
        try:
            self.model, _, _ = open_clip.create_model_and_transforms(
                name.architecture, pretrained=name.pretrained, device=self.device
            )
            self.tokenizer = open_clip.get_tokenizer(name.architecture)
        except Exception as e:  # a download that failed, weights that do not fit the architecture
            raise ClipError(
                f"encode.model = {model!r} could not be loaded ({type(e).__name__}: {str(e).splitlines()[0][:300]}); "
                "offline, download the weights elsewhere and name the file: open_clip:ARCH/path/to/weights"
            ) from None
        self.model.eval()
        preprocess = open_clip.get_model_preprocess_cfg(self.model)
        self.mean, self.std = tuple(preprocess["mean"]), tuple(preprocess["std"])
        self.interpolation = preprocess.get("interpolation", "bicubic")
        visual = self.model.visual
        self._pos_owner = visual.attnpool if hasattr(visual, "attnpool") else visual
        self._resizable = isinstance(getattr(self._pos_owner, "positional_embedding", None), torch.Tensor)
        self._native_pos = self._pos_owner.positional_embedding.data.clone() if self._resizable else None
        self._patch = visual.patch_size[0] if hasattr(visual, "patch_size") else 32
        size = getattr(visual, "image_size", None) or preprocess["size"]
        self.native_resolution = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.resolution = self.native_resolution
        self.trims_text = text_is_trimmable(self.model)
        self._embed_dim = int(self.encode_texts(["a"]).shape[1])
        log.info(
            "open_clip %s (%s): native %d px, text %s",
            model,
            self.identity,
            self.native_resolution,
            "trimmed to the longest text" if self.trims_text else "padded to the context length",
        )

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.visual.parameters()).dtype

    def set_resolution(self, resolution: int) -> None:
        if resolution == self.resolution:
            return
        if not self._resizable:
            raise ClipError(
                f"{self.name} encodes at {self.native_resolution} px only (its image tower, "
                f"{type(self.model.visual.trunk if hasattr(self.model.visual, 'trunk') else self.model.visual).__name__}, "
                f"has no positional embedding to interpolate): set the resolution to {self.native_resolution}, not {resolution}"
            )
        if resolution % self._patch:
            raise ClipError(
                f"resolution {resolution} is not a multiple of {self.name}'s patch size {self._patch}: "
                f"use e.g. {self._patch * round(resolution / self._patch)}"
            )
        resized = resize_positional_embedding(self._native_pos, resolution // self._patch).clone()
        self._pos_owner.positional_embedding = torch.nn.Parameter(resized, requires_grad=False)
        visual = self.model.visual
        if hasattr(visual, "grid_size"):
            visual.grid_size = (resolution // self._patch,) * 2
        visual.image_size = (resolution, resolution) if isinstance(visual.image_size, tuple) else resolution
        if resolution != self.native_resolution:
            log.info(
                "%s: positional embedding interpolated from %d to %d px", self.name, self.native_resolution, resolution
            )
        self.resolution = resolution

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """(n, context length) token ids from the model's own tokenizer, padded; a longer text is cut."""
        return self.tokenizer(list(texts))

    def token_lengths(self, tokens: torch.Tensor) -> list[int]:
        if not self.trims_text:
            return [tokens.shape[1]] * len(tokens)
        if text_pool_type(self.model) == "argmax":
            return (tokens.argmax(dim=-1) + 1).tolist()
        eos = tokens == _text_tower(self.model).eos_id  # `eos` pooling: the first end token
        return torch.where(eos.any(dim=-1), eos.int().argmax(dim=-1) + 1, tokens.shape[1]).tolist()

    @torch.no_grad()
    def encode_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        """Features of `tokenize` rows: a trimmable text tower (`text_is_trimmable`) runs only up to the
        batch's longest text, exactly; any other gets the full padded rows."""
        if len(tokens) == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        tokens = tokens.to(self.device)
        with autocast(self.precision, self.device):
            if not self.trims_text:
                return self.model.encode_text(tokens).float().cpu().numpy()
            n = max(self.token_lengths(tokens))
            with _first_positions(_text_tower(self.model), n):
                return self.model.encode_text(tokens[:, :n]).float().cpu().numpy()
