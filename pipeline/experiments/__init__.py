"""Many runs at once: `tai sweep`, `tai report` (and `--per-class`), and the paper's numbers a
run is compared with.

A room's `__init__.py` holds only this docstring (tests/test_dvc_deps.py): importing a room runs nothing."""
