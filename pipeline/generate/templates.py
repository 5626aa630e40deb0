"""The template source: a seeded template and (optionally) seeded synonyms per combination."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline.data.labels import LabelSet
from pipeline.generate.combinations import Combination, derive_seed, join_labels


@dataclass(frozen=True)
class TemplateText:
    caption_index: int
    text: str
    template: str


def template_texts(
    combination: Combination,
    labels: LabelSet,
    templates: tuple[str, ...],
    *,
    n_captions: int = 1,
    use_synonyms: bool = True,
) -> list[TemplateText]:
    """`n_captions` texts for one combination, the labels named in the combination's prompt order."""
    rng = random.Random(derive_seed("template", combination.seed))
    out = []
    for k in range(n_captions):
        template = templates[rng.randrange(len(templates))]
        words = []
        for name in combination.order:
            choices = (name, *labels.synonyms[labels.index[name]]) if use_synonyms else (name,)
            words.append(choices[rng.randrange(len(choices))])
        out.append(TemplateText(k, template.replace("{labels}", join_labels(words)), template))
    return out
