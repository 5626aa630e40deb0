"""Which datasets are labels only (no images): the one fact about a dataset that decides the setting
(pipeline.settings). Apart from the dataset spec table (pipeline/data/datasets/specs.py, which takes it from here) so
that the stages reading the Plan do not depend on the dataset readers and download code."""

LABELS_ONLY_DATASETS = frozenset({"labels"})  # prepare.dataset values whose projects have label names and no images
