"""prompt: a peer method (prompt.method: coop | dualcoop | taidpt) trained on the same prepared data and
CLIP, scored on the evaluation split; evaluate.integrate_with: prompt averages its scores with the
adapter's (the paper's starred rows). With prompt.method none: empty tables, and metrics whose `map`
is null (no method, so no number: a 0 would read as a score). A killed run resumes after its last finished
epoch from a checkpoint in the per-user cache (pipeline.paths.prompt_checkpoint), removed once the outputs
are written."""

import logging

import numpy as np
import polars as pl

from pipeline import paths
from pipeline.data.labels import read_labels
from pipeline.evaluation.results import write_empty_evaluation, write_evaluation
from pipeline.io import write_json, write_text, write_torch
from pipeline.settings import plan
from pipeline.stage import run, skipped

log = logging.getLogger("prompt")

EMPTY_SUMMARY = {"map": None, "n_train": 0, "epochs": 0, "final_loss": None, "seconds_per_epoch": 0.0}


def main(params) -> None:
    labels, the_plan = read_labels(params.prepare.dataset), plan(params)
    peer = the_plan.peer
    if skipped(the_plan.off, "prompt", f"empty tables under {paths.PROMPT} and a metrics file without a mAP"):
        write_empty_evaluation(paths.PROMPT, paths.PROMPT_METRICS, labels)
        write_json({**EMPTY_SUMMARY, "n_images": 0, "n_classes_scored": 0}, paths.PROMPT_METRICS)
        write_text("epoch,loss,lr,seconds\n", paths.PROMPT_LOG)
        write_torch({"method": "none"}, paths.PROMPT_CONTEXT)
        return
    from pipeline.prompt.train_and_score import (
        run_prompt_method,  # lazy: prompt.method none loads no peer, CLIP or dense code
    )

    result = run_prompt_method(params, peer, labels)
    write_torch(
        {
            "method": peer.name,
            "labels": list(labels.names),
            "model": params.encode.model,
            "context": result.context,
            **result.summary,
        },
        paths.PROMPT_CONTEXT,
    )
    write_text(pl.DataFrame(result.history).write_csv(), paths.PROMPT_LOG)
    metrics = write_evaluation(
        paths.PROMPT,
        paths.PROMPT_METRICS,
        result.ids,
        result.scores.astype(np.float32),
        result.targets,
        labels,
        result.summary,
    )
    log.info("%s: mAP %.4f on %d images of %s", peer.name, metrics["map"], metrics["n_images"], params.evaluate.split)
    result.checkpoint.unlink(missing_ok=True)  # per-user cache (no DVC out): nothing is left to resume


if __name__ == "__main__":
    run(main, "prompt")
