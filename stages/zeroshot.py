"""zeroshot: the CLIP baseline, cosine similarity of each image to "a photo of a {label}."."""

import torch

from pipeline import paths
from pipeline.data.labelled_images import labelled_images
from pipeline.data.labels import read_labels
from pipeline.encoding.load import load_clip
from pipeline.encoding.vectors import normalize
from pipeline.evaluation.results import write_empty_evaluation, write_evaluation
from pipeline.settings import plan
from pipeline.stage import run, skipped


def main(params) -> None:
    labels, the_plan = read_labels(params.prepare.dataset), plan(params)
    if skipped(the_plan.off, "zeroshot", f"empty tables and metrics under {paths.ZEROSHOT}"):
        write_empty_evaluation(paths.ZEROSHOT, paths.ZEROSHOT_METRICS, labels)
        return
    s = the_plan.zeroshot_images
    images = labelled_images(params.prepare.dataset, labels, s.split, s.resolution, s.purpose)
    encoder = load_clip(
        params.encode.model, params.encode.device, params.encode.precision
    )  # prompts as texts are encoded
    prompts = [params.zeroshot.prompt.format(label=name) for name in labels.names]
    image_units = normalize(torch.from_numpy(images.vectors)).double()
    prompt_units = normalize(torch.from_numpy(encoder.encode_texts(prompts))).double()
    scores = (image_units @ prompt_units.T).numpy()  # cosine similarity
    write_evaluation(
        paths.ZEROSHOT,
        paths.ZEROSHOT_METRICS,
        images.ids,
        scores,
        images.targets,
        labels,
        {"n_images_skipped": images.n_skipped},
    )


if __name__ == "__main__":
    run(main, "zeroshot")
