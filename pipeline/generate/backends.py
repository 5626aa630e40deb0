"""Chat backends: one `chat(messages, seed=...) -> Reply` call per model turn.

- `LlamaCppBackend`: a GGUF run in-process by llama-cpp-python; the model's own chat template
  (from the GGUF metadata) is applied by llama-cpp-python's chat handler, and the chats are decoded
  `parallel` at a time by llama.cpp's batch API (pipeline.generate.llama_batch) with
  `create_chat_completion`'s sampling. `chat_group(chats)` decodes a group of chats (the caller
  makes groups of `group` chats: GROUP_PER_SEQUENCE per sequence, so that a slot whose chat is
  done takes the next one instead of idling until the group ends); every group
  starts from the same state (the tokens every chat shares, the chat template's head and the first
  prompt up to its labels, decoded once and restored), so an answer depends only on its group's
  chats: work order and resumption cannot change it (pipeline.generate.captions rebuilds the same groups).
  A looping answer is ended early (pipeline.generate.loops).
- `OpenAIBackend`: any OpenAI-compatible server (`POST {base_url}/chat/completions`), several
  servers for scale-out, requests spread to the least busy one, retries with exponential backoff.

A backend raises `BackendError` when it cannot answer; the caller drops the combination with
reason `backend_error`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from pipeline.config import GenerateParams, OpenAIParams
from pipeline.generate.llama_batch import BatchDecoder, Completion, Request
from pipeline.generate.llama_load import load_llama
from pipeline.generate.loops import LOOPED
from pipeline.generate.models import model_identity, resolve_model
from pipeline.generate.sentence import STOP

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """The backend gave no usable answer (after its retries)."""


@dataclass(frozen=True)
class Reply:
    text: str
    finish_reason: str | None = None  # "length" when cut at max_tokens, LOOPED when cut where it looped
    model: str | None = None
    tokens: int | None = None  # completion tokens, where the backend reports them (benchmarks)


class ChatBackend(Protocol):
    model_name: str  # the `model` column
    concurrency: int  # chats the caller may run at once

    def chat(self, messages: list[dict[str, str]], *, seed: int) -> Reply: ...

    def identity(self) -> dict: ...  # what, besides params, makes answers differ (model file, server model)

    def close(self) -> None: ...


# ------------------------------------------------------------------------------------ llama_cpp


# Chats per group and sequence at parallel > 1. A sequence idles from its group's last chat to the group's end, and a
# run killed mid-group decodes that group again: 4 groups of 8 instead of one of 32 took 1.4x the decode steps
# (SmolLM2, 64 combinations; docs/generation.md).
GROUP_PER_SEQUENCE = 4
# The Llama's own context: only its vocabulary, chat template and samplers are used (the decoder has its own
# context), so it holds a token count that allocates next to nothing.
OWN_N_CTX = 256


class LlamaCppBackend:
    concurrency = 1  # one thread: the chats run side by side inside chat_group

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int,
        n_threads: int,
        temperature: float,
        max_tokens: int,
        stop: tuple[str, ...] = (),
        prompt: str = "{labels}",
        repack_weights: bool = False,
        parallel: int = 1,
    ):
        self.model_path = Path(model_path)
        self.model_name = self.model_path.name
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.parallel = parallel  # sequences decoded at once (generate.parallel)
        # chats per group; at 1 sequence a group of one: an answer then depends on its chat alone
        self.group = parallel if parallel == 1 else GROUP_PER_SEQUENCE * parallel
        self.stop = list(stop)  # stop sequences (generate.single_sentence); none by default
        self.llm = load_llama(  # weight repacking off unless generate.repack_weights (pipeline.generate.llama_load)
            self.model_path,
            repack_weights=repack_weights,
            n_ctx=OWN_N_CTX,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            seed=0,
            verbose=False,
        )
        if "tokenizer.chat_template" not in self.llm.metadata:
            log.warning(
                "%s carries no chat template: llama-cpp-python falls back to the llama-2 format, which models of "
                "other families (Vicuna, for one) were not trained on; serve it with its own format instead "
                "(generate.backend openai, e.g. python -m llama_cpp.server --chat_format vicuna; docs/models.md)",
                self.model_name,
            )
        self._prefix = self._shared_prefix(prompt)

        self._decoder = BatchDecoder(
            self.llm, n_ctx=n_ctx, width=parallel, temperature=temperature, max_tokens=max_tokens, prefix=self._prefix
        )

    def _request(self, messages: list[dict[str, str]], seed: int):
        """What `create_chat_completion(messages, ...)` would decode: the prompt's tokens and its stop sequences,
        from the model's own chat handler (its template, its end text), which is handed a stand-in for the
        Llama that records the completion it asks for instead of running it."""
        from llama_cpp import llama_chat_format

        llm = self.llm
        handler = (
            llm.chat_handler
            or llm._chat_handlers.get(llm.chat_format)
            or llama_chat_format.get_chat_completion_handler(llm.chat_format)
        )
        recorder = _CompletionRecorder(llm)
        handler(
            llama=recorder,
            messages=messages,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=seed,
            stop=self.stop or None,
        )
        return Request(recorder.prompt, recorder.stop, seed)

    def _shared_prefix(self, prompt: str) -> list[int]:
        """The tokens every chat starts with: the chat template's (system prompt, user header) and the
        first-turn `prompt`'s up to its {labels} ("... an image that contains"), so that no call
        decodes them again."""
        prompts = [
            self._request([{"role": "user", "content": prompt.replace("{labels}", probe)}], 0).tokens
            for probe in ("cat", "dog")
        ]
        shared = 0
        for a, b in zip(*prompts):
            if a != b:
                break
            shared += 1
        return prompts[0][:shared]

    def chat_group(self, chats: list) -> list:
        """Run a group of chats (any number), `parallel` sequences at a time; each chat's return value.

        A chat is a generator that yields (messages, seed) and is sent a Reply, or a BackendError when
        none came (pipeline.generate.refine.caption_turns)."""
        return self._decoder.run([self._translated(chat) for chat in chats])

    def _translated(self, chat):
        """`chat` as the decoder sees it: (messages, seed) -> Request, Completion -> Reply."""
        try:
            messages, seed = next(chat)
            while True:
                answer = yield self._request(messages, seed)
                if isinstance(answer, Completion):
                    # model None: the `model` column takes model_name, the file's name now (a journaled answer
                    # of the same file under another name or path is the same answer)
                    reply = Reply(answer.text, LOOPED if answer.looped else answer.finish_reason, None, answer.tokens)
                else:  # context overflow, decode failure: drop this combination, keep going
                    reply = BackendError(f"llama_cpp: {type(answer).__name__}: {answer}")
                messages, seed = chat.send(reply)
        except StopIteration as stop:
            return stop.value

    def chat(self, messages: list[dict[str, str]], *, seed: int) -> Reply:
        """One chat turn, decoded as a group of its own."""

        def one():
            return (yield messages, seed)

        reply = self.chat_group([one()])[0]
        if isinstance(reply, BackendError):
            raise reply
        return reply

    def identity(self) -> dict:
        # the content, not the name; parallel and group: an answer depends on its group (pipeline.generate.llama_batch)
        return {
            "backend": "llama_cpp",
            **model_identity(self.model_path),
            "parallel": self.parallel,
            "group": self.group,
        }

    def close(self) -> None:
        decoder, self._decoder = getattr(self, "_decoder", None), None
        if decoder is not None:
            decoder.close()
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.close()


class _CompletionRecorder:
    """Stands in for a Llama when its chat handler runs: keeps the prompt tokens and stop sequences the
    handler would complete, completes nothing (answers an empty completion)."""

    def __init__(self, llm):
        self._llm = llm
        self.prompt: list[int] = []
        self.stop: tuple[str, ...] = ()

    def __getattr__(self, name):
        return getattr(self._llm, name)

    def create_completion(self, *, prompt, stop=None, **_):
        self.prompt = [int(t) for t in prompt]
        self.stop = tuple([stop] if isinstance(stop, str) else stop or ())
        return {
            "id": "recorded",
            "object": "text_completion",
            "created": 0,
            "model": "",
            "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(self.prompt), "completion_tokens": 0, "total_tokens": len(self.prompt)},
        }


# --------------------------------------------------------------------------------------- openai

_RETRY_STATUS = {408, 409, 425, 429}


class OpenAIBackend:
    """OpenAI-compatible chat servers. Thread-safe: `concurrency` chats may call `chat` at once."""

    def __init__(
        self,
        params: OpenAIParams,
        *,
        temperature: float,
        max_tokens: int,
        stop: tuple[str, ...] = (),
        sleep: Callable[[float], None] = time.sleep,
    ):
        import httpx

        self.params = params
        self.urls = [u.rstrip("/") for u in params.base_urls]
        self.model_name = params.model
        self.concurrency = params.concurrency
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.stop = list(stop)
        self._sleep = sleep
        key = os.environ.get(params.api_key_env) if params.api_key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(params.timeout_s),
            limits=httpx.Limits(
                max_connections=params.concurrency + len(self.urls), max_keepalive_connections=params.concurrency
            ),
        )
        self._lock = threading.Lock()
        self._in_flight = [0] * len(self.urls)
        self._next = 0
        self.requests = [0] * len(self.urls)  # per server, retries included
        self.failures = [0] * len(self.urls)
        self.model_name = self._served_model()

    def _served_model(self) -> str:
        """The `model` column: what the servers say they serve (GET /models), when that is one model.

        llama-cpp-python's server answers any `model` name and echoes it back, so the request's name
        says nothing; its /models lists the GGUF. Only the column uses this, never the journal key,
        so a server that is briefly down at start cannot invalidate the journal."""
        import httpx

        served: set[str] = set()
        for url in self.urls:
            try:
                data = self._client.get(f"{url}/models", timeout=min(self.params.timeout_s, 10.0)).json()
                ids = {m["id"] for m in data["data"] if isinstance(m.get("id"), str)}
            except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if self.params.model in ids:
                return self.params.model
            served |= ids
        if len(served) == 1:
            (model,) = served
            return Path(model).name if model.endswith(".gguf") else model
        return self.params.model

    def _pick(self, avoid: int | None) -> int:
        """The server with the fewest requests in flight (round robin among ties), not `avoid` if others exist."""
        with self._lock:
            n = len(self.urls)
            order = [(self._next + j) % n for j in range(n)]
            if avoid is not None and n > 1:
                order.remove(avoid)
            best = min(order, key=lambda i: self._in_flight[i])
            self._next = (best + 1) % n
            self._in_flight[best] += 1
            self.requests[best] += 1
            return best

    def _done(self, i: int, ok: bool) -> None:
        with self._lock:
            self._in_flight[i] -= 1
            if not ok:
                self.failures[i] += 1

    def chat(self, messages: list[dict[str, str]], *, seed: int) -> Reply:
        import httpx

        body = {
            "model": self.params.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": seed,
        }
        if self.stop:
            body["stop"] = self.stop  # the OpenAI API takes up to 4 stop sequences
        last_error = "no attempt"
        server = None
        for attempt in range(self.params.retries + 1):
            if attempt:
                self._sleep(self.params.backoff_s * 2 ** (attempt - 1))
            server = self._pick(avoid=server)
            url = f"{self.urls[server]}/chat/completions"
            ok = False
            try:
                response = self._client.post(url, json=body)
                if response.status_code >= 400:
                    last_error = f"{url}: HTTP {response.status_code}: {response.text[:200]!r}"
                    if response.status_code < 500 and response.status_code not in _RETRY_STATUS:
                        raise BackendError(last_error)  # a client error does not fix itself
                    continue
                reply = _read_reply(response)
                ok = True
                if reply.model in (None, self.params.model):  # an echo of our own request says nothing
                    reply = Reply(reply.text, reply.finish_reason, self.model_name)
                return reply
            except httpx.TimeoutException as e:
                last_error = f"{url}: timed out after {self.params.timeout_s}s ({type(e).__name__})"
            except httpx.HTTPError as e:
                last_error = f"{url}: {type(e).__name__}: {e}"
            except _Garbage as e:
                last_error = f"{url}: {e}"
            finally:
                self._done(server, ok)
            log.debug("request %d/%d failed: %s", attempt + 1, self.params.retries + 1, last_error)
        raise BackendError(f"{self.params.retries + 1} attempt(s) failed; last: {last_error}")

    def identity(self) -> dict:
        return {"backend": "openai", "model": self.params.model}

    def close(self) -> None:
        self._client.close()


class _Garbage(Exception):
    pass


def _read_reply(response) -> Reply:
    try:
        data = response.json()
    except ValueError:
        raise _Garbage(f"answer is not JSON: {response.text[:120]!r}") from None
    try:
        choice = data["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _Garbage(f"answer has no choices[0].message.content: {str(data)[:120]!r}") from None
    if content is not None and not isinstance(content, str):
        raise _Garbage(f"choices[0].message.content is not text: {content!r:.120}")
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, str) and model.endswith(".gguf"):
        model = Path(model).name  # llama-cpp-python's server reports the model path
    return Reply(content or "", choice.get("finish_reason") if isinstance(choice, dict) else None, model or None)


# -------------------------------------------------------------------------------------- factory


def make_backend(params: GenerateParams) -> ChatBackend:
    stop = STOP if params.single_sentence else ()
    if params.backend == "llama_cpp":
        return LlamaCppBackend(
            resolve_model(params.model),
            n_ctx=params.n_ctx,
            n_threads=params.n_threads,
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            stop=stop,
            prompt=params.prompt,
            repack_weights=params.repack_weights,
            parallel=params.parallel,
        )
    return OpenAIBackend(
        params.openai, temperature=params.temperature, max_tokens=params.max_tokens, stop=stop
    )  # "openai"
