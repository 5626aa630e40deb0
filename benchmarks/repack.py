"""What llama.cpp's load-time weight repacking (`generate.repack_weights`, off by default) buys the generate stage.

Runs the stage (`generate_texts`, llama_cpp backend, model load included) with repacking off and on, alternating
(which goes first alternates too), `--repeats` times each, and keeps each side's best captions/s: other work on a shared machine only ever
slows a run down. Prints the CPU, which tensors llama.cpp repacks (its own load log), and the ratio on/off.

    python benchmarks/repack.py --n 30 --repeats 3
    python benchmarks/repack.py --model hf:bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_0.gguf

Whether repacking does anything depends on the CPU and the model's quantisation: llama.cpp repacks Q4_0,
IQ4_NL and Q4_K (and more on ARM) for AVX2 / AVX-512 / NEON kernels, and Q4_0, Q4_1, Q8_0 and others into
AMX tiles on AMX CPUs (where it crashed: issue 23).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline import environment
from pipeline.config import GenerateParams
from pipeline.data.labels import VOC_LABELS
from pipeline.generate import generate_texts, make_backend, resolve_model


def captions_per_s(p: GenerateParams) -> tuple[float, int, float]:
    """(captions/s, kept captions, seconds) of one generate_texts run, model load included."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        started = time.perf_counter()
        backend = make_backend(p)
        try:
            summary = generate_texts(
                p,
                VOC_LABELS,
                texts_path=out / "texts.parquet",
                report_path=out / "r.parquet",
                journal_dir=out / "journal",
                backend=backend,
                progress=False,
            )
        finally:
            backend.close()
        seconds = time.perf_counter() - started
        return summary.llm_texts / seconds, summary.llm_texts, seconds


def repack_log(model: Path, repack: bool) -> str:
    """llama.cpp's own load lines about buffer types (which tensors it repacks), from a child process."""
    code = (
        "import sys; from pipeline.generate.llama_load import load_llama; "
        f"load_llama({str(model)!r}, repack_weights={repack}, n_ctx=256, verbose=True)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    repacked = sum("repack tensor" in line for line in done.stderr.splitlines())
    buffers = [line.split(":", 1)[-1].strip() for line in done.stderr.splitlines() if "CPU_REPACK model buffer" in line]
    return f"{repacked} tensors repacked" + (f" ({buffers[0]})" if buffers else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=30, help="label combinations per run (default 30)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="runs per side, best kept (default 3)")
    ap.add_argument("--model", default="smollm2", help="generate.model (default: the embedded SmolLM2)")
    args = ap.parse_args()

    base = GenerateParams(n_combinations=args.n, n_threads=args.threads, model=args.model, llm_fraction=1.0)
    base.check("generate")
    model = resolve_model(base.model)
    print(f"{environment.describe()}; llama-cpp-python {environment.version('llama-cpp-python')}")
    print("CPU extensions: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in environment.cpu_features().items()))
    print(
        f"model {model.name}, {args.n} combinations, {args.threads} thread(s), best of {args.repeats}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for repack in (False, True):
        print(f"  repack_weights {str(repack).lower()}: {repack_log(model, repack)}")
    best = {False: 0.0, True: 0.0}
    for r in range(args.repeats):
        for repack in (False, True) if r % 2 == 0 else (True, False):  # either side goes first in turn
            rate, texts, seconds = captions_per_s(dataclasses.replace(base, repack_weights=repack))
            best[repack] = max(best[repack], rate)
            print(f"  repack_weights {str(repack).lower():5}: {texts} captions in {seconds:.1f}s = {rate:.2f}/s")
    print(f"captions/s, best: off {best[False]:.2f}, on {best[True]:.2f}; on / off = {best[True] / best[False]:.2f}")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
