"""The `openai` backend against local servers: a fake one that times out or talks garbage, two fakes
for scale-out and the API key, and a real llama-cpp-python server with the embedded model."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from generate_fakes import FakeChatServer, completion
from pipeline.config import GenerateParams, OpenAIParams
from pipeline.data.labels import VOC_LABELS
from pipeline.generate import CLIP_CONTEXT, clip_token_count, generate_texts, resolve_model


def params(urls, n=6, **openai) -> GenerateParams:
    o = dict(base_urls=tuple(urls), concurrency=1, timeout_s=0.5, retries=2, backoff_s=0.01)
    o.update(openai)
    p = GenerateParams(n_combinations=n, backend="openai", journal_every_s=0.01, openai=OpenAIParams(**o))
    p.check("generate")
    return p


def run(tmp_path: Path, p: GenerateParams, name: str = "out"):
    out = tmp_path / name
    summary = generate_texts(
        p,
        VOC_LABELS,
        texts_path=out / "texts.parquet",
        report_path=out / "report.parquet",
        journal_dir=out / "journal",
        progress=False,
    )
    return pl.read_parquet(out / "texts.parquet"), pl.read_parquet(out / "report.parquet"), summary


def good(body: dict, n: int) -> tuple[int, bytes, float]:
    words = body["messages"][0]["content"].split("contains ", 1)[-1].rstrip(".")
    return 200, completion(f'Here is a caption: "A photo of {words}, seed {body["seed"]}."'), 0.0


def test_timeouts_and_garbage_are_retried_then_dropped_as_backend_error(tmp_path):
    failures = [
        (200, b"", 2.0),  # no answer within timeout_s
        (200, b"<html>Bad gateway</html>", 0.0),  # not JSON
        (200, json.dumps({"object": "error"}).encode(), 0.0),  # JSON without choices
        (503, b'{"error": "overloaded"}', 0.0),
    ]

    def broken(body, n):
        return failures[(n - 1) % len(failures)]

    with FakeChatServer(broken) as server:
        p = dataclasses.replace(params([server.base_url], n=8, timeout_s=0.3, retries=3), llm_fraction=0.25)
        texts, report, summary = run(tmp_path, p)
        requests = server.requests
    llm_combinations = 2
    assert len(requests) == llm_combinations * (3 + 1)  # every request retried, then given up
    assert report["reason"].to_list() == ["backend_error"] * llm_combinations
    assert all("4 attempt(s) failed" in d for d in report["detail"])
    assert report["attempts"].to_list() == [1] * llm_combinations  # one chat turn, its retries inside
    # the stage finished: the template share is there
    assert texts.height > 0 and set(texts["source"]) == {"template"}
    assert summary.dropped == {"backend_error": 2}


def test_a_server_that_recovers_is_retried_until_it_answers(tmp_path):
    def flaky(body, n):
        return (500, b"oops", 0.0) if n <= 2 else good(body, n)

    with FakeChatServer(flaky) as server:
        texts, report, _ = run(tmp_path, params([server.base_url], n=3))
        requests = server.requests
    assert report.height == 0 and texts.height == 3
    assert len(requests) == 3 + 2
    assert all(r["path"] == "/v1/chat/completions" for r in requests)
    assert texts["model"].to_list() == ["fake-model"] * 3
    assert all(t.startswith("A photo of") for t in texts["text"])


def test_requests_spread_over_servers_and_the_key_stays_secret(tmp_path, monkeypatch, caplog):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("TAI_TEST_KEY", secret)

    def slow_good(body, n):
        status, payload, _ = good(body, n)
        return status, payload, 0.05

    caplog.set_level(logging.DEBUG)
    with FakeChatServer(slow_good) as a, FakeChatServer(slow_good) as b:
        p = params([a.base_url, b.base_url], n=24, concurrency=4, api_key_env="TAI_TEST_KEY")
        texts, report, _ = run(tmp_path, p)
        seen = a.requests + b.requests
        counts = (len(a.requests), len(b.requests))
    assert texts.height == 24 and report.height == 0
    assert min(counts) >= 6, counts  # both servers did a share
    assert {r["headers"].get("Authorization") for r in seen} == {f"Bearer {secret}"}
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in caplog.text

    monkeypatch.delenv("TAI_TEST_KEY")
    with FakeChatServer(good) as c:
        run(tmp_path, params([c.base_url], n=2, api_key_env="TAI_TEST_KEY"), name="nokey")
        assert all("Authorization" not in r["headers"] for r in c.requests)


# ------------------------------------------------------------------------- real llama-cpp server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    pytest.importorskip("llama_cpp.server", reason="needs llama-cpp-python[server]")
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(resolve_model("smollm2")),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_threads",
                "1",
                "--n_threads_batch",
                "1",
                "--n_ctx",
                "1024",
                "--verbose",
                "False",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within 90s: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_captions_from_a_real_llama_cpp_server(tmp_path, llama_server):
    p = params([llama_server], n=4, timeout_s=120, retries=1)
    texts, report, summary = run(tmp_path, p)
    assert texts.height + report.height == 4  # every combination kept or reported
    assert texts.height >= 1
    assert set(report["reason"]) <= {"too_long", "empty", "refusal", "unparseable", "duplicate"}
    assert set(texts["model"]) == {resolve_model("smollm2").name}
    for row in texts.iter_rows(named=True):
        assert row["source"] == "llm" and row["text"].strip() == row["text"] and row["text"]
        assert row["n_tokens"] == clip_token_count(row["text"]) <= CLIP_CONTEXT
        assert set(row["combination"]) <= set(row["labels"])
    assert summary.generated == 4 and summary.model == resolve_model("smollm2").name
