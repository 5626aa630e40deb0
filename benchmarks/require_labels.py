"""What generate.require_labels costs and removes, with a real model (the embedded SmolLM2 by default).

For each setting (none, any, all), and each generate.parallel given, the stage runs from an empty
journal over the same combinations (VOC labels, the default params otherwise) and prints: kept texts,
drops by reason, the shares of kept LLM texts naming all / some / none of their labels, model calls
per kept text, and wall time.

    python benchmarks/require_labels.py --n 120 --threads 1
    python benchmarks/require_labels.py --n 120 --model hf:bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf
    python benchmarks/require_labels.py --n 120 --threads 1 --settings any --parallel 1 8   # batching's effect

Each setting runs once, in the order given; the load average is printed before and after each run
(the machine may be shared: compare calls per text and shares, which load does not change; time does).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

from pipeline.config import REQUIRE_LABELS, GenerateParams
from pipeline.data.labels import VOC_LABELS
from pipeline.generate import generate_texts, make_backend


def run(p: GenerateParams) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        backend = make_backend(p)  # model load counted
        try:
            summary = generate_texts(
                p,
                VOC_LABELS,
                texts_path=out / "texts.parquet",
                report_path=out / "report.parquet",
                journal_dir=out / "journal",
                backend=backend,
                progress=False,
            )
        finally:
            backend.close()
        return {
            "summary": summary,
            "seconds": time.perf_counter() - started,
            "load_before": load,
            "load_after": os.getloadavg()[0],
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=120, help="label combinations per run (default 120)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama_cpp threads (default 1: on a shared 2-core machine two threads wait on each other)",
    )
    ap.add_argument("--model", default=GenerateParams().model)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", nargs="+", default=list(REQUIRE_LABELS), choices=REQUIRE_LABELS)
    ap.add_argument(
        "--parallel",
        type=int,
        nargs="+",
        default=[GenerateParams().parallel],
        help="generate.parallel values to run each setting at (default: the default)",
    )
    args = ap.parse_args()

    base = GenerateParams(n_combinations=args.n, seed=args.seed, n_threads=args.threads, model=args.model)
    base.check("generate")
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; model {args.model}, {args.n} VOC combinations, "
        f"{args.threads} thread(s), max_retries {base.max_retries}"
    )
    print(
        "| require_labels | parallel | kept / dropped | drops by reason | naming all / some / none (of kept) "
        "| model calls per kept text | seconds | load average before, after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for setting in args.settings:
        for parallel in args.parallel:
            result = run(dataclasses.replace(base, require_labels=setting, parallel=parallel))
            s, m = result["summary"], result["summary"].metrics()
            shares = " / ".join(f"{m[f'share_llm_texts_naming_{k}_labels']:.3f}" for k in ("all", "some", "none"))
            print(
                f"| {setting} | {parallel} | {s.texts} / {sum(s.dropped.values())} "
                f"| {dict(sorted(s.dropped.items())) or '-'} | {shares} | {m['model_calls_per_llm_text']:.3f} "
                f"| {result['seconds']:.0f} | {result['load_before']:.1f}, {result['load_after']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
