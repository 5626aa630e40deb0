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

Every caption slot ends as exactly one Outcome: kept (`text`) or dropped (`reason`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pipeline.generate.backends import BackendError, ChatBackend
from pipeline.generate.combinations import derive_seed
from pipeline.generate.loops import LOOPED
from pipeline.generate.parse import TRUNCATED, Parsed, parse_answer
from pipeline.generate.sentence import close
from pipeline.generate.tokens import CLIP_CONTEXT, clip_token_count

TOO_LONG = "too_long"
BACKEND_ERROR = "backend_error"


@dataclass(frozen=True)
class Outcome:
    caption_index: int
    text: str | None          # the caption, when kept
    n_tokens: int | None      # CLIP tokens of the kept caption (start/end included)
    reason: str | None        # why it was dropped: too_long, empty, refusal, unparseable, backend_error
    detail: str               # what went wrong, for the report
    raw: str | None           # the last raw answer for this slot
    attempts: int             # model calls spent on this slot
    model: str | None = None  # the model that answered

    @property
    def kept(self) -> bool:
        return self.text is not None


def fill(prompt: str, labels_text: str) -> str:
    return prompt.replace("{labels}", labels_text)


def caption_chat(
    backend: ChatBackend,
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
) -> list[Outcome]:
    messages: list[dict[str, str]] = []
    outcomes: list[Outcome] = []
    for k in range(n_captions):
        messages.append({"role": "user", "content": first_prompt if k == 0 else different_prompt})
        shortened = retried = calls = 0
        raw = None
        while True:
            calls += 1
            try:
                reply = backend.chat(messages, seed=derive_seed(seed, k, calls))
            except BackendError as e:
                detail = f"{e}"
                outcomes.append(Outcome(k, None, None, BACKEND_ERROR, detail, raw, calls))
                outcomes.extend(
                    Outcome(j, None, None, BACKEND_ERROR, f"not asked: the chat stopped at caption {k}: {detail}", None, 0)
                    for j in range(k + 1, n_captions)
                )
                return outcomes
            raw = reply.text
            looped = reply.finish_reason == LOOPED
            if looped:
                parsed = Parsed(None, TRUNCATED, raw[:500])   # never a caption, whatever came before the loop
            else:
                parsed = parse_answer(raw, truncated=reply.finish_reason == "length")
                if parsed.ok and single_sentence:
                    parsed = Parsed(close(parsed.text))   # the backend stopped at ". ", which it leaves out
            runaway = parsed.reason == TRUNCATED and (single_sentence or looped)   # no full stop, or a loop
            if not parsed.ok and (parsed.reason != TRUNCATED or runaway):
                if retried < max_retries:
                    retried += 1
                    continue   # sample the same turn again; the bad answer stays out of the chat
                messages.append({"role": "assistant", "content": raw})
                why = "looped (cut where it repeated itself)" if looped else "cut at max_tokens without a full stop"
                reason, detail = (TOO_LONG, f"{why} in {calls} sample(s)") if runaway else (parsed.reason, parsed.detail)
                outcomes.append(Outcome(k, None, None, reason, detail, raw, calls, reply.model))
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
                outcomes.append(Outcome(k, None, None, TOO_LONG, why, raw, calls, reply.model))
                break
            messages.append({"role": "assistant", "content": raw})
            outcomes.append(Outcome(k, parsed.text, n_tokens, None, "", raw, calls, reply.model))
            break
    return outcomes
