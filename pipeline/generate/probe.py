"""Before `generate` loads a GGUF into its own process, prove that it decodes on this machine.

llama.cpp runs native kernels chosen for the CPU it was built on or runs on; one that crashes
(SIGSEGV in the AMX kernels, issue 23) kills the process with no message. So one tiny chat
completion runs first in a child process: the child dying becomes one line naming the fix (a
`UserError`, exit 2) before any caption or journal is written. A decode that passed is remembered
per (llama-cpp-python version, CPU flags, model file sha256, generate.repack_weights) under the
user cache (`paths.llm_probe_cache_dir`), so the child runs once per machine, build and model.
A failure is never remembered: a rebuilt llama-cpp-python of the same version is probed again.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pipeline import environment, paths
from pipeline.errors import UserError
from pipeline.generate.llama_load import load_llama

PROBE_PROMPT = "Please briefly caption an image that contains a cat and a dog."
PROBE_TIMEOUT_S = 600.0  # loading a multi-GB GGUF from a slow disk; a hung child is a failure too


class DecodeProbeError(UserError, RuntimeError):
    """The model cannot decode on this machine: one line naming the fix."""


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    cached: bool  # answered from the cache, no child run
    detail: str  # what the child said, or how it died
    key: str


def probe_key(model_sha256: str, repack_weights: bool) -> str:
    """What a passed probe is remembered by: the llama-cpp-python build's version, the CPU's flags, the model."""
    parts = {
        "llama_cpp_python": environment.version("llama-cpp-python"),
        "cpu_flags": sorted(environment.cpu_flags()) or [environment.cpu_model()],
        "model_sha256": model_sha256,
        "repack_weights": repack_weights,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def child_command(model_path: Path, repack_weights: bool, n_threads: int) -> list[str]:
    """The child's command line: this module, one tiny decode (tests swap in a child that crashes)."""
    return [
        sys.executable,
        "-m",
        "pipeline.generate.probe",
        str(Path(model_path).resolve()),
        str(int(repack_weights)),
        str(n_threads),
    ]


def probe_decode(
    model_path: Path, *, repack_weights: bool, n_threads: int, model_sha256: str, cache_dir: Path | None = None
) -> ProbeResult:
    """Run (or recall) the one-decode probe of `model_path`; never raises for a crash, it reports it."""
    cache_dir = paths.llm_probe_cache_dir() if cache_dir is None else cache_dir
    key = probe_key(model_sha256, repack_weights)
    marker = cache_dir / f"{key}.json"
    if marker.is_file():
        return ProbeResult(True, True, "decoded before on this machine, build and model", key)
    command = child_command(model_path, repack_weights, n_threads)
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
            cwd=_package_root(),
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(False, False, f"no answer within {PROBE_TIMEOUT_S:.0f}s", key)
    if done.returncode == 0:
        cache_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(
            json.dumps(
                {
                    "model": str(model_path),
                    "repack_weights": repack_weights,
                    "llama_cpp_python": environment.version("llama-cpp-python"),
                    "cpu": environment.cpu_model(),
                    "answer": done.stdout.strip()[-200:],
                }
            )
            + "\n"
        )
        return ProbeResult(True, False, done.stdout.strip()[-200:], key)
    if done.returncode < 0:
        return ProbeResult(False, False, f"killed by {_signal_name(-done.returncode)}", key)
    last = next((line.strip() for line in reversed(done.stderr.splitlines()) if line.strip()), "")
    return ProbeResult(False, False, f"exit status {done.returncode}: {last[:300]}", key)


def check_decodes(
    model_path: Path,
    *,
    repack_weights: bool,
    n_threads: int,
    model_sha256: str,
    cache_dir: Path | None = None,
    key: str = "generate",
) -> ProbeResult:
    """`probe_decode`, raising a DecodeProbeError (one line naming the fix) where the probe failed."""
    result = probe_decode(
        model_path, repack_weights=repack_weights, n_threads=n_threads, model_sha256=model_sha256, cache_dir=cache_dir
    )
    if not result.ok:
        what, fix = failure(model_path, result.detail, repack_weights, key)
        raise DecodeProbeError(f"{what}; nothing was written. Fix: {fix}")
    return result


def failure(model_path: Path, detail: str, repack_weights: bool, key: str = "generate") -> tuple[str, str]:
    """(what failed, on which build and CPU; the fix): the param to change, or the build flag to use."""
    version = environment.version("llama-cpp-python") or "?"
    features = ", ".join(name for name, has in environment.cpu_features().items() if has) or "no listed extensions"
    if repack_weights:
        fix = (
            f"set {key}.repack_weights: false (llama.cpp's weight repacking crashes on some CPUs, AMX ones among them)"
        )
    else:
        fix = (
            f'rebuild llama-cpp-python without the kernels chosen for this CPU: CMAKE_ARGS="-DGGML_NATIVE=OFF" '
            f"pip install --force-reinstall --no-cache-dir llama-cpp-python=={version}, or serve the model "
            f"elsewhere ({key}.backend: openai)"
        )
    what = (
        f"{key}.model {model_path.name} cannot decode on this machine: a one-caption test decode in a child "
        f"process failed ({detail}; llama-cpp-python {version}, {environment.cpu_model()}, {features}, "
        f"{key}.repack_weights {str(repack_weights).lower()})"
    )
    return what, fix


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _package_root() -> str:
    """The folder holding `pipeline/`, so that the child imports this very code."""
    return str(Path(__file__).resolve().parents[2])


def _child(model_path: str, repack_weights: str, n_threads: str) -> None:
    threads = int(n_threads)
    llm = load_llama(
        model_path,
        repack_weights=bool(int(repack_weights)),
        n_ctx=256,
        n_threads=threads,
        n_threads_batch=threads,
        seed=0,
        verbose=False,
    )
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": PROBE_PROMPT}], max_tokens=4, temperature=0.0, seed=0
    )
    print(json.dumps({"tokens": out["usage"]["completion_tokens"], "text": out["choices"][0]["message"]["content"]}))


if __name__ == "__main__":
    _child(*sys.argv[1:4])
