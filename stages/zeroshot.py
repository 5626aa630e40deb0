"""zeroshot: the CLIP baseline, cosine similarity of each image to "a photo of a {label}."."""

import torch

from pipeline import paths
from pipeline.labelled_images import labelled_images
from pipeline.labels import read_labels
from pipeline.encoders import load_clip
from pipeline.evaluation import write_empty_evaluation, write_evaluation
from pipeline.stage import run, skip_without_images
from pipeline.vectors import normalize


def main(params) -> None:
    labels = read_labels(params.prepare.dataset)
    if skip_without_images(params.prepare.has_images, "zeroshot", f"empty tables and metrics under {paths.ZEROSHOT}"):
        write_empty_evaluation(paths.ZEROSHOT, paths.ZEROSHOT_METRICS, labels)
        return
    images = labelled_images(params.prepare.dataset, labels, params.zeroshot.split, params.encode.image_resolution, "eval")
    encoder = load_clip(params.encode.model, params.encode.device, params.encode.precision)   # prompts as texts are encoded
    prompts = [params.zeroshot.prompt.format(label=name) for name in labels.names]
    image_units = normalize(torch.from_numpy(images.vectors)).double()
    prompt_units = normalize(torch.from_numpy(encoder.encode_texts(prompts))).double()
    scores = (image_units @ prompt_units.T).numpy()   # cosine similarity
    write_evaluation(paths.ZEROSHOT, paths.ZEROSHOT_METRICS, images.ids, scores, images.targets, labels,
                     {"n_images_skipped": images.n_skipped})


if __name__ == "__main__":
    run(main, "zeroshot")
