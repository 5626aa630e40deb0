"""How the image encoder runs: one callable per (resolution, precision), built from CLIP's visual tower.

`encode.runtime` picks how an fp32 image encoder executes; every runtime gives the embeddings of
plain fp32 torch to within `EXACT_ATOL` (the embedding cache key does not name the runtime):

- `torch`: the model as loaded, eager.
- `torchscript`: a channels_last copy traced, frozen and optimised for inference (core install).
- `onnxruntime`: the tower exported to ONNX and run by ONNX Runtime (`pip install onnx onnxruntime`).
- `compile`: `torch.compile` (needs a C++ compiler; about a minute to compile RN50 on 2 cores).
- `auto` (default): on a CPU, the first installed of `AUTO_ORDER` (fastest first, as measured in
  docs/encoding.md); on a GPU, eager torch (GPU runtimes are unmeasured).

A graph bakes in the attention pool's positional embedding, so it is built per resolution; a tower
a runtime cannot convert, or whose converted output strays from eager torch on a probe batch, is run
eagerly instead, with one log line saying why.

`encode.precision` bf16 (a CPU with bf16 instructions, or a GPU that has it) and fp16 (CUDA) run under
autocast, channels_last: on a CPU as a TorchScript graph traced under autocast, on a GPU eagerly.
Different numbers, so the precision is part of the cache key (`pipeline.encoding.encode`).

`ImageEncoder` runs a loaded CLIP's image tower so, at any resolution; the text tower needs none of this
(`pipeline.encoding.openai_clip`), so encoding texts does not depend on this file.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
import os
import sys
import warnings
import weakref
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import UserError

from .precision import autocast
from .runtime_names import RUNTIMES

log = logging.getLogger(__name__)

EXACT_ATOL = 1e-5  # an fp32 runtime's largest absolute difference from eager torch (embeddings of RN50 scale)
# fastest first on this project's CPU (docs/encoding.md)
AUTO_ORDER = ("onnxruntime", "torchscript")
PACKAGES = {"onnxruntime": ("onnx", "onnxruntime")}
LOW_PRECISION_MIN_COSINE = 0.999  # a bf16 / fp16 graph's probe embeddings against fp32: catches a broken graph
TRACE_IMAGES, PROBE_IMAGES = 2, 3  # a graph is built on one batch and checked on another of another size

Engine = Callable[[torch.Tensor], torch.Tensor]  # pixels (n, 3, r, r) float32 -> embeddings (n, d) float32


def installed(runtime: str) -> bool:
    """Whether the packages a runtime needs can be imported (torch's own runtimes always can)."""
    return all(importlib.util.find_spec(name) is not None for name in PACKAGES.get(runtime, ()))


def choose_runtime(runtime: str, precision: str, device: torch.device) -> str:
    """The runtime that will run: `runtime` itself, or what `auto` resolves to. bf16 / fp16 run under
    autocast, as a TorchScript graph on a CPU (runtime auto or torchscript), else eagerly."""
    if runtime not in RUNTIMES:
        raise UserError(f"encode.runtime = {runtime!r}: use one of {list(RUNTIMES)}")
    if precision != "fp32":
        return "torchscript" if device.type == "cpu" and runtime in ("auto", "torchscript") else "torch"
    if runtime != "auto":
        return runtime
    if device.type != "cpu":
        return "torch"
    return next((r for r in AUTO_ORDER if installed(r)), "torch")


class ImageEngine:
    """The image tower at one resolution, run as `build_engine` decides; `runtime` names what runs."""

    def __init__(
        self,
        visual: torch.nn.Module,
        resolution: int,
        runtime: str = "auto",
        precision: str = "fp32",
        device: torch.device = torch.device("cpu"),
    ):
        self._run, self.runtime = build_engine(visual, resolution, runtime, precision, device)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, r, r) pixels -> (n, d) float32 embeddings on the CPU."""
        return self._run(pixels)


class ImageEncoder:
    """A loaded CLIP's (`pipeline.encoding.load.load_clip`) image tower as its `encode.runtime` runs it in its
    `encode.precision`, at any resolution: one ImageEngine per resolution (a graph bakes in the positional
    embedding), built the first time that resolution is asked for and reused when it comes back."""

    def __init__(self, encoder):
        self.encoder = encoder
        self.engines: dict[int, ImageEngine] = {}

    def __call__(self, pixels: torch.Tensor, resolution: int) -> np.ndarray:
        """Features of preprocessed pixels at `resolution` (raw, float32): within 1e-5 of eager fp32 torch
        for every fp32 runtime."""
        self.encoder.set_resolution(resolution)
        return self.engine(resolution)(pixels).numpy()

    def engine(self, resolution: int) -> ImageEngine:
        """The engine at `resolution` (already set on the encoder)."""
        if resolution not in self.engines:
            e = self.encoder
            self.engines[resolution] = ImageEngine(e.model.visual, resolution, e.runtime, e.precision, e.device)
        return self.engines[resolution]


_IMAGE_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def image_encoder(encoder) -> ImageEncoder:
    """The one ImageEncoder of a loaded CLIP, so every caller (each image set a stage encodes, a benchmark's
    variants) reuses the graphs built for it rather than building them again."""
    if encoder not in _IMAGE_ENCODERS:
        _IMAGE_ENCODERS[encoder] = ImageEncoder(encoder)
    return _IMAGE_ENCODERS[encoder]


def _eager(visual: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> Engine:
    return lambda pixels: visual(pixels.to(device, dtype))


def _autocast(visual: torch.nn.Module, device: torch.device, precision: str) -> Engine:
    tower = copy.deepcopy(visual).to(memory_format=torch.channels_last)

    def run(pixels: torch.Tensor) -> torch.Tensor:
        with autocast(precision, device):
            return tower(pixels.to(device, torch.float32).contiguous(memory_format=torch.channels_last))

    return run


def _traced_autocast(visual: torch.nn.Module, example: torch.Tensor, precision: str) -> Engine:
    tower = copy.deepcopy(visual).to(memory_format=torch.channels_last).requires_grad_(False)
    example = example.contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings(), autocast(precision, torch.device("cpu")):
        warnings.simplefilter("ignore")
        graph = torch.jit.freeze(torch.jit.trace(tower, example, check_trace=False))

    def run(pixels: torch.Tensor) -> torch.Tensor:
        with autocast(precision, torch.device("cpu")):
            return graph(pixels.to(torch.float32).contiguous(memory_format=torch.channels_last))

    return run


def _torchscript(visual: torch.nn.Module, example: torch.Tensor) -> Engine:
    tower = copy.deepcopy(visual).to(memory_format=torch.channels_last).requires_grad_(False)
    example = example.contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(tower, example, check_trace=False)))
    return lambda pixels: graph(pixels.contiguous(memory_format=torch.channels_last))


def _onnxruntime(visual: torch.nn.Module, example: torch.Tensor) -> Engine:
    import onnxruntime

    graph = io.BytesIO()
    export_onnx(copy.deepcopy(visual), example, graph, "pixels", "embeddings")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])
    return lambda pixels: torch.from_numpy(session.run(None, {"pixels": pixels.contiguous().numpy()})[0])


ONNX_OPSET = 17


def export_onnx(module: torch.nn.Module, example: torch.Tensor, destination, input_name: str, output_name: str) -> None:
    """`module` as an ONNX graph (TorchScript exporter, opset `ONNX_OPSET`) with a free batch axis, into a path
    or a file object. nn.MultiheadAttention's fused fast path is off while tracing (its kernel has no ONNX form:
    open_clip's ViTs use it), and the exporter's warnings and C++ graph dump are silenced."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), _quiet_output(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
            torch.onnx.export(
                module,
                (example,),
                destination,
                dynamo=False,
                opset_version=ONNX_OPSET,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            )
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


@contextlib.contextmanager
def _quiet_output():
    """File descriptors 1 and 2 sent to /dev/null: torch's C++ exporter prints there ("Torch IR graph at
    exception: ..."), out of Python's reach."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
        yield
    finally:
        for fd, copy_of in zip((1, 2), saved):
            os.dup2(copy_of, fd)
            os.close(copy_of)


def _compile(visual: torch.nn.Module, example: torch.Tensor) -> Engine:
    compiled = torch.compile(
        copy.deepcopy(visual).requires_grad_(False), dynamic=True
    )  # one build for every batch size
    return lambda pixels: compiled(pixels)


GRAPH_BUILDERS = {"torchscript": _torchscript, "onnxruntime": _onnxruntime, "compile": _compile}


def build_engine(
    visual: torch.nn.Module,
    resolution: int,
    runtime: str = "auto",
    precision: str = "fp32",
    device: torch.device = torch.device("cpu"),
) -> tuple[Engine, str]:
    """(engine, the runtime it uses) for `visual` at `resolution`. A graph that fails to build, or whose
    probe embeddings stray from eager torch (fp32: by more than `EXACT_ATOL`; bf16: below
    `LOW_PRECISION_MIN_COSINE`), is not used: `auto` tries the next installed runtime of `AUTO_ORDER`, and
    then eager torch, with one log line saying why. The engine runs under
    no_grad and returns float32 on the CPU."""
    chosen = choose_runtime(runtime, precision, device)
    if precision != "fp32":
        if runtime not in ("auto", "torch", chosen):
            log.info("image runtime %s runs fp32 only; %s runs as %s under autocast", runtime, precision, chosen)
        return _low_precision(visual, resolution, chosen, precision, device)
    eager = _guarded(_eager(visual, device, next(visual.parameters()).dtype))
    if chosen == "torch":
        return eager, "torch"
    reason = _unusable(visual, chosen, device)
    if reason:
        log.warning("image runtime %s %s; using eager torch", chosen, reason)
        return eager, "torch"
    probe = _probe(resolution)
    exact = eager(probe)
    # auto tries the next installed runtime where one cannot convert a tower (ONNX lacks an open_clip ViT's fused
    # attention, which TorchScript traces); a runtime named in encode.runtime is the only one tried
    candidates = [chosen] if runtime != "auto" else [r for r in AUTO_ORDER if installed(r)]
    skipped = []
    for candidate in candidates[candidates.index(chosen) :]:
        engine, difference, problem = _converted(
            GRAPH_BUILDERS[candidate], visual, probe, lambda out: float((out - exact).abs().max())
        )
        if engine is not None and difference <= EXACT_ATOL:
            log.info(
                "image encoder @%dpx: %s (probe difference from eager torch %.1e)%s",
                resolution,
                candidate,
                difference,
                "".join(f"; {s}" for s in skipped),
            )
            return engine, candidate
        skipped.append(
            f"image runtime {candidate} "
            + (problem or f"differs from eager torch by {difference:.2e} (> {EXACT_ATOL:.0e}) on a probe batch")
        )
    log.warning("%s; using eager torch", "; ".join(skipped))
    return eager, "torch"


def _low_precision(
    visual: torch.nn.Module, resolution: int, chosen: str, precision: str, device: torch.device
) -> tuple[Engine, str]:
    """bf16 / fp16 under autocast: a TorchScript graph traced under autocast (`chosen` torchscript),
    else eager channels_last torch."""
    eager = _guarded(_autocast(visual, device, precision))
    if chosen != "torchscript":
        return eager, f"torch-{precision}"
    probe = _probe(resolution)
    with torch.no_grad():
        exact = visual(probe)
    engine, cosine, problem = _converted(
        lambda tower, example: _traced_autocast(tower, example, precision),
        visual,
        probe,
        lambda out: float(F.cosine_similarity(out, exact).min()),
    )
    if engine is None or not cosine >= LOW_PRECISION_MIN_COSINE:
        log.warning(
            "image runtime torchscript-%s %s; using eager autocast",
            precision,
            problem or f"has cosine {cosine:.6f} to fp32 on a probe batch",
        )
        return eager, f"torch-{precision}"
    log.info("image encoder @%dpx: torchscript-%s (probe cosine to fp32 %.6f)", resolution, precision, cosine)
    return engine, f"torchscript-{precision}"


def _unusable(visual: torch.nn.Module, runtime: str, device: torch.device) -> str | None:
    dtype = next(visual.parameters()).dtype
    if device.type != "cpu" or dtype != torch.float32:
        return f"runs fp32 CPU towers only (this one: {device.type}, {dtype})"
    if not installed(runtime):
        return f"is not installed (pip install {' '.join(PACKAGES[runtime])})"
    return None


def _probe(resolution: int, n: int = PROBE_IMAGES, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))


def _converted(
    builder, visual: torch.nn.Module, probe: torch.Tensor, measure
) -> tuple[Engine | None, float, str | None]:
    """(engine, measure(its output on `probe`), None), or (None, nan, why) where the tower cannot be converted.
    The graph is built on another batch (`TRACE_IMAGES`), so one that froze a batch size or the example's
    values fails the probe."""
    example = _probe(probe.shape[-1], TRACE_IMAGES, seed=0)
    try:
        with torch.no_grad():
            engine = _guarded(builder(visual.eval(), example))
            return engine, measure(engine(probe)), None
    except Exception as e:  # noqa: BLE001 - a tower this runtime cannot convert (control flow, custom ops)
        first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return None, float("nan"), f"could not convert this image tower ({type(e).__name__}: {first_line})"


def _guarded(engine: Engine) -> Engine:
    def run(pixels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return engine(pixels).float().cpu()

    return run
