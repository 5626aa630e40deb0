"""One chat per combination: ask for a caption, shorten it until CLIP can read it, ask for more.

Turns: the prompt with the labels filled in; for each further caption, `different_prompt`; after
a caption over CLIP's 77 tokens, `shorten_prompt` (up to `max_shorten_rounds` times, then the
caption is dropped as `too_long`). An empty, refused or unreadable answer is asked again (a new
sample of the same turn, up to `max_retries` times), then dropped with its reason. A backend
failure drops the caption and every caption the chat had still to give (`backend_error`).
With `single_sentence` the backend stops each answer at its first full stop
(pipeline.generate.sentence), which is put back here, and an answer that reaches max_tokens without
one (a runaway: a repeated emoji, a list) is sampled again like an unreadable answer rather than
shortened, then dropped as `too_long`. An answer the backend cut because it looped
(pipeline.generate.loops: the same emoji, a phrase again and again) is never a caption, in both
settings: the turn is sampled again, then dropped as `too_long` (a shortening turn only makes
the model repeat its loop, and the sentences before a loop tend to be the loop's first lap).

With a `check` (generate.require_labels), a caption that fits but does not name the labels it
must is sampled again like a refusal (the answer stays out of the chat; the same `max_retries`),
then dropped as `off_topic`.

Every model call is looked up first in `answered` (the journal's earlier answers, by `call_key`:
the chat so far and the seed) and recorded in the Outcome, so a chat run again under other rules
(another require_labels) asks the model only for the turns it has never asked: an answer depends
on (messages, seed) only (pipeline.generate.backends).

Every caption slot ends as exactly one Outcome: kept (`text`) or dropped (`reason`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Callable, Generator, Mapping

from pipeline.generate.backends import BackendError, ChatBackend, Reply
from pipeline.generate.combinations import derive_seed
from pipeline.generate.loops import LOOPED
from pipeline.generate.parse import TRUNCATED, Parsed, parse_answer
from pipeline.generate.sentence import close
from pipeline.generate.tokens import CLIP_CONTEXT, clip_token_count

TOO_LONG = "too_long"
BACKEND_ERROR = "backend_error"
OFF_TOPIC = "off_topic"


@dataclass(frozen=True)
class Outcome:
    caption_index: int
    text: str | None  # the caption, when kept
    n_tokens: int | None  # CLIP tokens of the kept caption (start/end included)
    reason: str | None  # why it was dropped: too_long, empty, refusal, unparseable, backend_error
    detail: str  # what went wrong, for the report
    raw: str | None  # the last raw answer for this slot
    attempts: int  # model calls spent on this slot
    model: str | None = None  # the model that answered
    calls: tuple[dict, ...] = ()  # every model call of this slot: call_record(), in order (the journal keeps them)
    fresh_calls: int = 0  # of those, the ones the backend answered (the others came from `answered`)

    @property
    def kept(self) -> bool:
        return self.text is not None


def fill(prompt: str, labels_text: str) -> str:
    return prompt.replace("{labels}", labels_text)


def call_key(messages: list[dict[str, str]], seed: int) -> str:
    """What a model call's answer depends on: the chat so far and the seed (the model is the journal's)."""
    blob = json.dumps([[[m["role"], m["content"]] for m in messages], seed], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def call_record(key: str, reply: Reply) -> dict:
    return {
        "key": key,
        "text": reply.text,
        "finish_reason": reply.finish_reason,
        "model": reply.model,
        "tokens": reply.tokens,
    }


def reply_of(record: dict) -> Reply:
    return Reply(record["text"] or "", record["finish_reason"], record["model"], record["tokens"])


def caption_chat(backend: ChatBackend, first_prompt: str, **settings) -> list[Outcome]:
    """The chat's outcomes, one per caption, asking `backend.chat` one turn at a time (caption_turns)."""
    return drive(caption_turns(first_prompt, **settings), backend.chat)


def drive(chat: Generator, ask: Callable[..., Reply]):
    """Run a chat generator (caption_turns) to its end, each turn answered by `ask(messages, seed=...)`."""
    try:
        messages, seed = next(chat)
        while True:
            try:
                reply = ask(messages, seed=seed)
            except BackendError as e:
                reply = e
            messages, seed = chat.send(reply)
    except StopIteration as stop:
        return stop.value


def caption_turns(
    first_prompt: str,
    *,
    seed: int,
    n_captions: int,
    different_prompt: str,
    shorten_prompt: str,
    max_shorten_rounds: int,
    max_retries: int,
    single_sentence: bool = False,
    count_tokens: Callable[[str], int] = clip_token_count,
    limit: int = CLIP_CONTEXT,
    check: Callable[[str], str | None] | None = None,
    answered: Mapping[str, Reply] | None = None,
) -> Generator[tuple[list[dict[str, str]], int], Reply | BackendError, list[Outcome]]:
    """The chat as a generator: it yields each model call it needs, (messages, seed), is sent the Reply
    (or the BackendError), and returns the outcomes, one per caption. `check(caption)` says why a
    caption is off topic (None: it is not); `answered` holds earlier answers by call_key, asked again
    of nobody. Driven one turn at a time (drive) or with other chats in a batch (the llama_cpp
    backend's chat_group)."""
    answered = answered or {}
    messages: list[dict[str, str]] = []
    outcomes: list[Outcome] = []
    for k in range(n_captions):
        messages.append({"role": "user", "content": first_prompt if k == 0 else different_prompt})
        shortened = retried = calls = fresh = 0
        raw = None
        records: list[dict] = []

        def outcome(*fields, model=None) -> Outcome:
            return Outcome(k, *fields, calls, model, tuple(records), fresh)

        while True:
            calls += 1
            call_seed = derive_seed(seed, k, calls)
            key = call_key(messages, call_seed)
            reply = answered.get(key)
            if reply is None:
                reply = yield list(messages), call_seed
                if isinstance(reply, BackendError):
                    detail = f"{reply}"
                    outcomes.append(outcome(None, None, BACKEND_ERROR, detail, raw))
                    outcomes.extend(
                        Outcome(
                            j,
                            None,
                            None,
                            BACKEND_ERROR,
                            f"not asked: the chat stopped at caption {k}: {detail}",
                            None,
                            0,
                        )
                        for j in range(k + 1, n_captions)
                    )
                    return outcomes
                fresh += 1
            records.append(call_record(key, reply))
            raw = reply.text
            looped = reply.finish_reason == LOOPED
            if looped:
                parsed = Parsed(None, TRUNCATED, raw[:500])  # never a caption, whatever came before the loop
            else:
                parsed = parse_answer(raw, truncated=reply.finish_reason == "length")
                if parsed.ok and single_sentence:
                    parsed = Parsed(close(parsed.text))  # the backend stopped at ". ", which it leaves out
            runaway = parsed.reason == TRUNCATED and (single_sentence or looped)  # no full stop, or a loop
            if not parsed.ok and (parsed.reason != TRUNCATED or runaway):
                if retried < max_retries:
                    retried += 1
                    continue  # sample the same turn again; the bad answer stays out of the chat
                messages.append({"role": "assistant", "content": raw})
                why = "looped (cut where it repeated itself)" if looped else "cut at max_tokens without a full stop"
                reason, detail = (
                    (TOO_LONG, f"{why} in {calls} sample(s)") if runaway else (parsed.reason, parsed.detail)
                )
                outcomes.append(outcome(None, None, reason, detail, raw, model=reply.model))
                break
            n_tokens = None if parsed.reason == TRUNCATED else count_tokens(parsed.text)
            if n_tokens is None or n_tokens > limit:
                messages.append({"role": "assistant", "content": raw})
                if shortened < max_shorten_rounds:
                    shortened += 1
                    messages.append({"role": "user", "content": shorten_prompt})
                    continue
                why = (
                    f"cut at max_tokens without a finished sentence, still after {shortened} shorten round(s)"
                    if n_tokens is None
                    else f"{n_tokens} CLIP tokens > {limit} after {shortened} shorten round(s)"
                )
                outcomes.append(outcome(None, None, TOO_LONG, why, raw, model=reply.model))
                break
            off_topic = check(parsed.text) if check is not None else None
            if off_topic is not None:
                if retried < max_retries:
                    retried += 1
                    continue  # sample the same turn again, as for a refusal; the answer stays out of the chat
                messages.append({"role": "assistant", "content": raw})
                outcomes.append(
                    outcome(None, None, OFF_TOPIC, f"{off_topic} in {calls} sample(s)", raw, model=reply.model)
                )
                break
            messages.append({"role": "assistant", "content": raw})
            outcomes.append(outcome(parsed.text, n_tokens, None, "", raw, model=reply.model))
            break
    return outcomes
