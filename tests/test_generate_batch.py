"""generate.parallel: chats decoded several at a time (the llama_cpp backend's chat_group) in fixed
groups of the plan, journaled whole, so a run killed mid-group resumes to the uninterrupted table
although an answer depends on what else was in its batch. The embedded model checks the batched
decoder itself: at width 1 it answers what create_chat_completion answers, a group answers the same
after any other group and in a fresh process, and stop sequences, the loop guard and a context
overflow act per sequence."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from generate_fakes import GroupingBackend
from pipeline.config import GenerateParams, ParamsError
from pipeline.data.labels import VOC_LABELS
from pipeline.generate import generate_texts
from pipeline.generate import loops as loops_module
from pipeline.generate.backends import BackendError, Reply
from pipeline.generate.loops import LOOPED
from pipeline.generate.sentence import STOP


def run(tmp_path, p: GenerateParams, backend, name: str = "out"):
    out = tmp_path / name
    summary = generate_texts(
        p,
        VOC_LABELS,
        texts_path=out / "texts.parquet",
        report_path=out / "report.parquet",
        journal_dir=tmp_path / f"{name}-journal",
        backend=backend,
        progress=False,
    )
    return summary, pl.read_parquet(out / "texts.parquet"), pl.read_parquet(out / "report.parquet")


def batch_sensitive(backend):
    """Answers that depend on the batch; every third combination's first answer names no label (retried)."""

    def answer(messages, seed):
        labels = messages[0]["content"].split("contains ", 1)[1].rstrip(".")
        if seed % 3 == 0 and len(messages) == 1:
            return f"A quiet room, batch of {backend.batch}."
        return f"A photo ({seed % 97}, batch of {backend.batch}) of {labels}."

    return answer


def grouping(parallel: int, interrupt_at=None, group=None) -> GroupingBackend:
    backend = GroupingBackend(lambda m, s: "", parallel=parallel, group=group, interrupt_at=interrupt_at)
    backend.answer = batch_sensitive(backend)
    return backend


P = GenerateParams(n_combinations=14, seed=3, journal_every_s=1e-6, require_labels="any")


def test_groups_are_fixed_runs_of_the_plan_and_answers_carry_their_batch(tmp_path):
    backend = grouping(4)
    summary, texts, report = run(tmp_path, P, backend)
    assert backend.groups == [4, 4, 4, 2]  # 14 combinations, plan order, the last group smaller
    assert max(backend.rounds) == 4 and min(backend.rounds) < 4  # retries run in smaller rounds
    assert texts.height + report.height == 14 and summary.generated == 14
    assert texts["text"].str.contains("batch of 4").any()


def test_a_group_larger_than_the_width_keeps_its_places_busy(tmp_path):
    backend = grouping(4, group=8)
    summary, texts, report = run(tmp_path, P, backend)
    assert backend.groups == [8, 6]
    assert max(backend.rounds) == 4 and backend.rounds[:3] == [4, 4, 4]  # a retried chat's place taken by the next
    assert texts.height + report.height == 14 and summary.generated == 14


@pytest.mark.parametrize("parallel, group, groups", [(4, 4, [4, 4, 4, 2]), (2, 6, [6, 6, 2])])
def test_a_kill_mid_group_resumes_to_the_uninterrupted_table(tmp_path, parallel, group, groups):
    _, ref_texts, ref_report = run(tmp_path, P, grouping(parallel, group=group), name="whole")
    with pytest.raises(KeyboardInterrupt):  # third group, second round
        run(tmp_path, P, grouping(parallel, group=group, interrupt_at=(2, 1)), name="killed")
    journal = pl.concat([pl.read_parquet(c) for c in (tmp_path / "killed-journal").glob("*/*.parquet")])
    assert sorted(journal["combination_id"].unique()) == list(range(2 * group))  # whole groups only
    resumed = grouping(parallel, group=group)
    summary, texts, report = run(tmp_path, P, resumed, name="killed")
    assert summary.resumed == 2 * group and resumed.groups == groups  # journaled groups ask nothing
    assert resumed.rounds[0] == min(parallel, groups[2])  # the third group decoded whole again
    assert texts.equals(ref_texts) and report.equals(ref_report)


def test_answers_depend_on_the_groups_so_the_resume_test_can_fail(tmp_path):
    """Other groups give another table: a resume that rebuilt groups differently would be caught above."""
    _, ref_texts, _ = run(tmp_path, P, grouping(4), name="whole")
    _, other, _ = run(tmp_path, P, grouping(3), name="three")
    assert not other.equals(ref_texts)


def test_the_fingerprint_covers_what_decides_a_group_only_when_batching():
    from pipeline.generate.captions import journal_meta
    from pipeline.generate.journal import fingerprint_of

    def fingerprint(identity, **changes):
        return fingerprint_of(journal_meta(dataclasses.replace(GenerateParams(), **changes), VOC_LABELS, identity))

    batched = {"backend": "llama_cpp", "parallel": 8, "group": 32}
    single, server = {"backend": "llama_cpp", "parallel": 1, "group": 1}, {}
    for change in ({"n_combinations": 5}, {"llm_fraction": 0.5}, {"require_labels": "all"}):
        assert fingerprint(batched) != fingerprint(batched, **change), change
        assert fingerprint(single) == fingerprint(single, **change), change  # one combination per group
        assert fingerprint(server) == fingerprint(server, **change), change
    assert fingerprint(batched) != fingerprint({**batched, "parallel": 4})
    assert fingerprint(batched) != fingerprint({**batched, "group": 16})
    assert fingerprint(server, parallel=4) == fingerprint(server, parallel=8)  # the param alone changes nothing


@pytest.mark.parametrize("value", [0, 65, 2.5, True])
def test_parallel_out_of_range_names_the_key(value):
    with pytest.raises(ParamsError, match=r"generate\.parallel"):
        dataclasses.replace(GenerateParams(), parallel=value).check("generate")


# ----------------------------------------------------------------------------------- the embedded model


@pytest.fixture(scope="module")
def make():
    from pipeline.generate.backends import LlamaCppBackend, resolve_model

    made = []

    def make(parallel, **kwargs):
        settings = dict(n_ctx=1024, n_threads=1, temperature=0.7, max_tokens=48, prompt=GenerateParams().prompt)
        backend = LlamaCppBackend(resolve_model("smollm2"), **{**settings, **kwargs}, parallel=parallel)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def first_turn(words):
    return [{"role": "user", "content": GenerateParams().prompt.replace("{labels}", words)}]


CHATS = [
    (first_turn(w), s)
    for w, s in [
        ("cat", 11),
        ("bus and person", 12),
        ("sofa, dog and tv monitor", 13),
        ("bird", 14),
        ("train and car", 15),
    ]
]


def one_turn(messages, seed):
    return (yield messages, seed)


def test_width_one_answers_what_create_chat_completion_answers(make):
    backend = make(1, stop=STOP)
    for messages, seed in CHATS[:3]:
        reply = backend.chat(messages, seed=seed)
        backend.llm.reset()
        out = backend.llm.create_chat_completion(
            messages=messages, temperature=0.7, max_tokens=48, seed=seed, stop=list(STOP)
        )
        assert reply.text == out["choices"][0]["message"]["content"]
        assert (reply.finish_reason, reply.tokens) == (
            out["choices"][0]["finish_reason"],
            out["usage"]["completion_tokens"],
        )


def test_a_group_answers_the_same_after_any_other_group_and_in_a_fresh_backend(make):
    backend = make(4)
    group = [one_turn(m, s) for m, s in CHATS[1:]]
    first = backend.chat_group(group)
    backend.chat_group([one_turn(m, s) for m, s in CHATS[:3]])  # another group in between
    again = backend.chat_group([one_turn(m, s) for m, s in CHATS[1:]])
    fresh = make(4).chat_group([one_turn(m, s) for m, s in CHATS[1:]])
    assert first == again == fresh
    assert len({r.text for r in first}) == 4 and all(isinstance(r, Reply) and r.tokens for r in first)


def test_stops_and_the_loop_guard_act_per_sequence(make, monkeypatch):
    backend = make(3, stop=STOP)
    replies = backend.chat_group([one_turn(m, s) for m, s in CHATS[:3]])
    assert all(". " not in r.text for r in replies)
    monkeypatch.setattr(loops_module, "loops", lambda tokens: len(tokens) >= 4)  # "loops" after 4 tokens
    cut = backend.chat_group([one_turn(m, s) for m, s in CHATS[:3]])
    assert all(r.finish_reason == LOOPED and r.tokens == 4 for r in cut)
    assert all(a.text.startswith(c.text.strip()) for a, c in zip(replies, cut))  # the same answers, ended


def test_a_context_overflow_fails_its_own_chat_only(make):
    backend = make(2, n_ctx=128)
    long = [{"role": "user", "content": "cat " * 200}]
    replies = backend.chat_group([one_turn(long, 1), one_turn(*CHATS[0])])
    assert isinstance(replies[0], BackendError) and "exceed context window" in str(replies[0])
    assert isinstance(replies[1], Reply) and replies[1].text


def test_a_group_of_more_chats_than_sequences_answers_the_same_in_a_fresh_backend(make):
    chats = lambda: [one_turn(m, s) for m, s in CHATS]  # noqa: E731  5 chats through 2 sequences
    first = make(2).chat_group(chats())
    assert first == make(2).chat_group(chats())
    assert all(isinstance(r, Reply) and r.tokens for r in first)


def test_a_resample_of_the_same_turn_decodes_only_the_answer(make):
    """A slot keeps what it decoded: the chat's next request decodes only where it departs from it."""
    backend = make(1)
    decoded = []
    decode = backend._decoder.ctx.decode
    backend._decoder.ctx.decode = lambda batch: (decoded.append(batch.batch.n_tokens), decode(batch))[1]
    messages, seed = CHATS[2]

    def twice():
        return [(yield messages, seed), (yield messages, seed + 1)]

    first, second = backend.chat_group([twice()])[0]
    prompt = len(backend._request(messages, seed).tokens) - len(backend._prefix)
    assert prompt > 2
    # the first request decodes its prompt beyond the shared prefix and its answer, the second its last prompt
    # token again and its answer (an answer's last token is sampled, never decoded)
    assert sum(decoded) <= prompt + first.tokens + 1 + second.tokens
