"""The machine and the libraries a run ran on: what can make two runs' numbers differ with the same params.

One definition for `tai doctor`, the LLM decode probe's cache key (pipeline.generate.probe) and the
environment each run records in reports/environment.json (`run_record`). Reading it never changes
a result, so it is shared infrastructure (no dvc.yaml dep)."""

from __future__ import annotations

import os
import platform
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

# distribution -> the short name used in reports and by `tai doctor`: the libraries whose version moves numbers
KEY_PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "clip-anytorch": "clip",
    "open_clip_torch": "open_clip",
    "onnxruntime": "onnxruntime",
    "llama-cpp-python": "llama_cpp_python",
    "numpy": "numpy",
    "polars": "polars",
    "dvc": "dvc",
}
# what `tai doctor` names -> the /proc/cpuinfo flag (x86) or feature (ARM) that says so
CPU_FEATURES = {
    "AVX2": "avx2",
    "AVX-512": "avx512f",
    "AVX512-BF16": "avx512_bf16",
    "AMX": "amx_tile",
    "NEON": "asimd",
    "SVE": "sve",
}
CPUINFO = Path("/proc/cpuinfo")


def version(distribution: str) -> str | None:
    """The installed version of `distribution`, or None where it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def python_version() -> str:
    return platform.python_version()


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux), else nothing."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (x86 `flags`, ARM `Features`); empty where the OS does not say."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def cpu_features() -> dict[str, bool]:
    """AVX2, AVX-512, AVX512-BF16, AMX (x86) and NEON, SVE (ARM): which this CPU has."""
    flags = cpu_flags()
    arm = platform.machine().lower() in ("aarch64", "arm64")
    names = ("NEON", "SVE") if arm else ("AVX2", "AVX-512", "AVX512-BF16", "AMX")
    return {name: CPU_FEATURES[name] in flags for name in names}


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gpu_name() -> str | None:
    """The first CUDA GPU's name, or None (torch imported only if it is installed)."""
    if version("torch") is None:
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def run_record(runtime: str, precision: str, device: str) -> dict[str, str]:
    """What reports/environment.json holds: the key libraries' versions ("none" where not installed), the
    image runtime and precision `encode.*` give on this machine, and the CPU and GPU. Strings only, flat, so
    `dvc exp show` shows each as a column and `tai report` (numbers only) leaves them out of its table."""
    # lazy: both load torch, and `tai doctor` imports this module to report, among others, a missing torch
    from pipeline.device import resolve_device
    from pipeline.encoding.image_runtime import choose_runtime

    torch_device = resolve_device(device)
    record = {"python": python_version()}
    record.update({short: version(dist) or "none" for dist, short in KEY_PACKAGES.items()})
    record.update(
        {
            "image_runtime": choose_runtime(runtime, precision, torch_device),
            "image_precision": precision,
            "device": torch_device.type,
            "cpu": cpu_model(),
            "gpu": gpu_name() or "none",
        }
    )
    return record


def describe() -> str:
    """One line for logs and benchmarks: CPU, cores, GPU, Python."""
    return (
        f"{cpu_model()}, {cores()} cores, {gpu_name() or 'no GPU'}; Python {python_version()} "
        f"({sys.implementation.name})"
    )
