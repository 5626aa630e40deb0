"""Stand-ins for tests and benchmarks: a scripted chat backend and a local OpenAI-style HTTP server.

Nothing here is used by the stage itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Callable

from local_http import LocalHTTPServer
from pipeline.generate.backends import BackendError, Reply


class ScriptedBackend:
    """A backend whose answers come from `answer(messages, seed) -> str | Reply` (raise BackendError to fail).

    `stop`: stop sequences applied as llama.cpp and OpenAI servers do: the answer ends before the
    first one, which is left out, with finish_reason "stop"."""

    def __init__(
        self,
        answer: Callable,
        *,
        model_name: str = "scripted",
        concurrency: int = 1,
        delay_s: float = 0.0,
        stop: tuple[str, ...] = (),
    ):
        self.answer = answer
        self.model_name = model_name
        self.concurrency = concurrency
        self.delay_s = delay_s
        self.stop = tuple(stop)
        self.calls: list[list[dict]] = []
        self._lock = threading.Lock()

    def chat(self, messages, *, seed):
        with self._lock:
            self.calls.append([dict(m) for m in messages])
        if self.delay_s:
            time.sleep(self.delay_s)
        out = self.answer(messages, seed)
        reply = out if isinstance(out, Reply) else Reply(out, "stop", self.model_name)
        cuts = [i for i in (reply.text.find(s) for s in self.stop) if i >= 0]
        if cuts:
            reply = Reply(reply.text[: min(cuts)], "stop", reply.model, reply.tokens)
        return reply

    def identity(self) -> dict:
        return {"backend": "scripted", "model": self.model_name}

    def close(self) -> None:
        pass


class GroupingBackend(ScriptedBackend):
    """A batching backend like llama_cpp's (`chat_group`): up to `parallel` chats of a group in flight,
    answered in lock-step rounds, a finished chat's place taken by the group's next one (so a group may
    hold more chats than `parallel`); `batch` holds the size of the round being answered, for `answer`
    to put in its text, as a batched decode's floating point depends on what else is in the batch.
    `interrupt_at` (call, round) raises KeyboardInterrupt in that chat_group call's round, after its
    earlier rounds were answered: a kill mid-group."""

    def __init__(
        self,
        answer: Callable,
        *,
        parallel: int,
        group: int | None = None,
        interrupt_at: tuple[int, int] | None = None,
        **kwargs,
    ):
        super().__init__(answer, **kwargs)
        self.parallel = parallel
        self.group = group or parallel  # chats per chat_group call (the llama_cpp backend's: 4 x parallel)
        self.interrupt_at = interrupt_at
        self.groups: list[int] = []  # chats per chat_group call
        self.rounds: list[int] = []  # requests per round
        self.batch = 0

    def identity(self) -> dict:
        return {"backend": "grouping", "model": self.model_name, "parallel": self.parallel, "group": self.group}

    def chat_group(self, chats: list) -> list:
        call = len(self.groups)
        self.groups.append(len(chats))
        results: list = [None] * len(chats)
        waiting = deque(range(len(chats)))
        requests: dict = {}  # in flight, in the order they took their places

        def start() -> None:
            while len(requests) < self.parallel and waiting:
                i = waiting.popleft()
                try:
                    requests[i] = next(chats[i])
                except StopIteration as stop:
                    results[i] = stop.value

        start()
        round_ = 0
        while requests:
            if self.interrupt_at == (call, round_):
                raise KeyboardInterrupt("killed mid-group")
            self.rounds.append(len(requests))
            answers = {}
            self.batch = len(requests)  # what `answer` may put in the text
            for i, (messages, seed) in requests.items():
                try:
                    reply = self.chat(messages, seed=seed)
                except BackendError as e:
                    reply = e
                answers[i] = reply
            requests = {}
            for i, reply in answers.items():
                try:
                    requests[i] = chats[i].send(reply)
                except StopIteration as stop:
                    results[i] = stop.value
            start()
            round_ += 1
        return results


def echo_caption(messages, seed) -> str:
    """A well-behaved model: a short caption naming the labels of the first user turn, varied by seed."""
    first = messages[0]["content"]
    return f'Sure! Here\'s a caption: "A photo ({seed % 1000}) of {first.split("contains ", 1)[-1].rstrip(".")}."'


@dataclass
class ChatServerLog:
    requests: list[dict] = field(default_factory=list)  # {"path", "headers", "body"}
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeChatServer(LocalHTTPServer):
    """An OpenAI-style server on 127.0.0.1 whose replies come from `respond(body, n) -> (status, bytes, delay_s)`.

    `n` counts requests to this server from 1. Use as a context manager; `.base_url` ends in /v1.
    """

    def __init__(self, respond: Callable[[dict, int], tuple[int, bytes, float]]):
        self.respond = respond
        self.log = ChatServerLog()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unreadable": raw.decode(errors="replace")}
                with server.log.lock:
                    server.log.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    n = len(server.log.requests)
                status, payload, delay = server.respond(body, n)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away

            def log_message(self, *args):
                pass

        super().__init__(Handler)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict]:
        with self.log.lock:
            return list(self.log.requests)


def completion(content: str | None, model: str = "fake-model", finish_reason: str = "stop") -> bytes:
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
            ],
        }
    ).encode()


__all__ = [
    "BackendError",
    "ChatServerLog",
    "FakeChatServer",
    "GroupingBackend",
    "ScriptedBackend",
    "completion",
    "echo_caption",
]
