"""The model card (README.md) of an exported classifier: what it is for, its labels, how its texts were
made, the params, the measured numbers from `reports/`, and its limits. Plain Markdown from the export's
config, the params, their Plan (pipeline.settings: the setting and noise it describes, never re-derived) and
the reports, so it says only what the workspace recorded."""

from __future__ import annotations

from pipeline.config import Params
from pipeline.settings import FEW_SHOT, PARTIAL, Plan

PAPER = "Text as Image: Learning Transferable Adapter for Multi-Label Classification (TaI-Adapter)"


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _setting(params: Params, plan: Plan) -> str:
    if plan.setting == FEW_SHOT:
        return (
            f"few-shot: texts plus {params.fewshot.shots} labelled images per class from split "
            f"`{params.fewshot.split}` (seed {params.fewshot.seed})"
        )
    if plan.setting == PARTIAL:
        return (
            f"partial labels: texts shifted towards the images of split `{params.partial.split}`, "
            f"{params.partial.known_proportion:.0%} of its labels known (`partial.shift: {params.partial.shift}`)"
        )
    return "zero-shot: texts only, no labelled image"  # a labels-only project trains so too


def _texts(params: Params, generate: dict) -> list[str]:
    g = params.generate
    llm = (
        f"`{g.openai.model}` on an OpenAI-compatible server" if g.backend == "openai" else f"`{g.model}` ({g.backend})"
    )
    if g.llm_fraction == 0:
        source = f"no LLM (`generate.llm_fraction` 0): every caption from the {len(g.templates)} templates."
    else:
        source = f"`generate.llm_fraction` {g.llm_fraction:g} of the label combinations captioned by the LLM {llm}" + (
            f", the rest by {len(g.templates)} templates." if g.llm_fraction < 1 else "."
        )
    lines = [
        f"- Source: {source}",
        f"- Combinations: up to {g.max_labels} labels each, seed {g.seed}; "
        + (
            f'LLM prompt "{g.prompt}".'
            if g.llm_fraction > 0
            else "templates " + ", ".join(f'"{t}"' for t in g.templates) + "."
        ),
    ]
    if generate:
        lines.append(
            f"- Count: {_number(generate.get('n_texts', '?'))} texts for "
            f"{_number(generate.get('n_combinations', '?'))} combinations "
            f"({_number(generate.get('n_llm_texts', 0))} from the LLM, "
            f"{_number(generate.get('n_template_texts', 0))} from templates, "
            f"{_number(generate.get('n_dropped', 0))} dropped; mean "
            f"{generate.get('mean_text_tokens', 0.0):.1f} CLIP tokens), from `reports/generate.json`."
        )
    else:
        lines.append("- Count: not recorded (no `reports/generate.json`).")
    return lines


def _metrics(params: Params, reports: dict[str, dict]) -> list[str]:
    rows = []
    for stage, what in (("eval", "this classifier"), ("zeroshot", f'CLIP zero-shot ("{params.zeroshot.prompt}")')):
        metrics = reports.get(stage) or {}
        if "map" in metrics:
            split = params.evaluate.split if stage == "eval" else params.zeroshot.split
            rows.append(
                f"| {what} | mAP | {metrics['map']:.4f} | {params.prepare.dataset} `{split}`, "
                f"{_number(metrics.get('n_images', '?'))} images | `reports/{stage}.json` |"
            )
        if stage == "eval" and "integrated_map" in metrics:
            rows.append(
                f"| integrated with `{params.evaluate.integrate_with}` | mAP | {metrics['integrated_map']:.4f} "
                f"| same | `reports/eval.json` |"
            )
    if not rows:
        return ["No evaluation was recorded (`reports/eval.json` has no mAP: a labels-only project, or not run)."]
    return [
        "| model | metric | value | data | from |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "mAP: mean over labels of the non-interpolated average precision (labels with a positive image).",
    ]


def model_card(config: dict, params: Params, plan: Plan, reports: dict[str, dict]) -> str:
    """README.md of an export. `config` is its config.json; `plan` that of `params`; `reports` maps a stage to
    its reports/<stage>.json."""
    clip, adapter, labels = config["clip"], config["adapter"], config["labels"]
    t, train = params.train, reports.get("train") or {}
    onnx = (
        "\n- `model.onnx`: preprocessed pixels to probabilities in one graph (CLIP image encoder + adapter)."
        if config.get("onnx")
        else ""
    )
    label_rows = [
        f"| {i} | {name} | {', '.join(config['synonyms'].get(name, [])) or '-'} | {config['thresholds'][name]:g} |"
        for i, name in enumerate(labels)
    ]
    lines = [
        "---",
        "library_name: tai-adapter",
        "tags: [multi-label-image-classification, clip, tai-adapter, text-as-image]",
        "---",
        "",
        f"# Multi-label image classifier: {len(labels)} labels, trained from text",
        "",
        f"An adapter (a {adapter['embed_dim']} -> {adapter['hidden_dim']} -> {adapter['hidden_dim']} -> "
        f"{adapter['n_labels']} MLP) over the image embeddings of a frozen CLIP (`{clip['model']}`), trained on CLIP "
        f"*text* embeddings of captions of label combinations, perturbed with noise so that it transfers to image "
        f'embeddings: the method of "{PAPER}", as implemented by the tai-adapter project '
        f"(version {config['project_version']}). Setting: {_setting(params, plan)}.",
        "",
        "## Intended use",
        "",
        "Tagging photos with the labels below, several per image: each label gets its own probability "
        "(a sigmoid), and a label is predicted at or above its threshold. Made for research and for label sets "
        "without labelled images. Not for decisions about people, not for labels outside the set, and not "
        "for images unlike those it was evaluated on without checking there first.",
        "",
        "## Labels",
        "",
        "| # | label | synonyms (used in template captions) | threshold |",
        "|---|---|---|---|",
        *label_rows,
        "",
        "## How the texts were made",
        "",
        *_texts(params, reports.get("generate") or {}),
        f"- A text's labels: `generate.label_rule: {params.generate.label_rule}`.",
        "",
        "## Training",
        "",
        f"- CLIP: `{clip['model']}` (identity `{clip['identity']}`), frozen; images at {clip['image_resolution']} px, "
        f"resized `{clip['resize']}` ({clip['interpolation']}), normalised with mean {clip['mean']} and std {clip['std']}.",
        f"- Adapter: hidden {adapter['hidden_dim']}, dropout {adapter['dropout']:g}, inputs "
        f"{'L2-normalised' if adapter['normalize_input'] else 'raw (not normalised)'}.",
        f"- {t.epochs} epochs, batch {t.batch_size}, AdamW (weight decay {t.weight_decay:g}), one-cycle to "
        f"{t.max_lr:g}, BCE; `{plan.text_noise.kind}` noise of radius {plan.text_noise.radius:g} on the text "
        f"embeddings (mean text-embedding norm {_number(train.get('mean_text_norm', '?'))}); seed {t.seed}.",
        f"- Trained on {_number(train.get('n_texts', '?'))} texts and {_number(train.get('n_images', 0))} images "
        "(`reports/train.json`).",
        "",
        "## Evaluation",
        "",
        *_metrics(params, reports),
        "",
        "## Limits",
        "",
        "- It never saw a labelled image in the zero-shot setting: it learnt from captions, and how well that "
        "transfers depends on the gap between CLIP's text and image embeddings for these labels.",
        "- The numbers above hold for the evaluation split named there; other images (other domains, "
        "resolutions, crops) may score differently. Measure on your own images before relying on it.",
        f"- Thresholds chosen on: {config.get('threshold_source', 'none')}. "
        + (
            "With none, every label uses 0.5, which is not calibrated on images; one threshold rarely fits every "
            "label (`tai thresholds`, `tai predict --thresholds FILE`)."
            if config.get("threshold_source", "none") == "none"
            else "Each label's threshold maximises its F1 on those images; on images unlike them it may not."
        ),
        "- It inherits CLIP's and the LLM's biases, and knows only the labels listed.",
        "",
        "## Files and use",
        "",
        "- `model.safetensors`: the adapter's weights; `config.json`: labels, thresholds, the CLIP and its "
        "preprocessing, the adapter's shape." + onnx,
        "",
        "```bash",
        "tai predict --model THIS_FOLDER images/ --top-k 3 --out predictions.parquet",
        "```",
        "",
        "```python",
        "from pipeline import load_classifier",
        'classifier = load_classifier("THIS_FOLDER")',
        'classifier.predict(["photo.jpg"])',
        "```",
        "",
    ]
    return "\n".join(lines)
