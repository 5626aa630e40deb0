"""One thin entry per dvc.yaml stage, run as `python -m stages.<name>` from the project root."""
