"""What every stage entry shares: logging, params, and turning known input errors into
one clear line (exit code 2) instead of a traceback."""

from __future__ import annotations

import logging
import re
import sys
import warnings
from typing import Callable

from .config import Params, load_params
from .errors import EXIT_USER_ERROR, UserError

# Errors that mean bad input, not a bug: the message says what and how to fix it.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def run(stage: Callable[[Params], None], name: str) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s", datefmt="%H:%M:%S")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    warnings.filterwarnings("ignore", message=".*torch.jit.load.*")
    try:
        stage(load_params())
    except USER_ERRORS as e:
        logging.getLogger(name).error("%s", one_line(e))
        sys.exit(EXIT_USER_ERROR)


def one_line(error: BaseException) -> str:
    """The error's message on one line (a library's message, such as a parser's, may span several)."""
    return re.sub(r"\s*\n\s*", " ", str(error).strip())


def skip_without_images(params: Params, name: str, writing: str) -> bool:
    """True, after one log line, when the project has no images (`prepare.dataset: labels`): the
    image stage `name` then writes only its empty outputs (`writing` says which)."""
    if params.prepare.has_images:
        return False
    logging.getLogger(name).info("prepare.dataset is 'labels' (no images): skipping %s, writing %s", name, writing)
    return True
