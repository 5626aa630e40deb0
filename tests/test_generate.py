"""The generate stage with scripted backends: combinations, templates, the chat rules, the report,
the journal, determinism and params checks. (Real models: test_generate_kill.py, test_generate_openai.py.)"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from generate_fakes import ScriptedBackend, echo_caption
from pipeline.config import GenerateParams, OpenAIParams, ParamsError, load_params
from pipeline.data.labels import VOC_LABELS, LabelSet
from pipeline.errors import UserError
from pipeline.generate import (
    CLIP_CONTEXT,
    REPORT_SCHEMA,
    TEXTS_SCHEMA,
    BackendError,
    GenerateError,
    clip_token_count,
    generate_texts,
    join_labels,
    plan_combinations,
    resolve_model,
)
from pipeline.generate.journal import KEEP_OTHERS_S

ROOT = Path(__file__).resolve().parents[1]


def params(**changes) -> GenerateParams:
    """Small runs; require_labels none, as these scripted models need not name the labels
    (test_generate_labels.py tests require_labels)."""
    changes = {"require_labels": "none", **changes}
    p = dataclasses.replace(GenerateParams(n_combinations=12, journal_every_s=0.01), **changes)
    p.check("generate")
    return p


def run(tmp_path: Path, p: GenerateParams, backend=None, labels: LabelSet = VOC_LABELS, name: str = "out"):
    out = tmp_path / name
    summary = generate_texts(
        p,
        labels,
        texts_path=out / "texts.parquet",
        report_path=out / "report.parquet",
        journal_dir=out / "journal",
        backend=backend,
        progress=False,
    )
    return pl.read_parquet(out / "texts.parquet"), pl.read_parquet(out / "report.parquet"), summary


def labels_of_first_turn(messages) -> str:
    return messages[0]["content"].split("contains ", 1)[1].rstrip(".")


# ------------------------------------------------------------------------------- combinations


def test_join_labels_reads_naturally():
    assert join_labels(["cat"]) == "cat"
    assert join_labels(["cat", "dog"]) == "cat and dog"
    assert join_labels(["cat", "dog", "person"]) == "cat, dog and person"


def test_combinations_are_seeded_distinct_and_sized():
    plan = plan_combinations(VOC_LABELS, seed=3, n=400, max_labels=3, llm_fraction=0.25)
    assert plan == plan_combinations(VOC_LABELS, seed=3, n=400, max_labels=3, llm_fraction=0.25)
    other = plan_combinations(VOC_LABELS, seed=4, n=400, max_labels=3, llm_fraction=0.25)
    assert [c.labels for c in plan] != [c.labels for c in other]
    assert {len(c.labels) for c in plan} == {1, 2, 3}
    for c in plan:
        assert len(set(c.labels)) == len(c.labels)
        assert sorted(c.order, key=VOC_LABELS.index.get) == list(c.labels)  # same labels, table order
    assert Counter(c.source for c in plan) == {"llm": 100, "template": 300}
    assert {c.id for c in plan if c.source == "llm"} != {c.id for c in other if c.source == "llm"}
    # a combination does not depend on how many there are: more combinations extend the plan
    longer = plan_combinations(VOC_LABELS, seed=3, n=800, max_labels=3, llm_fraction=0.25)
    assert [c.labels for c in longer[:400]] == [c.labels for c in plan]


def test_combination_size_is_capped_at_the_label_count():
    small = LabelSet.from_names(["cat", "dog"])
    plan = plan_combinations(small, seed=0, n=50, max_labels=5, llm_fraction=1.0)
    assert {len(c.labels) for c in plan} == {1, 2}


def test_an_empty_label_table_is_a_user_error_naming_the_fix():
    with pytest.raises(UserError, match=r"label table is empty.*dvc repro prepare"):
        plan_combinations(LabelSet.from_names([]), seed=0, n=5, max_labels=2, llm_fraction=0.0)


# ---------------------------------------------------------------------------------- templates


def test_ten_thousand_template_texts(tmp_path):
    p = params(n_combinations=10_000, llm_fraction=0.0, label_rule="mentions")
    texts, report, summary = run(tmp_path, p, backend=ScriptedBackend(lambda m, s: pytest.fail("no LLM call expected")))
    assert dict(texts.schema) == TEXTS_SCHEMA
    assert dict(report.schema) == REPORT_SCHEMA
    assert set(texts["source"]) == {"template"} and set(texts["model"]) == {"template"}
    # every combination is accounted for: a text, or a reported duplicate of an earlier one
    assert texts.height + report.height == 10_000
    assert set(report["reason"]) <= {"duplicate"}
    assert texts["text_id"].n_unique() == texts.height
    assert texts["combination_id"].is_sorted()
    assert texts["n_tokens"].max() <= CLIP_CONTEXT
    assert set(texts["prompt"]) <= set(p.templates)
    row = texts.row(0, named=True)
    assert row["n_tokens"] == clip_token_count(row["text"])
    for row in texts.head(300).iter_rows(named=True):
        assert set(row["combination"]) <= set(row["labels"])
        assert set(VOC_LABELS.find_in_text(row["text"])) <= set(row["labels"])
        assert row["labels"] == sorted(row["labels"], key=VOC_LABELS.index.get)
    # synonyms are drawn: some texts name a label only through a synonym
    assert any("kitten" in t or "puppies" in t or "bike" in t for t in texts["text"].to_list())


def test_templates_without_synonyms_use_the_label_names(tmp_path):
    texts, _, _ = run(tmp_path, params(n_combinations=200, llm_fraction=0.0, use_synonyms=False))
    for row in texts.iter_rows(named=True):
        for label in row["combination"]:
            assert label in row["text"]


# ------------------------------------------------------------------------------ determinism


def test_same_seed_same_table_and_another_seed_other_combinations(tmp_path):
    p = params(n_combinations=16, llm_fraction=0.5)
    a, ra, _ = run(tmp_path, p, ScriptedBackend(echo_caption), name="a")
    b, rb, _ = run(tmp_path, p, ScriptedBackend(echo_caption), name="b")
    assert a.equals(b) and ra.equals(rb)
    assert Counter(a["source"]) == {"llm": 8, "template": 8}
    c, _, _ = run(tmp_path, dataclasses.replace(p, seed=1), ScriptedBackend(echo_caption), name="c")
    assert a["combination"].to_list() != c["combination"].to_list()


def test_llm_rows_carry_prompt_model_and_labels(tmp_path):
    # the scripted model also names a label that is not in the combination (through a synonym)
    backend = ScriptedBackend(lambda m, s: f"A kitten next to the {labels_of_first_turn(m)}.", model_name="m.gguf")
    p = params(n_combinations=6, label_rule="mentions")
    texts, report, summary = run(tmp_path, p, backend)
    assert report.height == 0 and texts.height == 6 and summary.resumed == 0 and summary.generated == 6
    plan = plan_combinations(VOC_LABELS, seed=p.seed, n=6, max_labels=p.max_labels, llm_fraction=1.0)
    for row, c in zip(texts.iter_rows(named=True), plan):
        assert row["combination_id"] == c.id and row["combination"] == list(c.labels)
        assert row["source"] == "llm" and row["model"] == "m.gguf" and row["seed"] == c.seed
        assert row["prompt"] == p.prompt.replace("{labels}", join_labels(c.order))
        assert "cat" in row["labels"] and set(row["combination"]) <= set(row["labels"])
        assert row["n_tokens"] == clip_token_count(row["text"])


def test_alt_prompt_starts_a_seeded_share_of_the_chats(tmp_path):
    backend = ScriptedBackend(lambda m, s: f"A photo number {s} of things.")
    alt = "please organize the words {labels} into a sentence to describe an image."
    assert GenerateParams().alt_prompt == alt  # the paper's other instruction is the default alternative
    mixed = params(n_combinations=40, alt_prompt_fraction=0.5)
    texts, _, _ = run(tmp_path, mixed, backend, name="mixed")
    uses_alt = texts["prompt"].str.starts_with("please organize").to_list()
    assert 8 <= sum(uses_alt) <= 32  # about half, chosen per combination
    assert [m[0]["content"] for m in backend.calls] == texts["prompt"].to_list()  # what the model was asked
    again, _, _ = run(tmp_path, mixed, ScriptedBackend(lambda m, s: f"A photo number {s} of things."), name="again")
    assert again["prompt"].to_list() == texts["prompt"].to_list()
    for fraction, expected in ((0.0, 0), (1.0, 40)):
        only, _, _ = run(
            tmp_path, params(n_combinations=40, alt_prompt_fraction=fraction), backend, name=f"f{fraction}"
        )
        assert only["prompt"].str.starts_with("please organize").sum() == expected
    with pytest.raises(ParamsError, match="alt_prompt_fraction"):
        params(alt_prompt_fraction=1.5)


# --------------------------------------------------------------------------- the chat rules


LONG = "A " + " ".join(["very"] * 90) + " long caption of a cat."


def test_over_long_caption_is_shortened_in_the_same_chat(tmp_path):
    assert clip_token_count(LONG) > CLIP_CONTEXT

    def answer(messages, seed):
        if messages[-1]["content"] == GenerateParams().shorten_prompt:
            return f"A short caption of {labels_of_first_turn(messages)}."
        return LONG

    backend = ScriptedBackend(answer)
    texts, report, _ = run(tmp_path, params(n_combinations=3), backend)
    assert report.height == 0
    assert all(t.startswith("A short caption of") for t in texts["text"]) and texts.height == 3
    assert len(backend.calls) == 6
    second = backend.calls[1]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == LONG and second[2]["content"] == GenerateParams().shorten_prompt


def test_caption_that_stays_too_long_is_dropped_and_reported(tmp_path):
    backend = ScriptedBackend(lambda m, s: LONG)
    with pytest.raises(GenerateError, match="no caption was kept"):
        run(tmp_path, params(n_combinations=2, max_shorten_rounds=2), backend)
    report = pl.read_parquet(tmp_path / "out" / "report.parquet")
    assert report["reason"].to_list() == ["too_long", "too_long"]
    assert report["attempts"].to_list() == [3, 3]
    assert report["raw"].to_list() == [LONG, LONG]
    assert all(re.search(r"\d+ CLIP tokens > 77", d) for d in report["detail"])
    assert not (tmp_path / "out" / "texts.parquet").exists()


def test_the_limit_is_77_clip_tokens_with_start_and_end(tmp_path):
    fits = " ".join(["cat"] * (CLIP_CONTEXT - 3)) + "."  # 74 words + "." + start + end = 77
    over = " ".join(["cat"] * (CLIP_CONTEXT - 2)) + "."
    assert clip_token_count(fits) == CLIP_CONTEXT and clip_token_count(over) == CLIP_CONTEXT + 1
    backend = ScriptedBackend(lambda m, s: [fits, over][len(backend.calls) - 1])
    texts, report, _ = run(tmp_path, params(n_combinations=2, max_shorten_rounds=0), backend)
    assert texts["text"].to_list() == [fits] and texts["n_tokens"].to_list() == [CLIP_CONTEXT]
    assert report["reason"].to_list() == ["too_long"] and report["combination_id"].to_list() == [1]


def test_refusals_and_empty_answers_are_retried_then_reported(tmp_path):
    def answer(messages, seed):
        topic = labels_of_first_turn(messages)
        if "," in topic or " and " in topic:
            return "I'm sorry, but as an AI I cannot see images."
        return "   "

    backend = ScriptedBackend(answer)
    with pytest.raises(GenerateError):
        run(tmp_path, params(n_combinations=6, max_retries=2), backend)
    report = pl.read_parquet(tmp_path / "out" / "report.parquet")
    assert report.height == 6 and set(report["reason"]) == {"refusal", "empty"}
    assert report["attempts"].to_list() == [3] * 6
    assert len(backend.calls) == 18
    # a retry asks the same turn again: the bad answer is not added to the chat
    assert all(len(call) == 1 for call in backend.calls)


def test_a_retry_that_succeeds_is_kept(tmp_path):
    seen: Counter = Counter()

    def answer(messages, seed):
        key = messages[0]["content"]
        seen[key] += 1
        return "Sure, here is a caption:" if seen[key] == 1 else f"A photo of {labels_of_first_turn(messages)}."

    texts, report, _ = run(tmp_path, params(n_combinations=4, max_retries=1), ScriptedBackend(answer))
    assert report.height == 0 and texts.height == 4
    assert all(t.startswith("A photo of") for t in texts["text"])


def test_unparseable_answers_are_never_kept(tmp_path):
    junk = ["Sure! Here is a caption:", "???", "Could you describe the image first?", "<|im_end|>"]
    backend = ScriptedBackend(lambda m, s: junk[len(backend.calls) % len(junk)])
    with pytest.raises(GenerateError):
        run(tmp_path, params(n_combinations=5, max_retries=1), backend)
    report = pl.read_parquet(tmp_path / "out" / "report.parquet")
    assert report.height == 5 and set(report["reason"]) <= {"unparseable", "empty"}


def test_several_captions_per_combination_share_one_chat(tmp_path):
    def answer(messages, seed):
        return f"Caption number {sum(m['role'] == 'user' for m in messages)} of {labels_of_first_turn(messages)}."

    backend = ScriptedBackend(answer)
    texts, report, _ = run(tmp_path, params(n_combinations=3, captions_per_combination=3), backend)
    assert report.height == 0 and texts.height == 9
    assert texts.group_by("combination_id").len()["len"].to_list() == [3, 3, 3]
    last = backend.calls[2]
    assert [m["role"] for m in last] == ["user", "assistant", "user", "assistant", "user"]
    assert last[2]["content"] == last[4]["content"] == GenerateParams().different_prompt
    assert texts.filter(pl.col("combination_id") == 0)["text"].to_list()[1].startswith("Caption number 2")
    assert texts["prompt"].n_unique() == 3  # the first user turn, for all captions of a chat


def test_duplicate_texts_are_kept_once_and_reported(tmp_path):
    texts, report, _ = run(tmp_path, params(n_combinations=5), ScriptedBackend(lambda m, s: "A photo."))
    assert texts.height == 1 and texts["combination_id"].to_list() == [0]
    assert report["reason"].to_list() == ["duplicate"] * 4
    assert report["detail"].to_list() == ["same text as combination 0 caption 0"] * 4


# ------------------------------------------------------------------------- backend failures


def test_backend_errors_are_reported_and_retried_on_the_next_run(tmp_path):
    broken = {2, 5}

    def flaky(messages, seed):
        plan_ids = [c.id for c in plan if c.words == labels_of_first_turn(messages)]
        if set(plan_ids) & broken:
            raise BackendError("server went away")
        return echo_caption(messages, seed)

    p = params(n_combinations=8)
    plan = plan_combinations(VOC_LABELS, seed=0, n=8, max_labels=3, llm_fraction=1.0)
    texts, report, _ = run(tmp_path, p, ScriptedBackend(flaky))
    assert set(report["reason"]) == {"backend_error"}
    assert set(report["combination_id"]) >= broken and set(texts["combination_id"]).isdisjoint(broken)
    # the failed combinations are not journaled: the next run asks only for them
    healthy = ScriptedBackend(echo_caption)
    texts2, report2, summary = run(tmp_path, p, healthy)
    assert report2.height == 0 and texts2.height == 8
    assert summary.resumed == 8 - len(set(report["combination_id"]))
    assert len(healthy.calls) == len(set(report["combination_id"]))


def test_a_dead_backend_stops_the_stage_instead_of_dropping_everything(tmp_path):
    def dead(messages, seed):
        raise BackendError("connection refused")

    with pytest.raises(GenerateError, match="in a row failed with backend errors"):
        run(tmp_path, params(n_combinations=40), ScriptedBackend(dead))


# --------------------------------------------------------------------------------- journal


class Crash(Exception):
    pass


def test_resume_after_a_crash_gives_the_uninterrupted_table(tmp_path):
    p = params(n_combinations=30, llm_fraction=0.8, captions_per_combination=2)
    full, full_report, _ = run(tmp_path, p, ScriptedBackend(echo_caption), name="full")

    def crashing(messages, seed):
        if len(crashy.calls) > 25:
            raise Crash("killed")
        return echo_caption(messages, seed)

    crashy = ScriptedBackend(crashing)
    with pytest.raises(Crash):
        run(tmp_path, p, crashy, name="resumed")
    assert list((tmp_path / "resumed" / "journal").glob("*/*.parquet")), "finished captions were journaled"
    again = ScriptedBackend(echo_caption)
    texts, report, summary = run(tmp_path, p, again, name="resumed")
    assert 0 < summary.resumed < 24 and summary.resumed + summary.generated == 24
    assert len(again.calls) == 2 * summary.generated  # nothing asked twice
    assert texts.equals(full) and report.equals(full_report)


def test_journal_is_keyed_by_what_changes_answers(tmp_path):
    p = params(n_combinations=6)
    run(tmp_path, p, ScriptedBackend(echo_caption))
    journal = tmp_path / "out" / "journal"
    (first,) = [d.name for d in journal.iterdir()]

    # transport settings and more combinations: the journal is reused
    moved = dataclasses.replace(
        p, n_combinations=9, n_threads=1, openai=OpenAIParams(base_urls=("http://x:1/v1",), concurrency=9)
    )
    backend = ScriptedBackend(echo_caption)
    _, _, summary = run(tmp_path, moved, backend)
    assert summary.resumed == 6 and len(backend.calls) == 3
    assert [d.name for d in journal.iterdir()] == [first]

    # another prompt: nothing reused; the other setting's journal stays (the folder is per user: a parallel run,
    # or switching back, uses it) until nobody has written it for KEEP_OTHERS_S, then the next run removes it
    other = dataclasses.replace(p, prompt="Describe a picture that contains {labels}.")
    backend = ScriptedBackend(echo_caption)
    _, _, summary = run(tmp_path, other, backend)
    assert summary.resumed == 0 and len(backend.calls) == 6
    assert first in [d.name for d in journal.iterdir()] and len(list(journal.iterdir())) == 2
    unused = time.time() - KEEP_OTHERS_S - 60
    for path in [journal / first, *(journal / first).iterdir()]:
        os.utime(path, (unused, unused))
    _, _, summary = run(tmp_path, other, ScriptedBackend(echo_caption))
    assert summary.resumed == 6
    assert first not in [d.name for d in journal.iterdir()] and len(list(journal.iterdir())) == 1

    # another model answers differently: not reused either
    backend = ScriptedBackend(echo_caption, model_name="other")
    _, _, summary = run(tmp_path, p, backend)
    assert summary.resumed == 0


def test_a_chunk_in_two_files_counts_once(tmp_path):
    p = params(n_combinations=4)
    first, _, _ = run(tmp_path, p, ScriptedBackend(echo_caption))
    (folder,) = (tmp_path / "out" / "journal").iterdir()
    chunks = sorted(folder.glob("*.parquet"))
    rows = pl.concat([pl.read_parquet(c) for c in chunks])
    rows.write_parquet(folder / "99999999999999999999-1-000001.parquet")  # e.g. two runs at once
    (folder / ".half-written.parquet.tmp").write_bytes(b"PAR1 junk")
    texts, _, summary = run(tmp_path, p, ScriptedBackend(lambda m, s: pytest.fail("all journaled")))
    assert summary.resumed == 4 and texts.equals(first)
    assert not (folder / ".half-written.parquet.tmp").exists()


# ---------------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"generate.prompt": "Caption an image of these."}, "generate.prompt"),
        ({"generate.backend": "foo"}, "generate.backend"),
        ({"generate.templates": ["a photo."]}, "generate.templates[0]"),
        ({"generate.llm_fraction": 1.5}, "generate.llm_fraction"),
        ({"generate.max_tokens": 2048}, "generate.max_tokens"),
        ({"generate.openai.base_urls": ["127.0.0.1:8000"]}, "generate.openai.base_urls[0]"),
        ({"generate.openai.concurrency": 0}, "generate.openai.concurrency"),
        ({"generate.captions_per_combination": 2, "generate.different_prompt": " "}, "generate.different_prompt"),
        ({"generate.n_combinations": "many"}, "generate.n_combinations"),
        ({"generate.temprature": 0.5}, "temprature"),
    ],
)
def test_bad_params_name_the_key(override, key):
    with pytest.raises(ParamsError) as e:
        load_params(ROOT / "params.yaml", overrides=override)
    assert key in str(e.value)


def test_a_missing_model_file_names_the_key(tmp_path):
    with pytest.raises(ParamsError, match=r"generate\.model = .*not a file"):
        resolve_model(str(tmp_path / "nope.gguf"))
    assert resolve_model("smollm2").suffix == ".gguf"


def test_the_fingerprint_covers_the_answer_code(monkeypatch):
    from pipeline.generate import captions as run_module
    from pipeline.generate.journal import fingerprint_of

    p = params()
    before = fingerprint_of(run_module.journal_meta(p, VOC_LABELS, {"backend": "x"}))
    assert before == fingerprint_of(run_module.journal_meta(p, VOC_LABELS, {"backend": "x"}))
    monkeypatch.setattr(run_module, "_answer_code_hash", lambda: "edited")
    assert fingerprint_of(run_module.journal_meta(p, VOC_LABELS, {"backend": "x"})) != before


def test_label_rule_combination_keeps_the_combination_and_reports_what_mentions_would_add(tmp_path):
    from pipeline.generate.captions import MENTIONS_SCHEMA, journal_meta
    from pipeline.generate.journal import fingerprint_of

    # the scripted model names a kitten (a "cat" synonym) in every caption, and a train in the first chat
    def answer(messages, seed):
        extra = " near a train" if "person" in labels_of_first_turn(messages) else ""
        return f"A kitten next to the {labels_of_first_turn(messages)}{extra}."

    p = params(n_combinations=12)
    assert p.label_rule == "combination"
    out = tmp_path / "paper"
    summary = generate_texts(
        p,
        VOC_LABELS,
        texts_path=out / "texts.parquet",
        report_path=out / "report.parquet",
        journal_dir=tmp_path / "journal",
        mentions_path=out / "mentions.parquet",
        backend=ScriptedBackend(answer),
        progress=False,
    )
    texts = pl.read_parquet(out / "texts.parquet")
    assert texts["labels"].to_list() == texts["combination"].to_list()
    expected_changed = sum(
        bool(set(VOC_LABELS.find_in_text(t)) - set(c)) for t, c in zip(texts["text"], texts["combination"])
    )
    assert expected_changed > 0 and summary.mentions_would_change == expected_changed
    mentions = pl.read_parquet(out / "mentions.parquet")
    assert dict(mentions.schema) == MENTIONS_SCHEMA
    assert mentions["n_texts"].is_sorted(descending=True) and mentions["label"][0] == "cat"
    assert mentions.filter(pl.col("label") == "cat")["n_texts"].item() == sum(
        "cat" not in c for c in texts["combination"]
    )
    metrics = summary.metrics()
    assert metrics["n_texts"] == texts.height and metrics["n_texts_mentions_would_change"] == expected_changed
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values())

    # mentions: the same captions (resumed from the journal: no LLM call), labels extended
    mentions_params = dataclasses.replace(p, label_rule="mentions")
    assert fingerprint_of(journal_meta(mentions_params, VOC_LABELS, {"b": 1})) == fingerprint_of(
        journal_meta(p, VOC_LABELS, {"b": 1})
    )
    out = tmp_path / "mentions"
    again = generate_texts(
        mentions_params,
        VOC_LABELS,
        texts_path=out / "texts.parquet",
        report_path=out / "report.parquet",
        journal_dir=tmp_path / "journal",
        backend=ScriptedBackend(lambda m, s: pytest.fail("no LLM call expected")),
        progress=False,
    )
    extended = pl.read_parquet(out / "texts.parquet")
    assert again.resumed == 12 and extended["text"].to_list() == texts["text"].to_list()
    changed = sum(a != b for a, b in zip(extended["labels"].to_list(), extended["combination"].to_list()))
    assert changed == expected_changed == again.mentions_would_change
    for row in extended.iter_rows(named=True):
        assert set(row["labels"]) == set(row["combination"]) | set(VOC_LABELS.find_in_text(row["text"]))
