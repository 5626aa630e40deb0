"""What every stage entry shares: logging, params, and turning known input errors into
one clear line (exit code 2) instead of a traceback."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Callable

from .config import Params, ParamsError, load_params

USER_ERRORS: tuple[type[BaseException], ...] = (ParamsError, FileNotFoundError)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input, not a bug: the message says what and how to fix it."""
    from .clip_model import ClipError
    from .adapter import AdapterError
    from .labels import LabelError
    from .train import TrainingDiverged

    found = [*USER_ERRORS, LabelError, ClipError, TrainingDiverged, AdapterError]
    try:
        from .datasets import DatasetError

        found.append(DatasetError)
    except ImportError:
        pass
    return tuple(found)


def run(stage: Callable[[Params], None], name: str) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s", datefmt="%H:%M:%S")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    warnings.filterwarnings("ignore", message=".*torch.jit.load.*")
    try:
        stage(load_params())
    except user_errors() as e:
        logging.getLogger(name).error("%s", e)
        sys.exit(2)
