"""What every stage entry shares: logging, params checked (each key, then the Plan: pipeline.settings) before
any work, turning known input errors into one clear line (exit code 2) instead of a traceback, and one way of
writing only empty outputs when the run's setting leaves a stage nothing to do."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from .config import Params, load_params
from .errors import EXIT_USER_ERROR, UserError, one_line
from .settings import plan

# Errors that mean bad input, not a bug: the message says what and how to fix it.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def run(stage: Callable[[Params], None], name: str) -> None:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        params = load_params()
        plan(params)  # keys that cannot work together stop every stage, before any work
        stage(params)
    except USER_ERRORS as e:
        logging.getLogger(name).error("%s", one_line(e))
        sys.exit(EXIT_USER_ERROR)


def skipped(off: dict[str, str], name: str, writing: str) -> bool:
    """True, after one log line, when the Plan says stage `name` has nothing to do in this run (`off` is
    `Plan.off`: stage -> why); the stage then writes only its empty outputs (`writing` says which)."""
    if name not in off:
        return False
    logging.getLogger(name).info("%s: skipping %s, writing %s", off[name], name, writing)
    return True
