"""Deprecation noise from dependencies, silenced at our entry points (`python -m stages.<name>`, `tai`).

clip-anytorch imports pkg_resources, which setuptools (>= 67) says is deprecated on every import, and
`clip.load` tries `torch.jit.load` first, which torch says is deprecated: lines a user cannot act
on, printed on every command. Our own warnings still show, and nothing is silenced when the user asks
for warnings (`python -W ...`, PYTHONWARNINGS). Only entry points call `silence`: a program that
imports `pipeline` as a library keeps its own warning settings.
"""

from __future__ import annotations

import sys
import warnings

OURS = r"(pipeline|stages)(\.|$)"  # modules whose warnings are ours (matched against the warning's module)
DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def silence() -> None:
    """Ignore deprecation warnings raised outside our modules, and setuptools' pkg_resources notice."""
    if sys.warnoptions:  # -W or PYTHONWARNINGS: the user chose which warnings to see
        return
    for category in DEPRECATIONS:
        warnings.filterwarnings("ignore", category=category, module=f"(?!{OURS})")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
