"""CLIP and the embeddings it makes: backbones by name, how the image tower runs, image decoding, the
content-addressed embedding cache, which image sets a setting encodes, dense features.

A room's `__init__.py` holds only this docstring (tests/test_dvc_deps.py): importing a room runs nothing."""
