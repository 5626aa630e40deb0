"""Loading a GGUF with llama-cpp-python, with the settings that are safe on every x86 and ARM CPU.

On load, llama.cpp repacks a model's weights into "extra buffer types" that its faster CPU kernels
read (AMX tiles on Intel Sapphire Rapids and later; interleaved Q4_0 / IQ4_NL / Q4_K layouts for
AVX2 and ARM). On a 2-core Xeon with AMX, the AMX path crashed the first decode of the embedded
SmolLM2 with SIGSEGV (ggml_backend_amx_mul_mat), taking `generate` and the pytest process with it.
So repacking is off here unless `generate.repack_weights` (ours, off by default) turns it on;
docs/models.md has what it buys where it works.

Every Llama of the project (the backend, the decode probe, the benchmarks) is built by `load_llama`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

# llama-cpp-python's first release whose llama_model_params has use_extra_bufts (the lower bound in pyproject.toml)
MIN_LLAMA_CPP_PYTHON = "0.3.15"
_PATCH_LOCK = threading.Lock()


class RepackSwitchMissing(RuntimeError):
    """This llama-cpp-python cannot turn weight repacking off."""


def load_llama(model_path: str | Path, *, repack_weights: bool = False, **llama_kwargs):
    """`llama_cpp.Llama(model_path, **llama_kwargs)` with llama.cpp's weight repacking on or off.

    Llama() takes no argument for it: it reads `llama_model_default_params()` and loads the model in
    the same call, so the defaults it reads are patched for that one call."""
    from llama_cpp import Llama

    with _PATCH_LOCK, _default_model_params(use_extra_bufts=repack_weights):
        return Llama(model_path=str(model_path), **llama_kwargs)


@contextmanager
def _default_model_params(*, use_extra_bufts: bool):
    import llama_cpp
    import llama_cpp.llama_cpp as low

    fields = {name for name, *_ in low.llama_model_params._fields_}
    if "use_extra_bufts" not in fields:
        raise RepackSwitchMissing(
            f"llama-cpp-python {llama_cpp.__version__} cannot turn llama.cpp's weight repacking off (it crashes on "
            f"some CPUs): install {MIN_LLAMA_CPP_PYTHON} or later, e.g. pip install -e . -c constraints.txt"
        )
    default = low.llama_model_default_params

    def defaults():
        params = default()
        params.use_extra_bufts = use_extra_bufts
        return params

    low.llama_model_default_params = defaults
    try:
        yield
    finally:
        low.llama_model_default_params = default
