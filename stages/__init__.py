"""One thin entry per dvc.yaml stage, run as `python -m stages.<name>` from the project root.

Importing the package (which `python -m stages.<name>` does first) silences dependencies' deprecation
noise before any of them is imported (`pipeline.dependency_warnings`)."""

from pipeline.dependency_warnings import silence

silence()
