"""zeroshot: the CLIP baseline, cosine similarity of each image to "a photo of a {label}."."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from pipeline import paths  # noqa: E402
from pipeline.artifacts import labelled_images, read_labels  # noqa: E402
from pipeline.clip_model import ClipEncoder  # noqa: E402
from pipeline.evaluation import write_evaluation  # noqa: E402
from pipeline.stage import run  # noqa: E402


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main(params) -> None:
    labels = read_labels(params)
    images = labelled_images(params, labels, params.zeroshot.split, params.encode.image_resolution)
    encoder = ClipEncoder(params.encode.model, params.encode.device)
    prompts = [params.zeroshot.prompt.format(label=name) for name in labels.names]
    scores = unit(images.vectors) @ unit(encoder.encode_texts(prompts)).T
    write_evaluation(paths.ZEROSHOT, images.ids, scores, images.targets, labels, {"prompt": params.zeroshot.prompt})


if __name__ == "__main__":
    run(main, "zeroshot")
