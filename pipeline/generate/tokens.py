"""CLIP token counting with CLIP's own BPE tokenizer (the text encoder's context is 77 tokens).

`clip/simple_tokenizer.py` is loaded on its own so that counting tokens does not import torch
(the `clip` package's __init__ does): the generate stage stays light.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache

CLIP_CONTEXT = 77  # tokens, start and end tokens included


@lru_cache(maxsize=1)
def _tokenizer():
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the 'clip' package (pip install clip-anytorch) is needed to count CLIP tokens")
    if "clip.simple_tokenizer" in sys.modules:
        module = sys.modules["clip.simple_tokenizer"]
    else:
        from pathlib import Path

        location = Path(list(spec.submodule_search_locations)[0]) / "simple_tokenizer.py"
        file_spec = importlib.util.spec_from_file_location("_tai_clip_simple_tokenizer", location)
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
    return module.SimpleTokenizer()


def clip_token_count(text: str) -> int:
    """Tokens CLIP's text encoder sees for `text`, start and end tokens included."""
    return len(_tokenizer().encode(text)) + 2


def fits_clip(text: str) -> bool:
    return clip_token_count(text) <= CLIP_CONTEXT
