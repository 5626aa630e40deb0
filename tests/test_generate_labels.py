"""generate.require_labels: captions that do not name their labels are sampled again, then dropped as
off_topic; the shares of LLM texts naming all, some or none of their labels reach generate.json; and
switching the setting reuses every answer the journal holds."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from generate_fakes import ScriptedBackend
from pipeline.config import GenerateParams, ParamsError, load_params
from pipeline.data.labels import VOC_LABELS, LabelSet
from pipeline.generate import generate_texts, join_labels, plan_combinations
from pipeline.generate.captions import journal_meta
from pipeline.generate.journal import fingerprint_of
from pipeline.io import write_json

ROOT = Path(__file__).resolve().parents[1]
OFF_TOPIC = "Purely for illustration purposes only."


def params(**changes) -> GenerateParams:
    changes = {"require_labels": "none", **changes}  # the paper's; each test says which setting it runs
    p = dataclasses.replace(GenerateParams(n_combinations=12, journal_every_s=0.01), **changes)
    p.check("generate")
    return p


def labels_asked(messages) -> str:
    return messages[0]["content"].split("contains ", 1)[1].rstrip(".")


def first_label(messages) -> str:
    return labels_asked(messages).replace(" and ", ", ").split(", ")[0]


def run(tmp_path: Path, p: GenerateParams, backend, name: str = "out", journal: str = "journal"):
    out = tmp_path / name
    summary = generate_texts(
        p,
        VOC_LABELS,
        texts_path=out / "texts.parquet",
        report_path=out / "report.parquet",
        journal_dir=tmp_path / journal,
        backend=backend,
        progress=False,
    )
    return pl.read_parquet(out / "texts.parquet"), pl.read_parquet(out / "report.parquet"), summary


def picky_model(messages, seed) -> str:
    """Sheep chats never name a label; other chats name only their first label on the first sample and all
    of them after that (seed varies per sample)."""
    asked = labels_asked(messages)
    if "sheep" in asked:
        return f"{OFF_TOPIC[:-1]}, take {seed}."
    first_sample = sum(1 for m in messages if m["role"] == "user") == 1 and seed % 2 == 0
    return f"Photo {seed} of {first_label(messages)}." if first_sample else f"Photo {seed} of {asked}."


def test_an_off_topic_caption_is_resampled_then_dropped_and_the_shares_are_reported(tmp_path):
    plan = plan_combinations(VOC_LABELS, seed=0, n=40, max_labels=3, llm_fraction=1.0)
    sheep = {c.id for c in plan if "sheep" in c.labels}
    assert sheep and len(sheep) < 40

    # none (the paper's): everything is kept, the shares say what the captions name
    texts, report, summary = run(
        tmp_path, params(n_combinations=40), ScriptedBackend(picky_model), name="none", journal="j-none"
    )
    assert report.height == 0 and texts.height == 40
    naming = {"all": 0, "some": 0, "none": 0}
    for row in texts.iter_rows(named=True):
        named = set(VOC_LABELS.find_in_text(row["text"])) & set(row["combination"])
        naming["all" if len(named) == len(row["combination"]) else "some" if named else "none"] += 1
    assert naming["none"] == len(sheep) and naming["some"] > 0 and naming["all"] > 0
    metrics = summary.metrics()
    for k, n in naming.items():
        assert metrics[f"share_llm_texts_naming_{k}_labels"] == pytest.approx(n / 40)
    assert metrics["n_dropped_off_topic"] == 0

    # any: a sheep caption is sampled again max_retries times, then dropped with its reason and last answer
    backend = ScriptedBackend(picky_model)
    texts, report, summary = run(
        tmp_path, params(n_combinations=40, require_labels="any", max_retries=2), backend, name="any", journal="j-any"
    )
    assert set(texts["combination_id"]).isdisjoint(sheep) and texts.height == 40 - len(sheep)
    assert report["reason"].to_list() == ["off_topic"] * len(sheep)
    assert set(report["combination_id"]) == sheep
    assert report["attempts"].to_list() == [3] * len(sheep)
    assert all(raw.startswith(OFF_TOPIC[:-1]) for raw in report["raw"])
    assert all(
        d.startswith("names none of ") and "sheep" in d and d.endswith("in 3 sample(s)") for d in report["detail"]
    )
    sheep_chats = [m for m in backend.calls if "sheep" in labels_asked(m)]
    assert len(sheep_chats) == 3 * len(sheep) and all(len(m) == 1 for m in sheep_chats)  # resampled, not continued
    metrics = summary.metrics()
    assert metrics["share_llm_texts_naming_none_labels"] == 0.0 and metrics["n_dropped_off_topic"] == len(sheep)
    assert metrics["model_calls_per_llm_text"] == pytest.approx(float(len(backend.calls) / texts.height))

    # all: a caption naming only its first label is sampled again; here the second sample names them all
    samples = Counter()

    def first_then_all(messages, seed):
        samples[labels_asked(messages)] += 1
        if "sheep" in labels_asked(messages):
            return picky_model(messages, seed)
        said = first_label(messages) if samples[labels_asked(messages)] == 1 else labels_asked(messages)
        return f"Photo {seed} of {said}."

    backend = ScriptedBackend(first_then_all)
    texts, report, summary = run(
        tmp_path, params(n_combinations=40, require_labels="all"), backend, name="all", journal="j-all"
    )
    assert set(report["reason"]) == {"off_topic"} and texts.height == 40 - len(sheep)
    multi = [c for c in plan if len(c.labels) > 1 and c.id not in sheep]
    assert len(backend.calls) == 40 + len(multi) + 2 * len(sheep)
    for row in texts.iter_rows(named=True):
        assert set(VOC_LABELS.find_in_text(row["text"])) >= set(row["combination"])
    assert summary.metrics()["share_llm_texts_naming_all_labels"] == 1.0

    # the stage writes these numbers to reports/generate.json as they are (dvc exp show columns)
    write_json(summary.metrics(), tmp_path / "generate.json")
    written = json.loads((tmp_path / "generate.json").read_text())
    assert written["share_llm_texts_naming_all_labels"] == 1.0 and written["n_dropped_off_topic"] == len(sheep)


def test_require_all_reports_which_labels_are_missing(tmp_path):
    def says_the_first(messages, seed):
        return f"Photo {seed} of {first_label(messages)}."

    texts, report, _ = run(
        tmp_path, params(n_combinations=12, require_labels="all", max_retries=1), ScriptedBackend(says_the_first)
    )
    assert (texts["combination"].list.len() == 1).all()
    multi = report.filter(pl.col("combination").list.len() > 1)
    assert multi.height > 0 and set(multi["reason"]) == {"off_topic"}
    for row in multi.iter_rows(named=True):
        named = [label for label in VOC_LABELS.find_in_text(row["raw"]) if label in row["combination"]]
        missing = [label for label in row["combination"] if label not in named]
        assert len(named) == 1 and row["detail"] == (
            f"names {named[0]} of {join_labels(row['combination'])}, not {join_labels(missing)} in 2 sample(s)"
        )


def test_switching_require_labels_reuses_every_journaled_answer(tmp_path):
    p = params(n_combinations=30)
    fresh_any, fresh_any_report, _ = run(
        tmp_path,
        dataclasses.replace(p, require_labels="any"),
        ScriptedBackend(picky_model),
        name="fresh-any",
        journal="j-fresh",
    )

    first = ScriptedBackend(picky_model)
    none_texts, _, summary = run(tmp_path, p, first, name="none")
    assert summary.generated == 30 and len(first.calls) == 30

    # any: only the off-topic answers are asked again; the journal's answers are replayed
    assert fingerprint_of(journal_meta(p, VOC_LABELS, {"b": 1})) == fingerprint_of(
        journal_meta(dataclasses.replace(p, require_labels="all"), VOC_LABELS, {"b": 1})
    )
    second = ScriptedBackend(picky_model)
    texts, report, summary = run(tmp_path, dataclasses.replace(p, require_labels="any"), second, name="any")
    n_off_topic = report.height
    assert n_off_topic > 0 and len(second.calls) == 2 * n_off_topic  # max_retries 2 new samples each, nothing else
    assert summary.resumed == 30 - n_off_topic and summary.generated == n_off_topic
    assert texts.equals(fresh_any) and report.equals(fresh_any_report)  # as if run under `any` from the start

    # back to none: every answer is in the journal, no model call at all, the first table again
    texts, _, summary = run(
        tmp_path, p, ScriptedBackend(lambda m, s: pytest.fail("no model call expected")), name="none-again"
    )
    assert summary.resumed == 30 and summary.generated == 0 and texts.equals(none_texts)
    assert len(list((tmp_path / "journal").iterdir())) == 1


def test_the_default_is_any():
    assert GenerateParams().require_labels == "any"
    assert load_params(ROOT / "params.yaml").generate.require_labels == "any"


def test_label_matching_allows_regular_plurals_whole_words_only():
    labels = LabelSet.from_names(["cat", "bus", "pony", "dining table", "sheep", "tv monitor"], {"tv monitor": ["tv"]})
    assert labels.find_in_text("Two cats, three buses, ponies by the dining tables.") == [
        "cat",
        "bus",
        "pony",
        "dining table",
    ]
    assert labels.find_in_text("Sheep grazing near TVs.") == ["sheep", "tv monitor"]
    assert labels.find_in_text("A catalogue of buskers and a category.") == []


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"generate.require_labels": "some"}, "generate.require_labels"),
        ({"generate.model": "hf:Qwen/qwen.gguf"}, "generate.model"),
        ({"generate.model": "hf:owner/repo/model.bin"}, "generate.model"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ParamsError) as e:
        load_params(ROOT / "params.yaml", overrides=override)
    assert key in str(e.value) and "\n" not in str(e.value)
