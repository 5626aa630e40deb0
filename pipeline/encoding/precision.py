"""What the CLIP encoders compute in (`encode.precision`): whether a device can, and the autocast both towers run in.

Apart from the image runtimes (`pipeline.encoding.image_runtime`) because the text tower needs it too: encoding texts
does not depend on how images are run."""

from __future__ import annotations

import contextlib

import torch

from .runtime_names import PRECISIONS

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX), rather than emulating it."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def precision_problem(precision: str, device: torch.device) -> str | None:
    """Why `precision` cannot run on `device` (one line, naming the fix), or None where it can."""
    if precision not in PRECISIONS:
        return f"encode.precision = {precision!r} is not allowed: use one of {list(PRECISIONS)}"
    if precision == "fp16" and device.type != "cuda":
        return (
            "encode.precision = 'fp16' needs a CUDA GPU (none is used here): use bf16 on a CPU with bf16 "
            "instructions, or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "encode.precision = 'bf16' but this GPU has no bf16: use fp16 on it, or fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        return (
            "encode.precision = 'bf16' but this CPU has no bf16 instructions (AVX512-BF16 or AMX), where torch "
            "would emulate bf16 more slowly than fp32: use fp32"
        )
    return None


def autocast(precision: str, device: torch.device):
    """The context both encoders run in: autocast to bf16 / fp16, nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST[precision])
