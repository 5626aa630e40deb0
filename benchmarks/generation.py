"""Throughput of the generate stage's LLM path.

(a) the stage (`generate_texts`, llama_cpp backend) against a bare llama-cpp loop
    (`create_chat_completion` of a plain llama-cpp Llama over the same model, prompts, seeds and max_tokens, so both
    get the same first answers, except that the stage ends a looping one early
    (pipeline.generate.loops); the stage may then ask again for a shorter or usable one);
(b) the stage's `openai` backend with two local llama-cpp-python servers against one;
(c) generate.parallel: throughput at 1, 2, 4, 8 and 16 sequences decoded at once, in one run: the
    one-at-a-time bare loop of (a), a batched bare loop of each width (one `llama_decode` per step over
    the width's sequences, a finished one replaced at once by the next prompt, the shared prompt prefix
    decoded once and copied, unified KV cache, the same sampler chain per sequence; written here, apart
    from the stage's decoder), and the stage itself at that width: its kept captions/s, and its model
    answers/s and generated tokens/s (its resamples and shortening turns included), the same units as
    the bare loops'; model loads not counted.

    python benchmarks/generation.py --n 40            # (a) with generate.single_sentence off and on, (b)
    python benchmarks/generation.py --n 40 --skip-servers --single-sentence on
    python benchmarks/generation.py --batched --n 32 --threads 2   # only (c), the default params otherwise

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
from pipeline.data.labels import VOC_LABELS
from pipeline.generate import generate_texts, make_backend, plan_combinations, resolve_model
from pipeline.generate.combinations import derive_seed
from pipeline.generate.refine import fill
from pipeline.generate.sentence import STOP


class CountingBackend:
    """Passes chats through to the stage's own backend, counting them (first turns, shorten turns, retries)."""

    def __init__(self, inner):
        self.inner, self.calls, self.tokens = inner, 0, 0
        self.first_turns, self.first_turn_seconds = 0, 0.0  # chats of one user message: what the bare loop does
        self.model_name, self.concurrency = inner.model_name, inner.concurrency
        if hasattr(inner, "chat_group"):  # a batching backend: count its calls as they pass
            self.parallel, self.group = inner.parallel, inner.group
            self.chat_group = self._chat_group

    def _chat_group(self, chats):
        return self.inner.chat_group([self._counted(chat) for chat in chats])

    def _counted(self, chat):
        try:
            messages, seed = next(chat)
            while True:
                self.calls += 1
                reply = yield messages, seed
                self.tokens += getattr(reply, "tokens", None) or 0
                messages, seed = chat.send(reply)
        except StopIteration as stop:
            return stop.value

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


def generate_into(out: Path, p: GenerateParams, backend):
    """The generate stage's work (generate_texts) over VOC's labels, its tables and journal written under `out`."""
    return generate_texts(
        p,
        VOC_LABELS,
        texts_path=out / "texts.parquet",
        report_path=out / "report.parquet",
        journal_dir=out / "journal",
        backend=backend,
        progress=False,
    )


def stage_run(p: GenerateParams) -> tuple[float, float, int, CountingBackend, dict]:
    """(wall seconds, CPU seconds, texts kept, the counted backend, drops by reason) of one generate_texts call."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        started, cpu = time.perf_counter(), time.process_time()
        backend = CountingBackend(make_backend(p))  # model load counted, as in the bare loop
        try:
            summary = generate_into(out, p, backend)
        finally:
            backend.close()
        return time.perf_counter() - started, time.process_time() - cpu, summary.llm_texts, backend, summary.dropped


def bare_run(p: GenerateParams) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, answers, model tokens) of a plain llama-cpp loop over the stage's prompts."""
    from pipeline.generate.llama_load import load_llama

    plan = plan_combinations(VOC_LABELS, seed=p.seed, n=p.n_combinations, max_labels=p.max_labels, llm_fraction=1.0)
    started, cpu = time.perf_counter(), time.process_time()
    llm = load_llama(
        resolve_model(p.model),
        repack_weights=p.repack_weights,
        n_ctx=p.n_ctx,
        n_threads=p.n_threads,
        n_threads_batch=p.n_threads,
        verbose=False,
    )
    answers = tokens = 0
    for c in plan:
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": fill(p.prompt, c.words)}],
            temperature=p.temperature,
            max_tokens=p.max_tokens,
            seed=derive_seed(c.seed, 0, 1),  # the seed of the stage's first turn
            stop=list(STOP) if p.single_sentence else None,
        )
        answers += 1
        tokens += out["usage"]["completion_tokens"]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    llm.close()
    return seconds, cpu, answers, tokens


def bare_batched_run(p: GenerateParams, width: int) -> tuple[float, int, int]:
    """(seconds, answers, tokens) of a plain batched llama.cpp loop over the stage's first prompts: `width` sequences
    per llama_decode, a finished one's place taken by the next prompt at once (continuous batching, as llama-server
    does), the shared prefix decoded once into sequence 0 and copied, one sampler chain per sequence
    (create_chat_completion's), ending at an end token, a stop sequence or max_tokens."""
    from collections import deque

    import llama_cpp
    from llama_cpp import _internals

    from pipeline.generate.llama_load import load_llama

    plan = plan_combinations(VOC_LABELS, seed=p.seed, n=p.n_combinations, max_labels=p.max_labels, llm_fraction=1.0)
    llm = load_llama(
        resolve_model(p.model),
        repack_weights=p.repack_weights,
        n_ctx=p.n_ctx,
        n_threads=p.n_threads,
        n_threads_batch=p.n_threads,
        verbose=False,
    )
    template = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        llm.metadata["tokenizer.chat_template"],
        llm._model.token_get_text(llm.token_eos()),
        llm._model.token_get_text(llm.token_bos()),
    )
    prompts = [
        llm.tokenize(
            template(messages=[{"role": "user", "content": fill(p.prompt, c.words)}]).prompt.encode(),
            add_bos=False,
            special=True,
        )
        for c in plan
    ]
    prefix = 0
    while all(len(t) > prefix + 1 and t[prefix] == prompts[0][prefix] for t in prompts):
        prefix += 1
    params = llama_cpp.llama_context_params.from_buffer_copy(llm.context_params)
    params.n_ctx, params.n_seq_max, params.kv_unified = p.n_ctx * width, width + 1, True
    ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
    memory = llama_cpp.llama_get_memory(ctx.ctx)
    batch = _internals.LlamaBatch(n_tokens=max(512, width * p.n_ctx), embd=0, n_seq_max=1, verbose=False)
    stops = [s.encode() for s in STOP] if p.single_sentence else []

    def add(token, pos, seq, logits):
        b = batch.batch
        i = b.n_tokens
        b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, logits
        b.seq_id[i][0] = seq
        b.n_tokens = i + 1
        return i

    started = time.perf_counter()
    batch.reset()
    for i, token in enumerate(prompts[0][:prefix]):
        add(token, i, 0, False)
    ctx.decode(batch)
    batch.reset()
    waiting, slots, answers, tokens = deque(range(len(plan))), [None] * width, 0, 0
    while True:
        for slot in range(width):  # a free place takes the next prompt
            if slots[slot] is None and waiting:
                i = waiting.popleft()
                llama_cpp.llama_memory_seq_rm(memory, slot + 1, -1, -1)
                llama_cpp.llama_memory_seq_cp(memory, 0, slot + 1, 0, prefix)
                llm.set_seed(derive_seed(plan[i].seed, 0, 1))
                rest = prompts[i][prefix:]
                for j, token in enumerate(rest):
                    at = add(token, prefix + j, slot + 1, j == len(rest) - 1)
                slots[slot] = (i, llm._init_sampler(temp=p.temperature, repeat_penalty=1.0), [], [at])
        if not any(slots):
            break
        ctx.decode(batch)
        batch.reset()
        for slot, seq in enumerate(slots):
            if seq is None:
                continue
            i, sampler, out, at = seq
            token = sampler.sample(ctx, at[0])
            done = llama_cpp.llama_vocab_is_eog(llm._model.vocab, token)
            if not done:
                out.append(token)
                done = any(s in llm.detokenize(out) for s in stops) or len(out) >= p.max_tokens
            if done:
                sampler.close()
                answers, tokens, slots[slot] = answers + 1, tokens + len(out), None
            else:
                at[0] = add(token, len(prompts[i]) + len(out) - 1, slot + 1, True)
    seconds = time.perf_counter() - started
    batch.close()
    ctx.close()
    llm.close()
    return seconds, answers, tokens


def stage_batched(p: GenerateParams) -> tuple[float, int, int, int]:
    """(seconds, kept captions, model answers, generated tokens) of generate_texts at p.parallel, model load not counted."""
    backend = CountingBackend(make_backend(p))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            started = time.perf_counter()
            summary = generate_into(out, p, backend)
            seconds = time.perf_counter() - started
    finally:
        backend.close()
    return seconds, summary.llm_texts, backend.calls, backend.tokens


def batched(args) -> None:
    """(c): throughput by width, the three loops side by side in one run."""
    import platform

    from pipeline.generate.tokens import clip_token_count

    base = GenerateParams(n_combinations=args.n, seed=args.seed, n_threads=args.threads, llm_fraction=1.0)
    base.check("generate")
    clip_token_count("a cat.")  # the stage's CLIP tokenizer loads once per process: not in the first row's time
    started = time.perf_counter()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {_cpu_name()}, {_cores()} cores, "
        f"{platform.machine()}; llama-cpp-python {_llama_version()}; model {resolve_model(base.model).name}, "
        f"{args.n} combinations, temperature {base.temperature}, max_tokens {base.max_tokens}, single_sentence "
        f"{str(base.single_sentence).lower()}, {args.threads} thread(s), best of {args.repeats}; load average "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    print(
        "answers/s: model answers per second (the bare loops make one per caption; the stage also resamples and "
        "shortens); tok/s: generated tokens per second; kept/s: the stage's kept captions per second. Model loads "
        "are not counted. The one-at-a-time loop is run again beside each width (the load of a shared machine "
        "drifts within minutes); each row's ratios are to the loops of that row."
    )
    print(
        "| sequences at once | loop answers/s | loop tok/s | batched bare answers/s | batched bare tok/s "
        "| stage kept/s | stage answers/s | stage tok/s | stage answers per kept | stage answers/s ÷ loop "
        "| stage answers/s ÷ batched bare | stage tok/s ÷ batched bare | stage kept/s ÷ loop "
        "| stage kept/s ÷ batched bare | load average |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for width in args.widths:
        p = dataclasses.replace(base, parallel=width)
        loop, bare, stage = [], [], []  # best (fastest) run of each, alternating
        for _ in range(args.repeats):
            loop.append(one_at_a_time(base))
            bare.append(bare_batched_run(base, width))
            stage.append(stage_batched(p))
        seconds, answers, tokens = min(loop)
        loop_a, loop_t = answers / seconds, tokens / seconds
        seconds, answers, tokens = min(bare)
        bare_a, bare_t = answers / seconds, tokens / seconds
        seconds, kept, calls, tokens = min(stage)
        kept_s, stage_a, stage_t = kept / seconds, calls / seconds, tokens / seconds
        print(
            f"| {width} | {loop_a:.2f} | {loop_t:.0f} | {bare_a:.2f} | {bare_t:.0f} | {kept_s:.2f} | {stage_a:.2f} "
            f"| {stage_t:.0f} | {calls / max(kept, 1):.2f} | {stage_a / loop_a:.2f} | {stage_a / bare_a:.2f} "
            f"| {stage_t / bare_t:.2f} | {kept_s / loop_a:.2f} | {kept_s / bare_a:.2f} | {os.getloadavg()[0]:.1f} |",
            flush=True,
        )
    print(f"took {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f}")


def _llama_version() -> str:
    import llama_cpp

    return llama_cpp.__version__


def one_at_a_time(p: GenerateParams) -> tuple[float, int, int]:
    """bare_run without the model load: (seconds, answers, tokens)."""
    from pipeline.generate.llama_load import load_llama

    plan = plan_combinations(VOC_LABELS, seed=p.seed, n=p.n_combinations, max_labels=p.max_labels, llm_fraction=1.0)
    llm = load_llama(
        resolve_model(p.model),
        repack_weights=p.repack_weights,
        n_ctx=p.n_ctx,
        n_threads=p.n_threads,
        n_threads_batch=p.n_threads,
        verbose=False,
    )
    started, tokens = time.perf_counter(), 0
    for c in plan:
        out = llm.create_chat_completion(
            messages=[{"role": "user", "content": fill(p.prompt, c.words)}],
            temperature=p.temperature,
            max_tokens=p.max_tokens,
            seed=derive_seed(c.seed, 0, 1),
            stop=list(STOP) if p.single_sentence else None,
        )
        tokens += out["usage"]["completion_tokens"]
    seconds = time.perf_counter() - started
    llm.close()
    return seconds, len(plan), tokens


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
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
            str(threads),
            "--n_threads_batch",
            str(threads),
            "--n_ctx",
            "1024",
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
    ap.add_argument(
        "--single-sentence",
        choices=("off", "on", "both"),
        default="both",
        help="generate.single_sentence for (a): off (the paper), on, or both in turn (default); (b) uses the last",
    )
    ap.add_argument("--batched", action="store_true", help="only (c): generate.parallel, captions/s by width")
    ap.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="(c): sequences at once")
    args = ap.parse_args()
    if args.batched:
        batched(args)
        return

    settings = {"off": (False,), "on": (True,), "both": (False, True)}[args.single_sentence]
    base = GenerateParams(n_combinations=args.n, seed=args.seed, n_threads=args.threads, llm_fraction=1.0)
    base.check("generate")
    print(
        f"model {resolve_model(base.model).name}, {args.n} combinations, max_tokens {base.max_tokens}, "
        f"{args.threads} thread(s), best of {args.repeats}; load average {os.getloadavg()[0]:.1f}"
    )

    # (a) stage vs bare loop, each setting's two sides back to back
    for single_sentence in settings:
        base = dataclasses.replace(base, single_sentence=single_sentence)
        print(f"generate.single_sentence: {str(single_sentence).lower()}")
        bare, stage, bare_cpu, stage_cpu, stage_first = [], [], [], [], []
        for _ in range(args.repeats):
            seconds, cpu, answers, tokens = bare_run(base)
            bare.append(answers / seconds)
            bare_cpu.append(answers / cpu)
            print(
                f"  bare llama-cpp loop: {answers} answers in {seconds:.1f}s = {answers / seconds:.2f}/s "
                f"({tokens / seconds:.0f} generated tokens/s; {cpu:.1f} CPU-s)"
            )
            seconds, cpu, texts, counted, dropped = stage_run(base)
            stage.append(texts / seconds)
            stage_cpu.append(texts / cpu)
            stage_first.append(counted.first_turns / counted.first_turn_seconds)
            print(
                f"  stage (llama_cpp):   {texts} texts from {counted.calls} model calls in {seconds:.1f}s = "
                f"{texts / seconds:.2f}/s ({counted.first_turns} first turns in {counted.first_turn_seconds:.1f}s; "
                f"{cpu:.1f} CPU-s)"
            )
            print(
                f"    kept {texts} of {args.n}, dropped {sum(dropped.values())} {dict(sorted(dropped.items()))}; "
                f"{counted.calls / max(texts, 1):.2f} model calls per kept text, {counted.tokens} generated tokens"
            )
        print(
            f"(a) stage / bare texts per second: {max(stage) / max(bare):.2f} wall, "
            f"{max(stage_cpu) / max(bare_cpu):.2f} per CPU-second  (goal >= 0.9)"
        )
        print(
            f"    stage / bare first-turn chats per second: {max(stage_first) / max(bare):.2f} (the same work as the "
            "bare loop; the texts/s gap beyond it is the paper's shorten turns and retries, which the bare loop does "
            "not make)"
        )
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
                p = dataclasses.replace(
                    base,
                    backend="openai",
                    openai=OpenAIParams(base_urls=tuple(urls[:count]), concurrency=count, timeout_s=300, retries=1),
                )
                seconds, _, texts, _, _ = stage_run(p)
                results.append(texts / seconds)
                print(
                    f"  openai backend, {count} server(s) x {args.server_threads} thread(s): "
                    f"{texts} texts in {seconds:.1f}s = {texts / seconds:.2f}/s"
                )
        print(
            f"(b) two servers / one server texts per second: {max(two) / max(one):.2f}  "
            f"(goal 1.6 with a core per server thread; this machine has {_cores()} cores)"
        )
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
