"""Several chats decoded at once in one llama.cpp context (generate.parallel).

On a CPU, decoding one sequence reads every weight for every token: matrix-vector work, bound by
memory bandwidth. One `llama_decode` call over B sequences reads the weights once for B tokens
(docs/generation.md, captions/s by width).

`BatchDecoder.run(chats)` decodes a group of chats with `width` sequences in flight. A chat is a
generator that yields `Request`s (prompt tokens, stop sequences, seed) one at a time and is sent
each one's `Completion` (or the exception that stopped it); its return value is the group's answer
for it. Each request has a slot (llama.cpp sequence id 1..width) from start to end; a finished
request's slot takes the same chat's next request, or the next chat of the group that has not
started, in group order: a group of more chats than slots keeps every slot busy until its queue
runs out. The prompt's tokens shared with every chat (the chat template's head, the first prompt up
to its labels) are decoded once into sequence 0 and copied into each slot (`llama_memory_seq_cp`,
unified KV cache). A slot keeps what it decoded: a request that starts with more of it than the
shared prefix (a resample of the same turn, the chat's next turn) decodes only the rest, as
`create_chat_completion` reuses the longest common prefix of its last call.

Determinism: the floating-point result of a decode depends on what else is in the batch, so an
answer depends on its group, not on (messages, seed) alone. Every group starts from the same state
(the cache cleared, the shared prefix restored from a saved copy), and what is decoded at each step
follows from the group's chats alone, so the same group gives the same answers in any run, in any
process, after any earlier group: a resumed stage that rebuilds the same groups rebuilds the same
table (pipeline.generate.captions journals whole groups).

Per request, the sampling is `Llama.create_chat_completion`'s: the sampler chain of
`Llama._init_sampler` (penalties, top-k 40, typical 1.0, top-p 0.95, min-p 0.05, temperature, a
distribution seeded by the request's seed), the same stop-sequence, multi-byte and max_tokens rules,
and the loop guard (pipeline.generate.loops) asked before each token. At width 1 the answers equal
`create_chat_completion`'s (tests/test_generate_batch.py).
"""

from __future__ import annotations

import ctypes
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generator

from pipeline.generate.loops import LoopGuard

N_BATCH = 512  # tokens per llama_decode call (llama-cpp-python's default n_batch)


@dataclass(frozen=True)
class Request:
    tokens: list[int]  # the whole prompt, chat template applied
    stop: tuple[str, ...]  # stop sequences (the chat template's end text among them)
    seed: int


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str  # "stop" | "length"
    tokens: int  # completion tokens
    looped: bool  # the loop guard ended it


class ContextOverflow(ValueError):
    pass


Chat = Generator[Request, Any, Any]


@dataclass
class _Sequence:
    chat: int  # index of its chat in the group
    request: Request
    sampler: Any
    guard: LoopGuard
    max_tokens: int
    pending: list[int]  # prompt tokens still to decode
    completion: list[int] = field(default_factory=list)
    multibyte_fix: int = 0
    logits_at: int | None = None  # this step's batch index of its logits


class BatchDecoder:
    """A llama.cpp context for `width` sequences of up to `n_ctx` tokens each, beside `llm`'s own."""

    def __init__(self, llm, *, n_ctx: int, width: int, temperature: float, max_tokens: int, prefix: list[int]):
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp._utils import suppress_stdout_stderr

        self._llama_cpp = llama_cpp
        self.llm = llm
        self.n_ctx = n_ctx
        self.width = width
        self.temperature = temperature
        self.max_tokens = max_tokens
        params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)  # threads, attention, KV types
        params.n_ctx = n_ctx * width  # each sequence keeps n_ctx tokens (the shared prefix counted in each)
        params.n_seq_max = width + 1  # sequence 0 holds the shared prefix
        params.kv_unified = True  # one cache: the prefix's cells are shared, not copied
        params.n_batch = params.n_ubatch = N_BATCH
        with suppress_stdout_stderr(disable=False):  # llama.cpp warns that n_ctx exceeds the training context: it
            # is the sum over the sequences, each of which stays within n_ctx
            self.ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=N_BATCH, embd=0, n_seq_max=1, verbose=False)
        self.memory = llama_cpp.llama_get_memory(self.ctx.ctx)
        self.eos = llm.token_eos()
        self.prefix = list(prefix)
        self._prefix_state = self._decode_prefix()
        self._cached: list[list[int]] = [[] for _ in range(width)]  # per slot: the tokens its KV cells hold

    # ------------------------------------------------------------------------------- state

    def _decode_prefix(self):
        """Decode the shared prefix into sequence 0 once; keep a copy of its cache to restore per group."""
        lc = self._llama_cpp
        lc.llama_memory_clear(self.memory, True)
        if not self.prefix:
            return None
        for start in range(0, len(self.prefix), N_BATCH):
            chunk = self.prefix[start : start + N_BATCH]
            self.batch.reset()
            for i, token in enumerate(chunk):
                self._add(token, start + i, 0, False)
            self.ctx.decode(self.batch)
        size = lc.llama_state_seq_get_size(self.ctx.ctx, 0)
        state = (ctypes.c_uint8 * size)()
        written = lc.llama_state_seq_get_data(self.ctx.ctx, state, size, 0)
        if written != size:
            raise RuntimeError(f"llama_state_seq_get_data wrote {written} of {size} bytes")
        return state

    def _start_group(self) -> None:
        """The state every group starts from: an empty cache but for the shared prefix in sequence 0."""
        lc = self._llama_cpp
        lc.llama_memory_clear(self.memory, True)
        self._cached = [[] for _ in range(self.width)]
        if self._prefix_state is not None:
            n = len(self._prefix_state)
            if lc.llama_state_seq_set_data(self.ctx.ctx, self._prefix_state, n, 0) != n:
                raise RuntimeError("llama_state_seq_set_data could not restore the shared prefix")

    def _add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        b = self.batch.batch
        i = b.n_tokens
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq_id
        b.logits[i] = logits
        b.n_tokens = i + 1
        return i

    # ------------------------------------------------------------------------------- requests

    def _begin(self, chat: int, request: Request, slot: int) -> _Sequence:
        n = len(request.tokens)
        if n >= self.n_ctx:
            raise ContextOverflow(f"Requested tokens ({n}) exceed context window of {self.n_ctx}")
        lc, cached = self._llama_cpp, self._cached[slot]
        from_prefix, from_slot = _common(self.prefix, request.tokens), _common(cached, request.tokens)
        # at least one prompt token is decoded: its logits give the first answer token
        if from_slot > from_prefix:  # keep the slot's cells up to where the request departs from them
            keep = min(from_slot, n - 1)
            lc.llama_memory_seq_rm(self.memory, slot + 1, keep, -1)
        else:  # start from the shared prefix
            keep = min(from_prefix, n - 1)
            lc.llama_memory_seq_rm(self.memory, slot + 1, -1, -1)
            if keep:
                lc.llama_memory_seq_cp(self.memory, 0, slot + 1, 0, keep)
        self._cached[slot] = list(request.tokens[:keep])
        llm = self.llm
        llm.set_seed(request.seed)
        sampler = llm._init_sampler(
            top_k=40,
            top_p=0.95,
            min_p=0.05,
            typical_p=1.0,
            temp=self.temperature,
            repeat_penalty=1.0,
            frequency_penalty=0.0,
            presence_penalty=0.0,
            tfs_z=1.0,
            mirostat_mode=0,
            mirostat_tau=5.0,
            mirostat_eta=0.1,
            penalize_nl=True,
        )
        max_tokens = self.max_tokens if self.max_tokens + n < self.n_ctx else self.n_ctx - n
        return _Sequence(chat, request, sampler, LoopGuard(self.eos), max_tokens, list(request.tokens[keep:]))

    def _next_token(self, seq: _Sequence) -> Completion | None:
        """Sample `seq`'s next token from this step's logits; its Completion once it is done."""
        if seq.guard.check(seq.completion):
            token = self.eos  # what the guard's logits processor leaves create_chat_completion to sample
        else:
            token = seq.sampler.sample(self.ctx, seq.logits_at)
        llm = self.llm
        prompt = seq.request.tokens
        if self._llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            return self._done(seq, llm.detokenize(seq.completion, prev_tokens=prompt), "stop")
        seq.completion.append(token)
        all_text = llm.detokenize(seq.completion, prev_tokens=prompt)
        for k, char in enumerate(all_text[-3:]):  # an unfinished multi-byte character: no stop check yet
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    seq.multibyte_fix = num - k
        if seq.multibyte_fix > 0:
            seq.multibyte_fix -= 1
            return None
        found = [s for s in (s.encode("utf-8") for s in seq.request.stop) if s in all_text]
        if found:
            return self._done(seq, all_text[: all_text.index(found[0])], "stop")
        if len(seq.completion) >= seq.max_tokens:
            return self._done(seq, all_text, "length")
        return None

    @staticmethod
    def _done(seq: _Sequence, text: bytes, finish_reason: str) -> Completion:
        return Completion(text.decode("utf-8", errors="ignore"), finish_reason, len(seq.completion), seq.guard.fired)

    # ------------------------------------------------------------------------------- the loop

    def run(self, chats: list[Chat]) -> list[Any]:
        """Each chat's return value, the group decoded `width` sequences at a time (see the module docstring)."""
        self._start_group()
        results: list[Any] = [None] * len(chats)
        waiting = deque(range(len(chats)))
        slots: list[_Sequence | None] = [None] * self.width

        def advance(chat: int, slot: int, answer: Any) -> None:
            """Hand `answer` to the chat (None: start it); put its next request in `slot`, or end it."""
            while True:
                try:
                    request = next(chats[chat]) if answer is None else chats[chat].send(answer)
                except StopIteration as stop:
                    results[chat] = stop.value
                    slots[slot] = None
                    return
                try:
                    slots[slot] = self._begin(chat, request, slot)
                    return
                except ContextOverflow as e:
                    answer = e

        def fill() -> None:
            for slot in range(self.width):
                while slots[slot] is None and waiting:
                    advance(waiting.popleft(), slot, None)

        def release(slot: int, keep: bool = True) -> _Sequence:
            """Free `slot` for the next request; its cells stay for it to reuse unless `keep` is false."""
            seq = slots[slot]
            if not keep:
                self._llama_cpp.llama_memory_seq_rm(self.memory, slot + 1, -1, -1)
                self._cached[slot] = []
            seq.sampler.close()
            slots[slot] = None
            return seq

        fill()
        while any(slots):
            self.batch.reset()
            for slot, seq in enumerate(slots):
                if seq is None:
                    continue
                seq.logits_at = None
                room = N_BATCH - self.batch.batch.n_tokens
                cached = self._cached[slot]
                if seq.pending:
                    part, seq.pending = seq.pending[:room], seq.pending[room:]
                    for j, token in enumerate(part):
                        at = self._add(token, len(cached), slot + 1, not seq.pending and j == len(part) - 1)
                        cached.append(token)
                    if not seq.pending and part:
                        seq.logits_at = at
                elif room:
                    seq.logits_at = self._add(seq.completion[-1], len(cached), slot + 1, True)
                    cached.append(seq.completion[-1])
            try:
                self.ctx.decode(self.batch)
            except Exception as e:  # the whole step failed: every request in flight gets the error
                for slot, seq in enumerate(slots):
                    if seq is not None:
                        release(slot, keep=False)  # what its cells hold is not known
                        advance(seq.chat, slot, e)
                fill()
                continue
            for slot, seq in enumerate(slots):
                if seq is None or seq.logits_at is None:
                    continue
                done = self._next_token(seq)
                if done is not None:
                    release(slot)
                    advance(seq.chat, slot, done)
            fill()
        return results

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()


def _common(a: list[int], b: list[int]) -> int:
    """How many tokens `a` and `b` share from the start."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
