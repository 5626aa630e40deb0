"""generate.single_sentence (on by default): answers stop at their first full stop (stop sequences on both backends),
the full stop is put back, what still does not fit gets the paper's shortening turn, and the journal
fingerprint tells the two settings apart. One run on the embedded model checks the real thing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from generate_fakes import FakeChatServer, ScriptedBackend, completion
from pipeline.config import GenerateParams, OpenAIParams
from pipeline.data.labels import VOC_LABELS
from pipeline.generate import CLIP_CONTEXT, GenerateError, clip_token_count, generate_texts
from pipeline.generate.captions import journal_meta
from pipeline.generate.journal import fingerprint_of
from pipeline.generate.sentence import STOP, close

RAMBLE = " It stands as a symbol of " + " ".join(["timeless"] * 80) + " comfort and joy."


def params(**changes) -> GenerateParams:
    p = dataclasses.replace(GenerateParams(n_combinations=6, journal_every_s=0.01), **changes)
    p.check("generate")
    return p


def run(tmp_path: Path, p: GenerateParams, backend=None, name: str = "out"):
    out = tmp_path / name
    summary = generate_texts(
        p,
        VOC_LABELS,
        texts_path=out / "texts.parquet",
        report_path=out / "report.parquet",
        journal_dir=out / "journal",
        backend=backend,
        progress=False,
    )
    return pl.read_parquet(out / "texts.parquet"), pl.read_parquet(out / "report.parquet"), summary


def words(messages) -> str:
    return messages[0]["content"].split("contains ", 1)[1].rstrip(".")


def rambler(messages, seed) -> str:
    """A small model's habit: a caption, then sentences until max_tokens; told to shorten, it obeys."""
    if messages[-1]["content"] == GenerateParams().shorten_prompt:
        return f"A photo of {words(messages)}."
    return f"Sure! Here's a caption: A photo of {words(messages)} on a sunny day.{RAMBLE}"


def test_close_puts_back_only_a_missing_full_stop():
    assert close("A cat on a sofa") == "A cat on a sofa."
    assert close('A cat called "Tom" ') == 'A cat called "Tom".'
    assert close("A cat on a sofa.") == "A cat on a sofa."
    assert close("Look at the cat!") == "Look at the cat!"
    assert close("The TV monitors:") == "The TV monitors:"  # a preamble stays unparseable


def test_the_first_sentence_is_kept_without_shortening_turns(tmp_path):
    assert clip_token_count(f"A photo of cat on a sunny day.{RAMBLE}") > CLIP_CONTEXT
    before = ScriptedBackend(rambler)
    texts_before, report_before, summary_before = run(tmp_path, params(single_sentence=False), before, name="before")
    after = ScriptedBackend(rambler, stop=STOP)
    texts, report, summary = run(tmp_path, params(single_sentence=True), after, name="after")

    # without stops every answer runs over CLIP's 77 tokens and costs a shortening turn
    assert len(before.calls) == 12 and texts_before["text"].str.starts_with("A photo of").all()
    # with them: one turn per text, the caption sentence with its full stop, the preamble stripped
    assert report.height == 0 and texts.height == 6 and len(after.calls) == 6
    for text, n_tokens in zip(texts["text"], texts["n_tokens"]):
        assert text.startswith("A photo of") and text.endswith(" on a sunny day.") and ". " not in text
        assert n_tokens == clip_token_count(text) <= CLIP_CONTEXT

    # reports/generate.json says what each setting cost and made, and a resumed run says the same
    metrics_before, metrics = summary_before.metrics(), summary.metrics()
    assert metrics_before["model_calls_per_llm_text"] == 2.0 and metrics["model_calls_per_llm_text"] == 1.0
    assert metrics["mean_text_tokens"] == texts["n_tokens"].mean()
    assert metrics_before["mean_text_tokens"] == texts_before["n_tokens"].mean() < metrics["mean_text_tokens"]
    resumed = ScriptedBackend(lambda m, s: pytest.fail("no LLM call expected"))
    assert run(tmp_path, params(single_sentence=True), resumed, name="after")[2].metrics() == metrics


def test_a_single_sentence_that_is_still_too_long_gets_the_shortening_turn(tmp_path):
    long_sentence = "A photo of " + " and ".join(["a very fluffy cat"] * 20)

    def answer(messages, seed):
        if messages[-1]["content"] == GenerateParams().shorten_prompt:
            return f"A photo of {words(messages)}. It is nice."
        return f"{long_sentence}. It is nice."

    backend = ScriptedBackend(answer, stop=STOP)
    texts, report, _ = run(tmp_path, params(n_combinations=2, single_sentence=True), backend)
    assert clip_token_count(long_sentence + ".") > CLIP_CONTEXT
    assert report.height == 0 and len(backend.calls) == 4
    shorten_turn = backend.calls[1]
    assert [m["role"] for m in shorten_turn] == ["user", "assistant", "user"]
    assert shorten_turn[1]["content"] == long_sentence and shorten_turn[2]["content"] == GenerateParams().shorten_prompt
    assert all(t.startswith("A photo of") and t.endswith(".") and ". " not in t for t in texts["text"])


def test_single_sentence_changes_the_journal_fingerprint(tmp_path):
    off = journal_meta(params(single_sentence=False), VOC_LABELS, {"backend": "x"})
    on = journal_meta(params(single_sentence=True), VOC_LABELS, {"backend": "x"})
    assert fingerprint_of(off) != fingerprint_of(on)

    run(tmp_path, params(single_sentence=False), ScriptedBackend(rambler))
    backend = ScriptedBackend(rambler, stop=STOP)
    _, _, summary = run(tmp_path, params(single_sentence=True), backend)
    assert summary.resumed == 0 and len(backend.calls) == 6  # nothing taken from the other setting's journal


def test_the_openai_backend_sends_the_stop_field(tmp_path):
    def server_with_stops(body, n):
        text = f"A photo of {body['messages'][0]['content'].split('contains ', 1)[-1].rstrip('.')} at night. Nice."
        cuts = [i for i in (text.find(s) for s in body.get("stop", [])) if i >= 0]
        return 200, completion(text[: min(cuts)] if cuts else text), 0.0

    for single_sentence in (False, True):
        with FakeChatServer(server_with_stops) as server:
            p = params(
                n_combinations=3,
                backend="openai",
                single_sentence=single_sentence,
                openai=OpenAIParams(base_urls=(server.base_url,), concurrency=1, timeout_s=5, retries=0),
            )
            texts, _, _ = run(tmp_path, p, name=f"openai-{single_sentence}")
            bodies = [r["body"] for r in server.requests]
        if single_sentence:
            assert all(b["stop"] == list(STOP) for b in bodies)
            assert all(t.endswith(" at night.") for t in texts["text"])
        else:
            assert all("stop" not in b for b in bodies)
            assert all(t.endswith(" at night. Nice.") for t in texts["text"])


def test_the_embedded_model_gives_one_sentence_per_caption(tmp_path):
    p = params(n_combinations=3, single_sentence=True, max_tokens=48)
    texts, report, summary = run(tmp_path, p)
    assert texts.height + report.height == 3 and texts.height >= 1
    for row in texts.iter_rows(named=True):
        assert row["text"].endswith(".") and ". " not in row["text"], row["text"]
        assert row["n_tokens"] == clip_token_count(row["text"]) <= CLIP_CONTEXT


def test_a_runaway_without_a_full_stop_is_sampled_again_not_shortened(tmp_path):
    from pipeline.generate.backends import Reply

    def answer(messages, seed):
        if len(backend.calls) % 2:  # every first sample runs into max_tokens without a full stop
            return Reply("\U0001f30d" * 40, "length")
        return f"A photo of {words(messages)}. More."

    backend = ScriptedBackend(answer, stop=STOP)
    texts, report, _ = run(tmp_path, params(n_combinations=3, single_sentence=True), backend)
    assert report.height == 0 and texts.height == 3 and len(backend.calls) == 6
    assert all(len(chat) == 1 for chat in backend.calls)  # fresh samples of the first turn, no shortening turn

    backend = ScriptedBackend(answer)
    texts, report, _ = run(tmp_path, params(n_combinations=3, single_sentence=False), backend, name="paper")
    assert any(chat[-1]["content"] == GenerateParams().shorten_prompt for chat in backend.calls)


def test_a_model_that_always_runs_away_is_dropped_as_too_long(tmp_path):
    from pipeline.generate.backends import Reply

    backend = ScriptedBackend(lambda m, s: Reply("\U0001f30d" * 40, "length"), stop=STOP)
    p = params(n_combinations=1, single_sentence=True, max_retries=2)
    with pytest.raises(GenerateError, match="no caption was kept"):
        run(tmp_path, p, backend)
    report = pl.read_parquet(tmp_path / "out" / "report.parquet")
    assert report["reason"].to_list() == ["too_long"] and report["attempts"].to_list() == [3]
    assert "without a full stop" in report["detail"][0] and len(backend.calls) == 3
