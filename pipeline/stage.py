"""What every stage entry shares: logging, params, and turning known input errors into
one clear line (exit code 2) instead of a traceback."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from .config import Params, load_params
from .errors import EXIT_USER_ERROR, UserError, one_line

# Errors that mean bad input, not a bug: the message says what and how to fix it.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def run(stage: Callable[[Params], None], name: str) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        stage(load_params())
    except USER_ERRORS as e:
        logging.getLogger(name).error("%s", one_line(e))
        sys.exit(EXIT_USER_ERROR)


def skip_without_images(has_images: bool, name: str, writing: str) -> bool:
    """True, after one log line, when the project has no images (`prepare.dataset: labels`, so
    `has_images` is False): the image stage `name` then writes only its empty outputs (`writing` says which)."""
    if has_images:
        return False
    logging.getLogger(name).info("prepare.dataset is 'labels' (no images): skipping %s, writing %s", name, writing)
    return True
