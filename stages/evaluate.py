"""evaluate: the trained adapter on the evaluation split's CLIP image embeddings."""

import logging

import torch

from pipeline import paths
from pipeline.adapter import AdapterBundle
from pipeline.config import INTEGRATE_PROMPT
from pipeline.environment import run_record
from pipeline.io import write_json
from pipeline.labelled_images import labelled_images
from pipeline.labels import read_labels
from pipeline.evaluation import write_empty_evaluation, write_evaluation
from pipeline.stage import run, skip_without_images

log = logging.getLogger("evaluate")


def main(params) -> None:
    labels = read_labels(params.prepare.dataset)
    e = params.encode   # the machine and libraries behind these numbers: columns of `dvc exp show`, not of `tai report`
    write_json(run_record(e.runtime, e.precision, e.device), paths.ENVIRONMENT_METRICS)
    if skip_without_images(params.prepare.has_images, "evaluate", f"empty tables and metrics under {paths.EVAL}"):
        write_empty_evaluation(paths.EVAL, paths.EVAL_METRICS, labels)
        return
    bundle = AdapterBundle.load(paths.MODEL)
    if bundle.labels != labels.names:
        raise ValueError("the adapter was trained on another label set: run `dvc repro train` again")
    images = labelled_images(params.prepare.dataset, labels, params.evaluate.split, bundle.image_resolution, "eval")
    scores = bundle.scores(torch.from_numpy(images.vectors)).numpy()
    extra = {"image_resolution": bundle.image_resolution, "n_images_skipped": images.n_skipped}
    integrate_with = params.evaluate.integrate_with
    if integrate_with == INTEGRATE_PROMPT:   # the prompt stage's scores (prompt.method), a dvc.yaml dep
        integrate_with = str(paths.PROMPT_SCORES)
        if params.prompt.method == "none":   # nothing to integrate with: the columns stay, without a number
            log.info("evaluate.integrate_with is 'prompt' but prompt.method is none: integrated_map is null")
            integrate_with, extra = None, {**extra, "other_map": None, "integrated_map": None}
    write_evaluation(paths.EVAL, paths.EVAL_METRICS, images.ids, scores, images.targets, labels, extra,
                     integrate_with, params.evaluate.integrate_scaling)


if __name__ == "__main__":
    run(main, "evaluate")
