"""generate: captions for random label combinations, from an LLM or templates.

Reads params.yaml's `generate` section and the prepare stage's label table, and writes

    artifacts/texts.parquet             one row per caption (columns: pipeline.generate.TEXTS_SCHEMA)
    artifacts/generate/report.parquet   one row per dropped caption and why (pipeline.generate.REPORT_SCHEMA)
    artifacts/generate/mentions.parquet labels generate.label_rule mentions would add, most often first
    reports/generate.json               counts: texts, drops, texts the mentions rule would change, shares of
                                        LLM texts naming all, some or none of their labels

Run from the project root: `python -m stages.generate`. Killed at any moment, a rerun resumes
from the journal and writes the same texts.parquet an uninterrupted run would. The journal (finished
captions) lives in the per-user cache (pipeline.paths.generate_journal_dir), not in the workspace: a queued
or --temp experiment resumes from it too, and DVC never sees it.
"""

import logging

from pipeline import paths
from pipeline.data.labels import read_labels
from pipeline.generate import generate_texts
from pipeline.io import write_json
from pipeline.stage import run

log = logging.getLogger("generate")


def main(params) -> None:
    labels = read_labels(params.prepare.dataset)
    summary = generate_texts(
        params.generate,
        labels,
        texts_path=paths.TEXTS,
        report_path=paths.GENERATE_REPORT,
        journal_dir=paths.generate_journal_dir(),
        mentions_path=paths.GENERATE_MENTIONS,
    )
    write_json(summary.metrics(), paths.GENERATE_METRICS)


if __name__ == "__main__":
    run(main, "generate")
