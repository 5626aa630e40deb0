"""Sizes the label set cannot meet are refused before any work, with the reason."""

from __future__ import annotations

import itertools
import logging
import subprocess

import pytest
import yaml

from e2e_project import stage_command, stage_env
from pipeline.config import GenerateParams, ParamsError
from pipeline.data.labels import VOC_LABELS, LabelSet
from pipeline.generate import generate_texts
from pipeline.generate.capacity import check_capacity, distinct_combinations, distinct_template_texts
from pipeline.generate.combinations import join_labels
from pipeline.io import write_parquet

SMALL = LabelSet.from_names(["cat", "dog", "car"], {"cat": ["kitten"], "dog": ["puppy", "hound"]})
TEMPLATES = ("a photo of {labels}.", "there are {labels} here.")


def every_template_text(labels: LabelSet, templates, max_labels: int) -> set[str]:
    """Brute force: every text the template source could ever write."""
    spellings = [(name, *syns) for name, syns in zip(labels.names, labels.synonyms)]
    texts = set()
    for k in range(1, max_labels + 1):
        for ordered in itertools.permutations(range(len(labels)), k):
            for words in itertools.product(*(spellings[i] for i in ordered)):
                texts |= {t.replace("{labels}", join_labels(words)) for t in templates}
    return texts


@pytest.mark.parametrize("max_labels", [1, 2, 3, 5])
def test_the_template_bound_is_exactly_what_templates_can_spell(max_labels):
    expected = every_template_text(SMALL, TEMPLATES, min(max_labels, 3))
    assert distinct_template_texts(SMALL, TEMPLATES + TEMPLATES[:1], max_labels, use_synonyms=True) == len(expected)
    assert distinct_template_texts(SMALL, TEMPLATES, max_labels, use_synonyms=False) == len(
        every_template_text(LabelSet.from_names(SMALL.names), TEMPLATES, min(max_labels, 3))
    )
    assert distinct_combinations(3, max_labels) == {1: 3, 2: 6}.get(max_labels, 7)
    assert distinct_combinations(20, 3) == 20 + 190 + 1140


def test_more_template_captions_than_can_be_spelled_are_refused_before_any_work(tmp_path):
    possible = len(every_template_text(SMALL, TEMPLATES, 2))  # 2 templates x (6 + 2 x 11) spellings = 56
    p = GenerateParams(n_combinations=possible + 1, max_labels=2, llm_fraction=0.0, templates=TEMPLATES)
    with pytest.raises(ParamsError) as error:
        generate_texts(
            p,
            SMALL,
            texts_path=tmp_path / "t.parquet",
            report_path=tmp_path / "r.parquet",
            journal_dir=tmp_path / "journal",
            progress=False,
        )
    assert f"asks for {possible + 1} template captions" in str(error.value)
    assert f"can spell at most {possible} different texts" in str(error.value)
    assert "generate.n_combinations" in str(error.value) and "raise llm_fraction" in str(error.value)
    assert not list(tmp_path.iterdir())
    check_capacity(GenerateParams(n_combinations=possible, max_labels=2, llm_fraction=0.0, templates=TEMPLATES), SMALL)
    # LLM captions are not bounded by the templates; several captions per combination count
    check_capacity(GenerateParams(n_combinations=10 * possible, max_labels=2, llm_fraction=1.0), SMALL)
    with pytest.raises(ParamsError, match=f"asks for {2 * (possible // 2 + 1)} template captions"):
        check_capacity(
            GenerateParams(
                n_combinations=possible // 2 + 1,
                max_labels=2,
                llm_fraction=0.0,
                templates=TEMPLATES,
                captions_per_combination=2,
            ),
            SMALL,
        )


def test_combinations_beyond_the_distinct_ones_repeat_and_say_so(caplog):
    with caplog.at_level(logging.INFO):
        check_capacity(GenerateParams(n_combinations=10000), VOC_LABELS)  # the paper's VOC default
    assert "10000 combinations drawn from 1350 distinct ones (20 labels, 1..3 each)" in caplog.text


def test_the_generate_stage_exits_2_with_the_reason(tmp_path):
    write_parquet(SMALL.to_frame(), tmp_path / "artifacts" / "data" / "voc2007" / "labels.parquet")
    generate = {"n_combinations": 1000, "llm_fraction": 0.0, "max_labels": 1, "templates": list(TEMPLATES)}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generate": generate}))
    result = subprocess.run(
        stage_command("generate"), cwd=tmp_path, env=stage_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "asks for 1000 template captions" in result.stderr and "at most 12 different texts" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "artifacts" / "texts.parquet").exists()
