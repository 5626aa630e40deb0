"""The data every stage reads: datasets on disk and their download, the manifest and the label table,
few-shot support sets and partial-label masks, and the joins of labels with embeddings and texts.

A room's `__init__.py` holds only this docstring (tests/test_dvc_deps.py): importing a room runs nothing."""
