"""Throughput of the generate stage's LLM path.

(a) the stage (`generate_texts`, llama_cpp backend) against a bare llama-cpp loop
    (`create_chat_completion` of a plain llama-cpp Llama over the same model, prompts, seeds and max_tokens, so both
    get the same first answers, except that the stage ends a looping one early
    (pipeline.generate.loops); the stage may then ask again for a shorter or usable one);
(b) the stage's `openai` backend with two local llama-cpp-python servers against one.

    python benchmarks/generation.py --n 40            # both, (a) with generate.single_sentence off and on
    python benchmarks/generation.py --n 40 --skip-servers --single-sentence on

With generate.single_sentence on, the bare loop sends the same stop sequences (so the first answers
are still the same). (a) also prints what the stage keeps and drops, and its model calls per kept
text, for each setting.

Texts/second counts captions kept in texts.parquet for the stage and answers for the bare loop
(which parses nothing, shortens nothing and drops nothing), model load included on both sides.
Each measurement is repeated `--repeats` times, alternating, and the best is kept: other work on
the machine only ever slows a run down. (a) is also given per CPU-second of this process, which
other processes on a shared machine disturb far less than wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.config import GenerateParams, OpenAIParams
from pipeline.generate import generate_texts, make_backend, plan_combinations, resolve_model
from pipeline.generate.combinations import derive_seed
from pipeline.generate.refine import fill
from pipeline.generate.sentence import STOP
from pipeline.labels import VOC_LABELS


class CountingBackend:
    """Passes chats through to the stage's own backend, counting them (first turns, shorten turns, retries)."""

    def __init__(self, inner):
        self.inner, self.calls, self.tokens = inner, 0, 0
        self.first_turns, self.first_turn_seconds = 0, 0.0   # chats of one user message: what the bare loop does
        self.model_name, self.concurrency = inner.model_name, inner.concurrency

    def chat(self, messages, *, seed):
        self.calls += 1
        started = time.perf_counter()
        reply = self.inner.chat(messages, seed=seed)
        if len(messages) == 1:
            self.first_turns += 1
            self.first_turn_seconds += time.perf_counter() - started
        self.tokens += reply.tokens or 0
        return reply

    def identity(self):
        return self.inner.identity()

    def close(self):
        self.inner.close()


def stage_run(p: GenerateParams) -> tuple[float, float, int, CountingBackend, dict]:
    """(wall seconds, CPU seconds, texts kept, the counted backend, drops by reason) of one generate_texts call."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        started, cpu = time.perf_counter(), time.process_time()
        backend = CountingBackend(make_backend(p))   # model load counted, as in the bare loop
        try:
            summary = generate_texts(p, VOC_LABELS, texts_path=out / "texts.parquet", report_path=out / "report.parquet",
                                     journal_dir=out / "journal", backend=backend, progress=False)
        finally:
            backend.close()
        return time.perf_counter() - started, time.process_time() - cpu, summary.llm_texts, backend, summary.dropped


def bare_run(p: GenerateParams) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, answers, model tokens) of a plain llama-cpp loop over the stage's prompts."""
    from pipeline.generate.llama_load import load_llama

    plan = plan_combinations(VOC_LABELS, seed=p.seed, n=p.n_combinations, max_labels=p.max_labels, llm_fraction=1.0)
    started, cpu = time.perf_counter(), time.process_time()
    llm = load_llama(resolve_model(p.model), repack_weights=p.repack_weights, n_ctx=p.n_ctx, n_threads=p.n_threads,
                     n_threads_batch=p.n_threads, verbose=False)
    answers = tokens = 0
    for c in plan:
        out = llm.create_chat_completion(messages=[{"role": "user", "content": fill(p.prompt, c.words)}],
                                         temperature=p.temperature, max_tokens=p.max_tokens,
                                         seed=derive_seed(c.seed, 0, 1),   # the seed of the stage's first turn
                                         stop=list(STOP) if p.single_sentence else None)
        answers += 1
        tokens += out["usage"]["completion_tokens"]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    llm.close()
    return seconds, cpu, answers, tokens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_model("smollm2")), "--host", "127.0.0.1",
         "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", "1024",
         "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start within 120s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="label combinations per run (default 40)")
    ap.add_argument("--threads", type=int, default=2, help="llama_cpp threads for (a) (default 2)")
    ap.add_argument("--server-threads", type=int, default=1, help="threads per server for (b) (default 1)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per measurement, best kept (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-servers", action="store_true", help="only (a)")
    ap.add_argument("--single-sentence", choices=("off", "on", "both"), default="both",
                    help="generate.single_sentence for (a): off (the paper), on, or both in turn (default); (b) uses the last")
    args = ap.parse_args()

    settings = {"off": (False,), "on": (True,), "both": (False, True)}[args.single_sentence]
    base = GenerateParams(n_combinations=args.n, seed=args.seed, n_threads=args.threads, llm_fraction=1.0)
    base.check("generate")
    print(f"model {resolve_model(base.model).name}, {args.n} combinations, max_tokens {base.max_tokens}, "
          f"{args.threads} thread(s), best of {args.repeats}; load average {os.getloadavg()[0]:.1f}")

    # (a) stage vs bare loop, each setting's two sides back to back
    for single_sentence in settings:
        base = dataclasses.replace(base, single_sentence=single_sentence)
        print(f"generate.single_sentence: {str(single_sentence).lower()}")
        bare, stage, bare_cpu, stage_cpu, stage_first = [], [], [], [], []
        for _ in range(args.repeats):
            seconds, cpu, answers, tokens = bare_run(base)
            bare.append(answers / seconds)
            bare_cpu.append(answers / cpu)
            print(f"  bare llama-cpp loop: {answers} answers in {seconds:.1f}s = {answers / seconds:.2f}/s "
                  f"({tokens / seconds:.0f} generated tokens/s; {cpu:.1f} CPU-s)")
            seconds, cpu, texts, counted, dropped = stage_run(base)
            stage.append(texts / seconds)
            stage_cpu.append(texts / cpu)
            stage_first.append(counted.first_turns / counted.first_turn_seconds)
            print(f"  stage (llama_cpp):   {texts} texts from {counted.calls} model calls in {seconds:.1f}s = "
                  f"{texts / seconds:.2f}/s ({counted.first_turns} first turns in {counted.first_turn_seconds:.1f}s; "
                  f"{cpu:.1f} CPU-s)")
            print(f"    kept {texts} of {args.n}, dropped {sum(dropped.values())} {dict(sorted(dropped.items()))}; "
                  f"{counted.calls / max(texts, 1):.2f} model calls per kept text, {counted.tokens} generated tokens")
        print(f"(a) stage / bare texts per second: {max(stage) / max(bare):.2f} wall, "
              f"{max(stage_cpu) / max(bare_cpu):.2f} per CPU-second  (goal >= 0.9)")
        print(f"    stage / bare first-turn chats per second: {max(stage_first) / max(bare):.2f} (the same work as the "
              "bare loop; the texts/s gap beyond it is the paper's shorten turns and retries, which the bare loop does "
              "not make)")
    print(f"load average {os.getloadavg()[0]:.1f}")

    if args.skip_servers:
        return
    # (b) two servers vs one, through the openai backend
    servers = [start_server(args.server_threads) for _ in range(2)]
    try:
        urls = [url for _, url in servers]
        one, two = [], []
        for _ in range(args.repeats):
            for count, results in ((1, one), (2, two)):
                p = dataclasses.replace(base, backend="openai", openai=OpenAIParams(
                    base_urls=tuple(urls[:count]), concurrency=count, timeout_s=300, retries=1))
                seconds, _, texts, _, _ = stage_run(p)
                results.append(texts / seconds)
                print(f"  openai backend, {count} server(s) x {args.server_threads} thread(s): "
                      f"{texts} texts in {seconds:.1f}s = {texts / seconds:.2f}/s")
        print(f"(b) two servers / one server texts per second: {max(two) / max(one):.2f}  "
              f"(goal 1.6 with a core per server thread; this machine has {_cores()} cores)")
    finally:
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
