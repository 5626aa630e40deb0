"""A trained classifier outside the pipeline: the exported folder and its model card, loading it
(`pipeline.load_classifier`), `tai predict`, `tai thresholds` and `tai gallery`.

A room's `__init__.py` holds only this docstring (tests/test_dvc_deps.py): importing a room runs nothing."""
