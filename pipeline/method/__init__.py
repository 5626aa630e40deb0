"""The paper's method: the adapter, the noise that lets text stand in for images, the centroids and
offsets, what each setting trains on, and the training loop.

A room's `__init__.py` holds only this docstring (tests/test_dvc_deps.py): importing a room runs nothing."""
