"""A stage depends on the code it runs, not on code that sits beside a reader it borrows.

tests/test_dvc_deps.py keeps dvc.yaml equal to the import graph; this keeps the graph narrow where it
once was not: `generate` reads only the label table, so an edit to the embedding shard format or to
which image sets are encoded must not rerun caption generation; `centroids` computes offsets from
embeddings, so an edit to the training loop, the adapter or the noise must not rerun it."""

from pathlib import Path

import pytest

from code_deps import code_deps, listed_code_deps, stage_modules

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = ROOT / "dvc.yaml"

NOT_DEPS = {
    "generate": {"pipeline/embeddings.py", "pipeline/settings.py"},
    "centroids": {"pipeline/train.py", "pipeline/adapter.py", "pipeline/perturb.py"},
}


@pytest.mark.parametrize("stage", sorted(NOT_DEPS))
def test_stage_does_not_depend_on_code_it_does_not_run(stage):
    imported = code_deps(ROOT, stage_modules(DVC_YAML)[stage])
    listed = listed_code_deps(DVC_YAML)[stage]
    assert sorted(imported & NOT_DEPS[stage]) == [] and sorted(listed & NOT_DEPS[stage]) == []
