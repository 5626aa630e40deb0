"""evaluate: the trained adapter on the evaluation split's CLIP image embeddings."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline import paths  # noqa: E402
from pipeline.adapter import AdapterBundle  # noqa: E402
from pipeline.artifacts import labelled_images, read_labels  # noqa: E402
from pipeline.evaluation import write_evaluation  # noqa: E402
from pipeline.stage import run  # noqa: E402


def main(params) -> None:
    labels = read_labels(params)
    bundle = AdapterBundle.load(paths.MODEL / "adapter.pt")
    if bundle.labels != labels.names:
        raise ValueError("the adapter was trained on another label set: run `dvc repro train` again")
    images = labelled_images(params, labels, params.evaluate.split, bundle.image_resolution)
    scores = bundle.scores(torch.from_numpy(images.vectors)).numpy()
    extra = {"image_resolution": bundle.image_resolution}
    write_evaluation(paths.EVAL, images.ids, scores, images.targets, labels, extra, params.evaluate.integrate_with)


if __name__ == "__main__":
    run(main, "evaluate")
