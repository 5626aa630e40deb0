"""evaluate: the trained adapter on the evaluation split's CLIP image embeddings."""

import torch

from pipeline import paths
from pipeline.adapter import AdapterBundle
from pipeline.artifacts import labelled_images, read_labels
from pipeline.evaluation import write_evaluation
from pipeline.stage import run


def main(params) -> None:
    labels = read_labels(params)
    bundle = AdapterBundle.load(paths.MODEL / "adapter.pt")
    if bundle.labels != labels.names:
        raise ValueError("the adapter was trained on another label set: run `dvc repro train` again")
    images = labelled_images(params, labels, params.evaluate.split, bundle.image_resolution)
    scores = bundle.scores(torch.from_numpy(images.vectors)).numpy()
    extra = {"image_resolution": bundle.image_resolution, "n_images_skipped": images.n_skipped}
    write_evaluation(paths.EVAL, images.ids, scores, images.targets, labels, extra, params.evaluate.integrate_with)


if __name__ == "__main__":
    run(main, "evaluate")
