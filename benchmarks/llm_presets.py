"""Size, memory and caption speed of the LLM presets (docs/models.md), without downloading them.

The hub is out of reach here, so each preset's speed is measured on a stand-in GGUF with the preset's
architecture (layers, widths, heads, vocabulary) and a 4-bit quantisation (Q4_0 by default, Q4_K_M
with --k-quant: the presets' files are Q4_K_M, ~5% larger) but random weights: what
it says is garbage, but a token costs what it costs in the real model. For each model the script
times the work of one generate call as the stage makes it on llama_cpp (rewind to the shared
prompt prefix, evaluate the rest of the prompt, sample `--gen` tokens at temperature 0.7 through a
logits processor), and reads the process's peak resident memory. The embedded SmolLM2 is measured
the same way on its real file, which calibrates the step from "seconds per call" to "captions per
second" against the stage's own measured rate (benchmarks/require_labels.py).

    pip install -e ".[bench]"                          # gguf, to write the stand-in files
    python benchmarks/llm_presets.py build --out /tmp/llm-presets          # Q4_0, ~12 GB of disk
    python benchmarks/llm_presets.py measure --out /tmp/llm-presets --threads 2

Captions per second = 1 / (calls per text x seconds per call); calls per text is taken from the
embedded model's measured rate (1.07 with the default params), an estimate for the others.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Arch:
    """A llama-type decoder as its config.json gives it."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tied: bool  # the output layer is the token embedding


PRESETS = [  # the docs/models.md table, 0.5B to 8B, plus the paper's family (Vicuna v1.5 7B)
    Arch("qwen2.5-0.5b-instruct", 896, 24, 14, 2, 4864, 151936, True),
    Arch("llama-3.2-1b-instruct", 2048, 16, 32, 8, 8192, 128256, True),
    Arch("llama-3.2-3b-instruct", 3072, 28, 24, 8, 8192, 128256, True),
    Arch("vicuna-7b-v1.5", 4096, 32, 32, 32, 11008, 32000, False),
    Arch("llama-3.1-8b-instruct", 4096, 32, 32, 8, 14336, 128256, False),
]


# ------------------------------------------------------------------------------------------ build


def write_random_gguf(arch: Arch, path: Path, seed: int = 0) -> None:
    """Q4_0 tensors of random nibbles with a small fixed scale (no NaN, no denormals), an SPM
    vocabulary of the right size (byte tokens + fillers), tensor by tensor so memory stays small."""
    import gguf

    rng = np.random.default_rng(seed)
    q4 = gguf.GGMLQuantizationType.Q4_0
    block, block_bytes = gguf.GGML_QUANT_SIZES[q4]
    head_dim = arch.hidden // arch.heads
    kv_dim = head_dim * arch.kv_heads

    matrices = {"token_embd.weight": (arch.vocab, arch.hidden)}
    if not arch.tied:
        matrices["output.weight"] = (arch.vocab, arch.hidden)
    for i in range(arch.layers):
        b = f"blk.{i}."
        matrices.update(
            {
                b + "attn_q.weight": (arch.hidden, arch.hidden),
                b + "attn_k.weight": (kv_dim, arch.hidden),
                b + "attn_v.weight": (kv_dim, arch.hidden),
                b + "attn_output.weight": (arch.hidden, arch.hidden),
                b + "ffn_gate.weight": (arch.ffn, arch.hidden),
                b + "ffn_up.weight": (arch.ffn, arch.hidden),
                b + "ffn_down.weight": (arch.hidden, arch.ffn),
            }
        )
    norms = ["output_norm.weight"] + [
        f"blk.{i}.{n}" for i in range(arch.layers) for n in ("attn_norm.weight", "ffn_norm.weight")
    ]

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"random {arch.name}")
    w.add_context_length(4096)
    w.add_embedding_length(arch.hidden)
    w.add_block_count(arch.layers)
    w.add_feed_forward_length(arch.ffn)
    w.add_head_count(arch.heads)
    w.add_head_count_kv(arch.kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(arch.vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    special = ["<unk>", "<s>", "</s>"]
    tokens = special + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(arch.vocab - len(tokens))]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    types = [gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (len(tokens) - 259)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for name, (rows, cols) in matrices.items():
        w.add_tensor_info(
            name,
            (rows, cols // block * block_bytes),
            np.dtype(np.uint8),
            rows * cols // block * block_bytes,
            raw_dtype=q4,
        )
    for name in norms:
        w.add_tensor_info(name, (arch.hidden,), np.dtype(np.float32), arch.hidden * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    scale = np.float16(0.02).tobytes()
    for rows, cols in matrices.values():
        data = rng.integers(0, 256, size=(rows, cols // block, block_bytes), dtype=np.uint8)
        data[:, :, 0], data[:, :, 1] = scale[0], scale[1]
        w.write_tensor_data(data.reshape(rows, -1))
    for _ in norms:
        w.write_tensor_data(np.ones(arch.hidden, dtype=np.float32))
    w.close()


def quantize(source: Path, target: Path, threads: int) -> None:
    """llama.cpp's own quantiser: Q4_0 -> Q4_K_M (its mix of Q4_K and Q6_K tensors)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.allow_requantize = True
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
        raise RuntimeError(f"quantizing {source} failed")


def build(out: Path, threads: int, only: list[str] | None, k_quant: bool) -> None:
    """Q4_0 stand-ins (seconds to write), or Q4_K_M with `k_quant` (llama.cpp's quantiser: minutes per
    billion parameters on 2 busy cores; Q4_K_M files are ~5% larger than Q4_0 and a little slower)."""
    out.mkdir(parents=True, exist_ok=True)
    for arch in PRESETS:
        if only and arch.name not in only:
            continue
        target = out / f"{arch.name}.{'Q4_K_M' if k_quant else 'Q4_0'}.gguf"
        if target.exists():
            continue
        started = time.perf_counter()
        raw = out / f"{arch.name}.Q4_0.gguf"
        write_random_gguf(arch, raw)
        if k_quant:
            quantize(raw, target, threads)
            raw.unlink()
        print(
            f"{target.name}: {target.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - started:.0f}s", flush=True
        )


# ---------------------------------------------------------------------------------------- measure


def measure_one(path: Path, threads: int, prompt: int, gen: int, repeats: int, repack_weights: bool = False) -> dict:
    """Run in a fresh process: load, then `repeats` calls shaped like the stage's, peak memory."""
    import llama_cpp

    from pipeline.generate.llama_load import load_llama

    started = time.perf_counter()
    # weight repacking off unless asked, as the generate stage loads (generate.repack_weights)
    llm = load_llama(
        path,
        repack_weights=repack_weights,
        n_ctx=1024,
        n_threads=threads,
        n_threads_batch=threads,
        seed=0,
        verbose=False,
    )
    load_s = time.perf_counter() - started
    n_vocab = llm.n_vocab()
    rng = np.random.default_rng(0)
    prefix = [int(t) for t in rng.integers(300, n_vocab, 30)]  # the chat template head and prompt start
    llm.eval(prefix)
    eos = llm.token_eos()

    def no_end(input_ids, scores):  # exactly `gen` tokens, and a logits processor's cost, as the stage's loop guard
        scores[eos] = -np.inf
        return scores

    seconds, cpu_seconds = [], []
    for r in range(repeats + 1):
        llm.n_tokens = len(prefix)  # the stage's rewind to the shared prefix
        tail = [int(t) for t in rng.integers(300, n_vocab, prompt)]
        t0, c0 = time.perf_counter(), time.process_time()
        out = llm.create_completion(
            prefix + tail,
            max_tokens=gen,
            temperature=0.7,
            seed=r,
            logits_processor=llama_cpp.LogitsProcessorList([no_end]),
        )
        if r:  # the first call warms up
            seconds.append(time.perf_counter() - t0)
            cpu_seconds.append(time.process_time() - c0)
        assert out["usage"]["completion_tokens"] == gen, out["usage"]
    llm.close()
    return {
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "load_s": load_s,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "seconds_per_call": float(np.min(seconds)),
        "cpu_seconds_per_call": float(np.min(cpu_seconds)),
        "calls": len(seconds),
        "threads": threads,
        "prompt_tokens": prompt,
        "gen_tokens": gen,
        "load_average": os.getloadavg()[0],
    }


def measure(
    out: Path,
    threads: int,
    prompt: int,
    gen: int,
    repeats: int,
    rounds: int,
    calls_per_text: float,
    only: list[str] | None,
    repack_weights: bool = False,
) -> None:
    """Every model once per round, in turn; each model's best round (fewest CPU-seconds per call: on a
    shared machine wall time mostly measures the other processes) is kept, also relative to SmolLM2's."""
    from pipeline.generate.models import resolve_model

    files = [resolve_model("smollm2")] + sorted(out.glob("*.gguf"), key=lambda p: p.stat().st_size)
    files = [f for f in files if not only or f == files[0] or any(name in f.name for name in only)]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {threads} thread(s); a call = {prompt} prompt "
        f"tokens after the shared prefix + {gen} sampled; best of {rounds} round(s) x {repeats} call(s); "
        f"{calls_per_text} calls per kept text; repack_weights {str(repack_weights).lower()}",
        flush=True,
    )
    best: dict[Path, dict] = {}
    for r in range(rounds):
        for path in files:
            code = (
                f"import json; import llm_presets as b; "  # run beside this script, so it imports as a module
                f"print(json.dumps(b.measure_one(b.Path({str(path)!r}), {threads}, {prompt}, {gen}, {repeats}, {repack_weights})))"
            )
            result = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent
            )
            if result.returncode:
                print(f"{path.name} failed: {result.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            m = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"  round {r + 1}: {path.name} {m['seconds_per_call']:.2f} s, {m['cpu_seconds_per_call']:.2f} "
                f"CPU-s per call (load average {m['load_average']:.1f})",
                flush=True,
            )
            if path not in best or m["cpu_seconds_per_call"] < best[path]["cpu_seconds_per_call"]:
                best[path] = m
    base = best.get(files[0], {}).get("cpu_seconds_per_call")
    print(
        "| model | file GB | peak RSS GB | s per call | CPU-s per call | x SmolLM2's CPU-s | captions per CPU-s (est.) |"
    )
    print("|---|---|---|---|---|---|---|")
    for path, m in best.items():
        cpu = m["cpu_seconds_per_call"]
        print(
            f"| {path.name} | {m['size_bytes'] / 1e9:.2f} | {m['peak_rss_bytes'] / 1e9:.2f} | {m['seconds_per_call']:.2f} "
            f"| {cpu:.2f} | {cpu / base if base else float('nan'):.1f} | {1 / (calls_per_text * cpu):.2f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("build", "measure"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/llm-presets"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=12, help="prompt tokens per call after the shared prefix")
    ap.add_argument("--gen", type=int, default=21, help="sampled tokens per call (SmolLM2: 2662 for 130 calls)")
    ap.add_argument("--repeats", type=int, default=2, help="timed calls per model and round, after a warm-up call")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--calls-per-text", type=float, default=1.07)
    ap.add_argument("--only", nargs="*", help="preset names (substrings) to build or measure")
    ap.add_argument("--k-quant", action="store_true", help="build: requantize to Q4_K_M (slow)")
    ap.add_argument(
        "--repack-weights",
        action="store_true",
        help="measure with llama.cpp's weight repacking on (generate.repack_weights; off by default, as in the stage)",
    )
    args = ap.parse_args()
    if args.what == "build":
        build(args.out, args.threads, args.only, args.k_quant)
    else:
        measure(
            args.out,
            args.threads,
            args.prompt,
            args.gen,
            args.repeats,
            args.rounds,
            args.calls_per_text,
            args.only,
            args.repack_weights,
        )


if __name__ == "__main__":
    main()
