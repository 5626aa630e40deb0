"""Scoring: AP and mAP, per-label thresholds, the evaluation tables, and the pictures and plot data
the stages write into reports/.

A room's `__init__.py` holds only this docstring (tests/test_dvc_deps.py): importing a room runs nothing."""
