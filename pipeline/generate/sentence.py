"""`generate.single_sentence` (on by default): the LLM stops at the end of its first sentence.

A caption is one short sentence, but a small chat model often keeps going ("... It stands as a
symbol of ...") until `max_tokens` cuts it, and the stage then spends "It's too long" turns on it.
The paper asks its LLM to "briefly caption" the image; the stop sequences hold the embedded 135M
model to that. `single_sentence: false` keeps the paper's conversation as is
(every answer whole, shortened while over 77 CLIP tokens); docs/method.md's "The paper vs the
defaults" lists the difference.
Both backends send `STOP` as the request's stop sequences (llama-cpp's `stop`, the OpenAI API's
`stop` field), so generation ends at the first ". " or ".\n"; `close` puts back the full stop the
server leaves out. Only the full stop ends a caption: "Sure! Here's a caption: A cat on a sofa.
I hope ..." must reach its caption, and a preamble line ("Here is a caption:\n\n...") must not
end the answer, so "!", "?" and bare newlines are not stop sequences.

An answer that still reaches `max_tokens` has no full stop at all: with SmolLM2-135M a list of
"The cat:" lines, or a loop (a repeated emoji, which pipeline.generate.loops cuts early).
Shortening turns re-read it and run away again (the 120-text benchmark dropped all 4 after 3
rounds each), so with single_sentence such an answer is sampled again, as an unreadable one is,
and dropped as `too_long` after `max_retries`.

Why stop sequences and not a llama.cpp grammar (GBNF, one sentence of at most N characters):
with SmolLM2-135M on 30 combinations (same prompts and seeds, CPU seconds of the first turns), stop
sequences took 0.83 of the unconstrained loop's CPU and the grammar 1.12 (llama-cpp-python checks
the grammar against the whole vocabulary at every step), for the same captions; and the `stop`
field works on any OpenAI-compatible server, a grammar only on llama.cpp's.
"""

from __future__ import annotations

STOP: tuple[str, ...] = (". ", ".\n")


def close(caption: str) -> str:
    """The caption with the full stop that a stop sequence removed ("A cat on a sofa" -> "A cat on a sofa.")."""
    caption = caption.rstrip()
    if caption and (caption[-1].isalnum() or caption[-1] in "\"')\u201d\u2019"):
        return caption + "."
    return caption
