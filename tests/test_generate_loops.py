"""A looping answer (the same emoji, a phrase said again and again) is cut where the loop shows and
reported as looped, so the stage spends no tokens on it and samples the turn again instead of asking
to shorten it; answers that do not loop are untouched. The embedded model checks the plumbing: the
guard is installed, ends the answer, and the reply says so."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from generate_fakes import ScriptedBackend
from pipeline.config import GenerateParams
from pipeline.data.labels import VOC_LABELS
from pipeline.generate import generate_texts
from pipeline.generate import loops as loops_module
from pipeline.generate.backends import Reply
from pipeline.generate.loops import LOOPED, MIN_SPAN, LoopGuard, loops

CAPTION = list(range(100, 130))  # 30 distinct ids: a caption never repeats itself


def run(tmp_path, p: GenerateParams, backend) -> tuple[pl.DataFrame, pl.DataFrame]:
    """texts and report of one generate run with `backend`."""
    out = tmp_path / "out"
    generate_texts(
        p,
        VOC_LABELS,
        texts_path=out / "texts.parquet",
        report_path=out / "report.parquet",
        journal_dir=out / "journal",
        backend=backend,
        progress=False,
    )
    return pl.read_parquet(out / "texts.parquet"), pl.read_parquet(out / "report.parquet")


def test_a_repeated_token_loops_once_it_fills_the_span():
    assert not loops(CAPTION)
    assert not loops(CAPTION + [7] * MIN_SPAN)  # span tokens equal to the one before: 17 sevens needed
    assert loops(CAPTION + [7] * (MIN_SPAN + 1))


def test_a_repeated_pattern_and_a_repeated_phrase_loop():
    emoji = [11, 12, 13]  # one emoji, three byte tokens
    assert loops(CAPTION + emoji * 7)  # 21 tokens: the last 16 equal the 16 before them by 3
    assert not loops(CAPTION + emoji * 5)  # 15 tokens: not yet
    phrase = list(range(200, 224))  # 24 tokens said twice in a row
    assert loops(CAPTION + phrase + phrase)
    assert not loops(CAPTION + phrase + phrase[:-1])


def test_a_short_phrase_said_twice_is_not_a_loop():
    phrase = list(range(200, 210))  # "a cat and a dog ... a cat and a dog"
    assert not loops(CAPTION + phrase + [1, 2, 3] + phrase)
    assert not loops(CAPTION + phrase + phrase)  # 20 tokens < span 16 + period 10


def test_the_guard_leaves_scores_alone_until_the_answer_loops():
    prompt = [5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]  # a loop in the prompt is not the answer's
    guard = LoopGuard(end_token=2)
    ids = list(prompt)
    for step in range(MIN_SPAN + 1):
        scores = np.arange(10, dtype=np.float32)
        out = guard(np.array(ids), scores.copy())
        assert np.array_equal(out, scores) and not guard.fired, step
        ids.append(9)
    out = guard(np.array(ids), np.arange(10, dtype=np.float32))
    assert guard.fired and out[2] == 0 and np.isneginf(np.delete(out, 2)).all()


@pytest.fixture(scope="module")
def embedded_backend():
    from pipeline.generate.backends import LlamaCppBackend, resolve_model

    backend = LlamaCppBackend(resolve_model("smollm2"), n_ctx=1024, n_threads=2, temperature=0.7, max_tokens=48)
    yield backend
    backend.close()


def test_the_embedded_backend_ends_a_looping_answer_and_reports_it_cut(embedded_backend, monkeypatch):
    messages = [{"role": "user", "content": "Please briefly caption an image that contains cat and dog."}]
    normal = embedded_backend.chat(messages, seed=3)
    assert normal.finish_reason == "stop" and normal.tokens < 48, normal

    monkeypatch.setattr(loops_module, "loops", lambda tokens: len(tokens) >= 4)  # "loops" after 4 tokens
    cut = embedded_backend.chat(messages, seed=3)
    assert cut.finish_reason == LOOPED and cut.tokens <= 5, cut
    assert normal.text.startswith(cut.text.strip()) and len(cut.text) < len(normal.text)  # the same answer, ended


@pytest.mark.parametrize("single_sentence", [False, True])
def test_a_looped_answer_is_sampled_again_not_shortened_nor_kept(tmp_path, single_sentence):
    """Even when finished sentences come before the loop, and in the paper's turns too."""

    def answer(messages, seed):
        if len(backend.calls) % 2:  # every first sample loops
            return Reply("A cat on a sofa. A cat on a sofa. " + "\U0001f30d" * 6, LOOPED)
        return f"A photo of {messages[0]['content'].split('contains ', 1)[1]}"

    backend = ScriptedBackend(answer)
    p = dataclasses.replace(GenerateParams(n_combinations=3, journal_every_s=0.01), single_sentence=single_sentence)
    texts, report = run(tmp_path, p, backend)
    assert report.height == 0 and texts.height == 3 and all(t.startswith("A photo of ") for t in texts["text"])
    assert len(backend.calls) == 6 and all(len(chat) == 1 for chat in backend.calls)  # no shortening turn


def test_an_answer_that_always_loops_is_dropped_as_too_long(tmp_path):
    backend = ScriptedBackend(lambda m, s: Reply("\U0001f30d" * 6, LOOPED))
    p = GenerateParams(n_combinations=2, llm_fraction=0.5, max_retries=2, journal_every_s=0.01)
    _, report = run(tmp_path, p, backend)
    assert report["reason"].to_list() == ["too_long"] and report["attempts"].to_list() == [3]
    assert "looped" in report["detail"][0] and len(backend.calls) == 3
