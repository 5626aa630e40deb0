"""Answers that loop are cut where the loop shows, not at `max_tokens`.

A small chat model sometimes repeats itself until `max_tokens` cuts it: the same emoji 32 times
(SmolLM2-135M, 3 of 120 first answers in the generation benchmark), or a phrase over and over
("..., a very modern and luxurious piece of furniture, and a sofa with a sofahead and a couch, a
very modern ..."). Every token after the loop shows is wasted: the answer is cut at max_tokens
anyway and the stage asks again. `loops` spots it from the token ids; `LoopGuard` is a
llama-cpp-python logits processor that then allows only the end token, and says it fired so the
backend reports the answer as cut with `finish_reason` LOOPED. The stage samples that turn again
(pipeline.generate.refine), as it does an unreadable answer.

A loop: the last `span` generated tokens equal the `span` tokens `period` earlier, for a period
of 1..MAX_PERIOD tokens, with span = max(MIN_SPAN, period). So a token or a short pattern
repeated MIN_SPAN tokens long, or a phrase of up to MAX_PERIOD tokens said twice in a row. A
caption never repeats 16 tokens verbatim.

The OpenAI backend cannot look inside the server's sampling loop; there a loop runs to
max_tokens and is cut there.
"""

from __future__ import annotations

import numpy as np

MIN_SPAN = 16
MAX_PERIOD = 48
LOOPED = "loop"  # Reply.finish_reason of an answer the guard ended


def loops(tokens, min_span: int = MIN_SPAN, max_period: int = MAX_PERIOD) -> bool:
    """Whether `tokens` (the generated ids so far) end in a loop (see the module docstring)."""
    tokens = np.asarray(tokens)
    n = len(tokens)
    for period in range(1, max_period + 1):
        span = max(min_span, period)
        if span + period > n:
            break
        if np.array_equal(tokens[n - span :], tokens[n - span - period : n - period]):
            return True
    return False


class LoopGuard:
    """A llama-cpp-python logits processor: once the answer loops, only `end_token` may follow.

    Called with the whole context (prompt + answer so far) before each generated token; the
    first call's length is where the answer starts. One guard per answer."""

    def __init__(self, end_token: int):
        self.end_token = end_token
        self.start: int | None = None
        self.fired = False

    def __call__(self, input_ids, scores):
        if self.start is None:
            self.start = len(input_ids)
        if self.check(input_ids[self.start :]):
            scores[:] = -np.inf
            scores[self.end_token] = 0.0
        return scores

    def check(self, answer) -> bool:
        """Whether the answer so far (generated ids) loops: then only `end_token` may follow. The batched
        decoder (pipeline.generate.llama_batch) asks this before each token instead of filtering logits."""
        if not self.fired and loops(answer):
            self.fired = True
        return self.fired
