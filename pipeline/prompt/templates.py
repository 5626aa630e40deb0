"""TaI-DPT's template sentences: what its training set adds to the captions, per label (prompt.taidpt_templates).

TaI-DPT's `data/datasets/voc2007_distill.py` (and the COCO and NUS-WIDE ones) append, for each class, nine
copies of "a photo of a {}." (`default_prompt_num` 10, minus one) and one sentence per ImageNet
template, each a single-label text of that class. The 80 templates are CLIP's ImageNet prompt ensemble
(openai/CLIP `notebooks/Prompt_Engineering_for_ImageNet.ipynb`, TaI-DPT's `trainers/imagenet_templates.py`).
"""

from __future__ import annotations

import numpy as np

PHOTO_TEMPLATE = "a photo of a {}."
PHOTO_REPEATS = 9
IMAGENET_TEMPLATES = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

TEMPLATES_PER_LABEL = PHOTO_REPEATS + len(IMAGENET_TEMPLATES)  # 89


def template_texts(names: list[str]) -> tuple[list[str], list[int]]:
    """(texts, the label index of each): per label, 9 x "a photo of a <name>." then the 80 templates."""
    texts, label_of = [], []
    for index, name in enumerate(names):
        name = name.replace("_", " ")
        for template in (PHOTO_TEMPLATE,) * PHOTO_REPEATS + IMAGENET_TEMPLATES:
            texts.append(template.format(name))
            label_of.append(index)
    return texts, label_of


def with_templates(sentences: list[str], targets: np.ndarray, names: list[str]) -> tuple[list[str], np.ndarray]:
    """TaI-DPT's training set: the texts and their (n, labels) 0/1 targets, then the template sentences,
    each with its one label."""
    extra, label_of = template_texts(names)
    one_hot = np.eye(len(names), dtype=targets.dtype)[label_of]
    return sentences + extra, np.concatenate([targets.reshape(-1, len(names)), one_hot])
