"""evaluate: the trained adapter on the evaluation split's CLIP image embeddings."""

import logging

import numpy as np
import torch

from pipeline import paths
from pipeline.config import INTEGRATE_PROMPT
from pipeline.data.labelled_images import labelled_images
from pipeline.data.labels import read_labels
from pipeline.data.texts import read_texts, text_embeddings
from pipeline.environment import run_record
from pipeline.errors import UserError
from pipeline.evaluation.figures import placeholder_figure
from pipeline.evaluation.gap_figure import gap_figure, gap_sample
from pipeline.evaluation.results import optional_scores, write_empty_evaluation, write_evaluation
from pipeline.evaluation.thresholds import DEFAULT_THRESHOLD
from pipeline.io import write_json
from pipeline.method.adapter import AdapterBundle
from pipeline.settings import plan
from pipeline.stage import run, skipped

log = logging.getLogger("evaluate")


def draw_modality_gap(params, the_plan, labels, images) -> None:
    """reports/modality_gap.png: texts and evaluation images of a few labels, before and after the texts'
    noise (the Plan's text noise: train.radius); in the partial-label setting the texts are shifted first:
    see reports/centroids.png."""
    if "centroids" not in the_plan.off:  # the partial-label setting draws reports/centroids.png instead
        placeholder_figure(
            paths.MODALITY_GAP_PLOT,
            "partial labels: texts are shifted before the noise; see reports/centroids.png (the paper's Fig. 7)",
        )
        return
    texts = read_texts(labels)
    sample = gap_sample(
        labels.names,
        text_embeddings(texts),
        labels.multi_hot(texts["labels"].to_list()),
        images.vectors,
        images.targets,
        params.train.seed,
    )
    t, noise = params.train, the_plan.text_noise
    gap_figure(paths.MODALITY_GAP_PLOT, sample, noise.radius, noise.kind, t.normalize, t.seed, params.evaluate.split)


def main(params) -> None:
    labels, the_plan = read_labels(params.prepare.dataset), plan(params)
    e = params.encode  # the machine and libraries behind these numbers: columns of `dvc exp show`, not of `tai report`
    write_json(run_record(e.runtime, e.precision, e.device), paths.ENVIRONMENT_METRICS)
    if skipped(the_plan.off, "evaluate", f"empty tables and metrics under {paths.EVAL}"):
        write_empty_evaluation(paths.EVAL, paths.EVAL_METRICS, labels, paths.PER_CLASS_PLOT)
        placeholder_figure(paths.MODALITY_GAP_PLOT, "no images: no modality-gap picture")
        return
    bundle = AdapterBundle.load(paths.MODEL)
    if bundle.labels != labels.names:
        only_model = [n for n in bundle.labels if n not in labels.names][:5]
        only_data = [n for n in labels.names if n not in bundle.labels][:5]
        raise UserError(
            f"{paths.MODEL} was trained on another label set than prepare.dataset "
            f"{params.prepare.dataset!r} has ({len(bundle.labels)} vs {len(labels.names)} labels; only in "
            f"the adapter: {only_model}, only in the dataset: {only_data}): run `dvc repro train` again"
        )
    s = the_plan.evaluation_images
    if bundle.image_resolution != s.resolution:
        raise UserError(
            f"{paths.MODEL} was trained for {bundle.image_resolution} px but this setting evaluates at "
            f"{s.resolution} px: run `dvc repro train` again"
        )
    images = labelled_images(params.prepare.dataset, labels, s.split, s.resolution, s.purpose)
    scores = bundle.scores(torch.from_numpy(images.vectors)).numpy()
    extra = {"image_resolution": bundle.image_resolution, "n_images_skipped": images.n_skipped}
    integrate_with, no_peer = params.evaluate.integrate_with, the_plan.off.get("prompt")
    if integrate_with == INTEGRATE_PROMPT:  # the prompt stage's scores (prompt.method), a dvc.yaml dep
        integrate_with = str(paths.PROMPT_SCORES)
        if no_peer:  # nothing to integrate with: the columns stay, without a number
            log.info("evaluate.integrate_with is 'prompt' but %s: integrated_map is null", no_peer)
            integrate_with, extra = None, {**extra, "other_map": None, "integrated_map": None}
    others = {
        "zeroshot": optional_scores(paths.ZEROSHOT_SCORES, images.ids, labels),  # the CLIP baseline
        "prompt": None if no_peer else optional_scores(paths.PROMPT_SCORES, images.ids, labels),
    }
    extra["thresholds_on_data"] = int(
        bundle.threshold_source != "none"
    )  # 1: chosen on held-out labelled images, 0: 0.5
    draw_modality_gap(params, the_plan, labels, images)
    write_evaluation(
        paths.EVAL,
        paths.EVAL_METRICS,
        images.ids,
        scores,
        images.targets,
        labels,
        extra,
        integrate_with,
        params.evaluate.integrate_scaling,
        params.evaluate.integrate_weight,
        thresholds=np.array(bundle.thresholds or [DEFAULT_THRESHOLD] * len(labels), dtype=np.float64),
        plots=(paths.PER_CLASS_PLOT, others),
    )


if __name__ == "__main__":
    run(main, "evaluate")
