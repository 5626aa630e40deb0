"""`tai doctor`: the first command to run on a new machine, and what to paste into a bug report.

Like `dvc doctor` and Homebrew's and Flutter's doctors, it prints what the project runs on (Python,
the project's and its key libraries' versions against the lock, the CPU and its extensions, cores,
memory, CUDA, the LLM decode probe, the CLIP weights params.yaml names, the image runtimes, the
cache folder, `prepare.root`) and then every problem it found, one line each naming the fix. Any
problem makes the exit status 1. A check that cannot run is itself a problem, never a traceback.

Each check is a function returning `Finding`s, so tests can run one on faked inputs.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from pipeline import environment, paths
from pipeline.config import load_params
from pipeline.encoding.runtime_names import RUNTIMES
from pipeline.errors import UserError, one_line
from pipeline.settings import plan

LOCK_FILE = "constraints.txt"
INSTALL_FROM_LOCK = 'python -m pip install -e ".[test]" -c constraints.txt'
MIN_FREE_BYTES = 2 << 30  # the embedding cache of a COCO-size run, with room to spare
EXIT_PROBLEMS = 1


@dataclass(frozen=True)
class Finding:
    topic: str  # "python", "cpu", "llm", ... (the left column)
    text: str  # what was found
    fix: str | None = None  # set: a problem, and how to fix it


# ------------------------------------------------------------------------------------------- checks


def check_python(claimed: str | None = None) -> list[Finding]:
    """This Python against the versions pyproject.toml claims (those a test run passed on)."""
    from importlib import metadata

    have = environment.python_version()
    if claimed is None:
        try:
            claimed = metadata.metadata("tai-adapter")["Requires-Python"]
        except (metadata.PackageNotFoundError, KeyError):
            claimed = None
    if not claimed:
        return [Finding("python", have)]
    try:
        from packaging.specifiers import SpecifierSet  # installed with matplotlib, dvc and others
    except ImportError:
        return [Finding("python", f"{have} (tested: {claimed}; not compared, packaging is not installed)")]
    if have in SpecifierSet(claimed):
        return [Finding("python", f"{have} (tested: {claimed})")]
    return [
        Finding(
            "python",
            f"{have} is outside the Pythons the suite passed on ({claimed})",
            f"use a Python in {claimed} (pyenv, uv python install, or your distribution's package)",
        )
    ]


def check_versions(root: Path | None) -> list[Finding]:
    """Python, the project and the key libraries, each against the lock where the checkout has one."""
    found = [
        *check_python(),
        Finding("tai-adapter", environment.version("tai-adapter") or "not installed (run from a checkout)"),
    ]
    lock = read_lock(root / LOCK_FILE) if root is not None and (root / LOCK_FILE).is_file() else None
    if lock is None:
        found.append(Finding("lock", f"no {LOCK_FILE} beside the code: versions not compared"))
    for dist in environment.KEY_PACKAGES:
        have = environment.version(dist)
        want = None if lock is None else lock.get(normalize(dist))
        text = f"{dist} {have or 'not installed'}" + (f" (lock: {want})" if want and want != have else "")
        found.append(Finding("library", text))
    if lock is not None:
        differ = sorted(
            (name, have, want)
            for name, want in lock.items()
            if (have := environment.version(name)) is not None and have != want
        )
        for name, have, want in differ:
            found.append(
                Finding(
                    "lock",
                    f"{name} {have} is installed, the lock says {want}",
                    f"{INSTALL_FROM_LOCK} (installs what CI tested)",
                )
            )
        if not differ:
            found.append(Finding("lock", f"every installed package matches {LOCK_FILE}"))
    return found


def check_machine() -> list[Finding]:
    features = environment.cpu_features()
    memory = environment.memory_bytes()
    found = [
        Finding("cpu", environment.cpu_model()),
        Finding(
            "cpu", "extensions: " + ", ".join(f"{name} {'yes' if has else 'no'}" for name, has in features.items())
        ),
        Finding(
            "cpu",
            f"{environment.cores()} cores usable, {memory / 2**30:.1f} GiB memory"
            if memory
            else f"{environment.cores()} cores usable, memory unknown",
        ),
    ]
    if environment.version("torch") is None:
        return found + [Finding("gpu", "torch is not installed", f"python -m pip install -e . -c {LOCK_FILE}")]
    import torch

    if torch.cuda.is_available():
        found.append(
            Finding(
                "gpu",
                f"CUDA {torch.version.cuda}: "
                + ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())),
            )
        )
    else:
        found.append(Finding("gpu", f"none (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"))
    return found


def check_llm(params, cache_dir: Path | None = None) -> list[Finding]:
    """The decode probe of generate.model (pipeline.generate.probe): cached, or one child process."""
    g = params.generate
    if g.backend != "llama_cpp":
        return [Finding("llm", f"generate.backend {g.backend}: the model runs on the server(s), nothing to probe")]
    if environment.version("llama-cpp-python") is None:
        return [Finding("llm", "llama-cpp-python is not installed", f"python -m pip install -e . -c {LOCK_FILE}")]
    # lazy, as every import below that loads torch, polars or llama_cpp: a broken install of one of them is
    # a finding of the check that needs it (`_guarded`), not a traceback of `tai doctor`
    from pipeline.generate.models import model_identity, resolve_model
    from pipeline.generate.probe import failure, probe_decode

    model = resolve_model(g.model)
    result = probe_decode(
        model,
        repack_weights=g.repack_weights,
        n_threads=g.n_threads,
        model_sha256=model_identity(model)["sha256"],
        cache_dir=cache_dir,
    )
    if result.ok:
        how = "cached: passed before" if result.cached else "passed just now"
        return [Finding("llm", f"{model.name} decodes here (repack_weights {str(g.repack_weights).lower()}; {how})")]
    what, fix = failure(model, result.detail, g.repack_weights)
    return [Finding("llm", what, fix)]


def check_clip(params) -> list[Finding]:
    """Whether the CLIP weights encode.model names are on disk (else the first run downloads them)."""
    model = params.encode.model
    from pipeline.encoding.openai_clip import is_open_clip  # lazy: see check_llm

    if is_open_clip(model):
        return [_open_clip_weights(model)]
    path = Path(model).expanduser()
    if path.suffix or path.exists():  # a checkpoint file
        if path.is_file():
            return [Finding("clip", f"encode.model {model}: the file is there")]
        return [
            Finding(
                "clip",
                f"encode.model {model}: no such file",
                "point encode.model at a CLIP checkpoint, or name a released model such as RN50",
            )
        ]
    import clip

    url = clip.clip._MODELS.get(model)
    if url is None:
        return [
            Finding(
                "clip",
                f"encode.model {model} is not a released CLIP model",
                f"use one of {clip.available_models()} or a checkpoint path",
            )
        ]
    cached = Path("~/.cache/clip").expanduser() / Path(url).name
    if cached.is_file():
        return [Finding("clip", f"encode.model {model}: cached at {cached}")]
    return [
        Finding(
            "clip",
            f"encode.model {model}: not cached ({cached}); the first encode stage downloads it (needs the internet)",
        )
    ]


def _open_clip_weights(model: str) -> Finding:
    if environment.version("open_clip_torch") is None:
        return Finding(
            "clip",
            f"encode.model {model} needs open_clip, which is not installed",
            f'python -m pip install -e ".[open_clip]" -c {LOCK_FILE}',
        )
    from pipeline.encoding.open_clip_backbones import OpenClipName  # lazy: see check_llm

    name = OpenClipName.parse(model)
    if name.pretrained and Path(name.pretrained).is_file():
        return Finding("clip", f"encode.model {model}: the weights file is there")
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    cfg = open_clip.get_pretrained_cfg(name.architecture, name.pretrained or "") or {}
    repo = cfg.get("hf_hub", "").rstrip("/")
    files = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
    if repo and any(isinstance(try_to_load_from_cache(repo, f), str) for f in files):
        return Finding("clip", f"encode.model {model}: cached ({repo})")
    return Finding(
        "clip",
        f"encode.model {model}: not in the Hugging Face cache; the first encode stage downloads it "
        "(needs the internet)",
    )


def check_image_runtimes(params) -> list[Finding]:
    from pipeline.device import resolve_device  # lazy: see check_llm
    from pipeline.encoding.image_runtime import PACKAGES, choose_runtime, installed
    from pipeline.encoding.precision import precision_problem

    e = params.encode
    found = [Finding("images", "runtimes installed: " + ", ".join(r for r in RUNTIMES if r != "auto" and installed(r)))]
    try:
        device = resolve_device(e.device)
    except UserError as error:
        return found + [Finding("images", str(error), "set encode.device: auto or cpu")]
    if e.runtime != "auto" and not installed(e.runtime):
        extra = "onnx" if e.runtime == "onnxruntime" else e.runtime
        found.append(
            Finding(
                "images",
                f"encode.runtime {e.runtime}: {' and '.join(PACKAGES[e.runtime])} not installed",
                f'python -m pip install -e ".[{extra}]" -c {LOCK_FILE}, or encode.runtime: auto',
            )
        )
    else:
        found.append(
            Finding(
                "images",
                f"encode.runtime {e.runtime} runs {choose_runtime(e.runtime, e.precision, device)} "
                f"at {e.precision} on {device.type}",
            )
        )
    problem = precision_problem(e.precision, device)
    if problem:
        text, _, fix = problem.partition(": ")
        found.append(Finding("images", text, fix or "set encode.precision: fp32"))
    return found


def check_cache(free_bytes: Callable[[Path], int] | None = None) -> list[Finding]:
    folder = paths.embedding_cache_dir()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = (free_bytes or (lambda p: shutil.disk_usage(p).free))(existing)
    text = f"{folder} ({'exists' if folder.exists() else 'not made yet'}), {free / 2**30:.1f} GiB free"
    if free < MIN_FREE_BYTES:
        return [
            Finding(
                "cache",
                text,
                f"free at least {MIN_FREE_BYTES >> 30} GiB there, or point ${paths.CACHE_ENV} at a disk with room",
            )
        ]
    return [Finding("cache", text)]


def check_prepare_root(params) -> list[Finding]:
    from pipeline.data.datasets.specs import dataset_spec  # lazy: see check_llm

    prepare = params.prepare
    spec = dataset_spec(prepare.dataset)
    missing = spec.missing(prepare)
    where = f"prepare.dataset {prepare.dataset}, prepare.root {prepare.root}"
    if not missing:
        return [Finding("data", f"{where}: the layout checks")]
    target = spec.download_root(paths.DOWNLOADS)
    if spec.downloadable and target is not None and Path(prepare.root).resolve() == target.resolve():
        return [Finding("data", f"{where}: not downloaded yet; the download stage fetches it (needs the internet)")]
    key, path = missing[0]
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return [
        Finding(
            "data",
            f"{where}: {key} points at {path}, which is missing{more}",
            f"put your {prepare.dataset} copy there or point {key} at it (docs/datasets.md)",
        )
    ]


# ------------------------------------------------------------------------------------------- report


def run_checks(
    params_path: Path = Path("params.yaml"), root: Path | None = None, probe_cache_dir: Path | None = None
) -> list[Finding]:
    """Every check, in the order printed; a check that raises becomes a problem naming what it said."""
    root = project_root() if root is None else root
    found = _guarded("versions", lambda: check_versions(root)) + _guarded("cpu", check_machine)
    try:
        params = load_params(params_path)
        plan(params)  # keys that cannot work together
    except Exception as e:
        return found + [
            Finding(
                "params",
                f"{params_path}: {one_line(e)}",
                "fix params.yaml as the message says, then run tai doctor again",
            )
        ]
    for topic, check in (
        ("llm", lambda: check_llm(params, probe_cache_dir)),
        ("clip", lambda: check_clip(params)),
        ("images", lambda: check_image_runtimes(params)),
        ("cache", check_cache),
        ("data", lambda: check_prepare_root(params)),
    ):
        found += _guarded(topic, check)
    return found


def _guarded(topic: str, check: Callable[[], Iterable[Finding]]) -> list[Finding]:
    try:
        return list(check())
    except UserError as e:  # bad input: its message names the fix
        return [Finding(topic, one_line(e).split(": ", 1)[0], one_line(e))]
    except Exception as e:  # a check that cannot run is a finding, never a traceback
        return [
            Finding(
                topic,
                f"the check failed: {type(e).__name__}: {one_line(e)}",
                "a bug in tai doctor or a broken install: reinstall from the lock "
                f"({INSTALL_FROM_LOCK}), and report this output if it stays",
            )
        ]


def render(findings: list[Finding]) -> str:
    lines = [f"{f.topic:<11} {f.text}" for f in findings if f.fix is None]
    problems = [f for f in findings if f.fix is not None]
    lines.append("")
    if problems:
        lines.append(f"{len(problems)} problem(s):")
        lines += [f"  {f.topic}: {f.text}. Fix: {f.fix}" for f in problems]
    else:
        lines.append("no problem found")
    return "\n".join(lines)


def project_root() -> Path:
    """The checkout the code runs from (where constraints.txt lives), for an editable install."""
    return Path(__file__).resolve().parents[1]


def read_lock(path: Path) -> dict[str, str]:
    """`name==version` lines of a pip constraints file -> {normalized name: version}."""
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;#\\]+)", line)
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def normalize(name: str) -> str:
    """PEP 503: names compare lower case with runs of -, _ and . as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()
