"""How many different things a generate run can ask for, so an impossible request is refused
before any work instead of ending as a table of duplicates.

Combinations are drawn with replacement (a combination may repeat, and an LLM captions each
repeat afresh), so `n_combinations` beyond the number of distinct label combinations is allowed
and logged. Templates are finite, though: with every caption from templates, a run cannot keep
more texts than the templates, label orders and synonyms can spell.
"""

from __future__ import annotations

import logging
import math

from pipeline.config import GenerateParams, ParamsError
from pipeline.data.labels import LabelSet

log = logging.getLogger(__name__)


def distinct_combinations(n_labels: int, max_labels: int) -> int:
    """Sets of 1..max_labels labels out of n_labels."""
    return sum(math.comb(n_labels, k) for k in range(1, min(max_labels, n_labels) + 1))


def distinct_template_texts(labels: LabelSet, templates: tuple[str, ...], max_labels: int, use_synonyms: bool) -> int:
    """An upper bound on different template captions: templates x label orders x spellings.

    For k labels with f_i spellings each, the ordered spellings of all k-sets are k! * e_k(f),
    e_k the elementary symmetric polynomial (exact integers, O(labels x max_labels))."""
    forms = [len({name, *syns}) if use_synonyms else 1 for name, syns in zip(labels.names, labels.synonyms)]
    top = min(max_labels, len(forms))
    e = [1] + [0] * top  # e[k] = sum over k-sets of the product of their spellings
    for f in forms:
        for k in range(top, 0, -1):
            e[k] += e[k - 1] * f
    return len(set(templates)) * sum(math.factorial(k) * e[k] for k in range(1, top + 1))


def check_capacity(params: GenerateParams, labels: LabelSet, key: str = "generate") -> None:
    """Raise ParamsError (the stage exits 2) when the templates cannot write as many texts as asked."""
    n_labels = len(labels)
    combos = distinct_combinations(n_labels, params.max_labels)
    n_template = params.n_combinations - round(params.llm_fraction * params.n_combinations)
    wanted = n_template * params.captions_per_combination
    if wanted:
        possible = distinct_template_texts(labels, params.templates, params.max_labels, params.use_synonyms)
        if wanted > possible:
            raise ParamsError(
                f"{key}.n_combinations = {params.n_combinations} with {key}.llm_fraction = {params.llm_fraction} asks "
                f"for {wanted} template captions, but {n_labels} labels (1..{params.max_labels} per combination, "
                f"{combos} distinct combinations) and {len(set(params.templates))} template(s) can spell at most "
                f"{possible} different texts; the rest would be dropped as duplicates: lower n_combinations, "
                f"add templates or synonyms, raise max_labels, or caption with the LLM (raise llm_fraction)"
            )
    if params.n_combinations > combos:
        log.info(
            "%d combinations drawn from %d distinct ones (%d labels, 1..%d each): combinations repeat, "
            "each repeat captioned afresh",
            params.n_combinations,
            combos,
            n_labels,
            params.max_labels,
        )
