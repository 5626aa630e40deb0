"""A stage depends on the code it runs, not on code that sits beside a reader it borrows.

tests/test_dvc_deps.py keeps dvc.yaml equal to the import graph; this keeps the graph narrow where it
once was not: `generate` reads only the label table, so an edit to the embedding shard format or to
which image sets are encoded must not rerun caption generation; `centroids` computes offsets from
embeddings, so an edit to the training loop, the adapter or the noise must not rerun it. Issue 26 added:
`zeroshot` and `prompt` normalise vectors but run no adapter (`pipeline.encoding.vectors` holds the normaliser), so an
adapter edit reruns neither the CLIP baseline nor the peers' training; `encode_text` runs no image tower, so
the image runtime code does not rerun it; `download` reads the spec table only, not the label table or the
manifest format; and `train` stamps the bundle's precision from the text embeddings' own metadata, so that
param is no reason of its own to retrain."""

from pathlib import Path

import pytest
import yaml

from code_deps import code_deps, listed_code_deps, stage_modules

ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = ROOT / "dvc.yaml"

NOT_DEPS = {
    "generate": {"pipeline/encoding/embeddings.py", "pipeline/settings.py"},
    "centroids": {"pipeline/method/train.py", "pipeline/method/adapter.py", "pipeline/method/perturb.py"},
    "zeroshot": {"pipeline/method/adapter.py"},
    "prompt": {"pipeline/method/adapter.py"},
    "encode_text": {
        "pipeline/encoding/image_runtime.py",
        "pipeline/encoding/decode.py",
        "pipeline/encoding/encode_ray.py",
        "pipeline/encoding/encode_images.py",
    },
    "download": {"pipeline/data/labels.py", "pipeline/data/manifest.py"},
    # the Plan's readers: a peer's values, the dataset readers and the download code change none of their results
    "train": {"pipeline/prompt", "pipeline/data/datasets", "pipeline/data/download.py"},
    "encode_eval_images": {"pipeline/prompt"},
    "evaluate": {"pipeline/prompt", "pipeline/data/download.py"},
}
# params a stage must not list: it reads what they decided from its inputs (train: the text embeddings' metadata)
NOT_PARAMS = {
    "train": {"encode.precision"},
}


@pytest.mark.parametrize("stage", sorted(NOT_DEPS))
def test_stage_does_not_depend_on_code_it_does_not_run(stage):
    imported = code_deps(ROOT, stage_modules(DVC_YAML)[stage])
    listed = listed_code_deps(DVC_YAML)[stage]
    assert sorted(imported & NOT_DEPS[stage]) == [] and sorted(listed & NOT_DEPS[stage]) == []


@pytest.mark.parametrize("stage", sorted(NOT_PARAMS))
def test_stage_does_not_list_params_its_inputs_already_record(stage):
    listed = set(yaml.safe_load(DVC_YAML.read_text())["stages"][stage]["params"])
    assert sorted(listed & NOT_PARAMS[stage]) == []


def test_the_bundle_takes_its_clip_and_precision_from_the_text_embeddings():
    """What `train` stamps into the bundle is what encode_text recorded (sets from before encode.precision: fp32)."""
    from stages.train import encoded_with

    assert encoded_with({"model_identity": "openai:RN50", "precision": "bf16", "kind": "text"}) == (
        "openai:RN50",
        "bf16",
    )
    assert encoded_with({"model_identity": "openai:RN50"}) == ("openai:RN50", "fp32")
