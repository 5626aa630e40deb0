"""Any CLIP backbone by its `encode.model` name: OpenAI names and checkpoints (`pipeline.encoding.openai_clip`),
open_clip names (`open_clip:ARCH/TAG`, `pipeline.encoding.open_clip_backbones`). Every caller loads through `load_clip`,
so a stage, `tai predict` and the Ray actors read a name the same way."""

from __future__ import annotations

from .open_clip_backbones import OpenClipEncoder
from .openai_clip import ClipEncoder, is_open_clip


def load_clip(model: str = "RN50", device: str = "auto", precision: str = "fp32", runtime: str = "auto") -> ClipEncoder:
    """The encoder for `model` on `device` (auto | cpu | cuda), computing in `precision` (encode.precision), its
    image tower run by `runtime` (encode.runtime); a ClipError names a model that cannot be used."""
    if is_open_clip(model):
        return OpenClipEncoder(model, device, precision, runtime)
    return ClipEncoder(model, device, precision, runtime)
