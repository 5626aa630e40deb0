"""zeroshot: the CLIP baseline, cosine similarity of each image to "a photo of a {label}."."""

import numpy as np

from pipeline import paths
from pipeline.artifacts import labelled_images, read_labels
from pipeline.clip_model import ClipEncoder
from pipeline.evaluation import write_empty_evaluation, write_evaluation
from pipeline.stage import run, skip_without_images


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main(params) -> None:
    labels = read_labels(params)
    if skip_without_images(params, "zeroshot", f"empty tables and metrics under {paths.ZEROSHOT}"):
        write_empty_evaluation(paths.ZEROSHOT, paths.ZEROSHOT_METRICS, labels)
        return
    images = labelled_images(params, labels, params.zeroshot.split, params.encode.image_resolution, "eval")
    encoder = ClipEncoder(params.encode.model, params.encode.device)
    prompts = [params.zeroshot.prompt.format(label=name) for name in labels.names]
    scores = unit(images.vectors) @ unit(encoder.encode_texts(prompts)).T
    write_evaluation(paths.ZEROSHOT, paths.ZEROSHOT_METRICS, images.ids, scores, images.targets, labels,
                     {"n_images_skipped": images.n_skipped})


if __name__ == "__main__":
    run(main, "zeroshot")
