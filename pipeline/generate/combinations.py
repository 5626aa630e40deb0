"""Random label combinations: which labels, in which order, and which source captions them.

Every combination is a pure function of (seed, combination_id, label set, max_labels), so a
combination does not change when `n_combinations` grows, and work can run in any order.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from pipeline.data.labels import LabelSet
from pipeline.errors import UserError

LLM = "llm"
TEMPLATE = "template"


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (stable across runs and Python versions, unlike hash())."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class Combination:
    id: int
    labels: tuple[str, ...]  # label-table order: the `combination` column
    order: tuple[str, ...]  # the random order the labels are named in the prompt
    source: str  # "llm" | "template"
    seed: int  # seed of this combination's chat / template draw

    @property
    def words(self) -> str:
        return join_labels(self.order)


def join_labels(words) -> str:
    """'cat', 'cat and dog', 'cat, dog and person'."""
    words = list(words)
    if not words:
        raise ValueError("a combination has at least one label")
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def sample_combination(
    labels: LabelSet, seed: int, combination_id: int, max_labels: int
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(labels in table order, labels in prompt order): 1..max_labels distinct labels."""
    rng = random.Random(derive_seed("combination", seed, combination_id))
    size = rng.randint(1, min(max_labels, len(labels)))
    picked = rng.sample(range(len(labels)), size)
    return tuple(labels.names[i] for i in sorted(picked)), tuple(labels.names[i] for i in picked)


def llm_ids(seed: int, n: int, fraction: float) -> set[int]:
    """Exactly round(fraction * n) combination ids, chosen by a seeded key per id (stable as n grows)."""
    k = round(fraction * n)
    if k >= n:
        return set(range(n))
    keyed = sorted(range(n), key=lambda i: (derive_seed("source", seed, i), i))
    return set(keyed[:k])


def plan_combinations(
    labels: LabelSet, *, seed: int, n: int, max_labels: int, llm_fraction: float
) -> list[Combination]:
    if len(labels) == 0:
        raise UserError(
            "the label table is empty: nothing to combine; list at least one label for prepare "
            "(prepare.label_names or prepare.labels_file) and run `dvc repro prepare`"
        )
    to_llm = llm_ids(seed, n, llm_fraction)
    plan = []
    for cid in range(n):
        table_order, prompt_order = sample_combination(labels, seed, cid, max_labels)
        plan.append(
            Combination(
                cid, table_order, prompt_order, LLM if cid in to_llm else TEMPLATE, derive_seed("chat", seed, cid)
            )
        )
    return plan
