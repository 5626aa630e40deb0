"""The LLM backend never takes the generate stage down: GGUFs load with weight repacking off (the AMX
crash of issue 23), and a one-decode probe in a child process turns a native crash into one line
naming the fix, exit 2, before any caption or journal write."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from e2e_project import stage_command, stage_env
from pipeline import environment
from pipeline.data.labels import VOC_LABELS
from pipeline.generate.models import model_identity, resolve_model
from pipeline.generate.probe import probe_decode, probe_key
from pipeline.io import write_parquet

# A stand-in for a llama.cpp build whose kernels crash on this CPU: importing it dies with SIGSEGV,
# as the AMX kernels did on the first decode. Only the probe's child imports llama_cpp before the model loads.
CRASHING_LLAMA_CPP = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"


def make_project(path: Path, repack_weights: bool = False) -> Path:
    path.mkdir()
    write_parquet(VOC_LABELS.to_frame(), path / "artifacts" / "data" / "voc2007" / "labels.parquet")
    generate = {
        "n_combinations": 4,
        "n_threads": 1,
        "backend": "llama_cpp",
        "model": "smollm2",
        "repack_weights": repack_weights,
    }
    (path / "params.yaml").write_text(yaml.safe_dump({"prepare": {"dataset": "voc2007"}, "generate": generate}))
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def run_generate_with_crashing_llama(project: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    fake = tmp_path / "crashing-build"
    (fake / "llama_cpp").mkdir(parents=True)
    (fake / "llama_cpp" / "__init__.py").write_text(CRASHING_LLAMA_CPP)
    env = stage_env()
    env["PYTHONPATH"] = os.pathsep.join([str(fake), env["PYTHONPATH"]])
    env["TAI_CACHE_DIR"] = str(tmp_path / "cache")  # no probe passed here before
    return subprocess.run(stage_command("generate"), cwd=project, env=env, capture_output=True, text=True, timeout=300)


def test_a_child_killed_by_sigsegv_stops_generate_with_one_line_and_exit_2(tmp_path):
    project = make_project(tmp_path / "project")
    journal = project / "artifacts" / "generate" / "journal"
    (journal / "0123abcd").mkdir(parents=True)
    (journal / "0123abcd" / "meta.json").write_text('{"from": "an earlier run"}\n')
    before = snapshot(journal)

    done = run_generate_with_crashing_llama(project, tmp_path)

    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert "killed by SIGSEGV" in errors[0] and "Fix: rebuild llama-cpp-python" in errors[0], errors[0]
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in errors[0] and "generate.backend: openai" in errors[0]
    assert not (project / "artifacts" / "texts.parquet").exists()
    assert not (project / "artifacts" / "generate" / "report.parquet").exists()
    assert snapshot(journal) == before  # the journal is untouched: not opened, not pruned


def test_with_repacking_on_the_fix_is_to_turn_it_off(tmp_path):
    project = make_project(tmp_path / "project", repack_weights=True)
    done = run_generate_with_crashing_llama(project, tmp_path)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if " ERROR " in line]
    assert done.returncode == 2 and len(errors) == 1
    assert errors[0].endswith(
        "Fix: set generate.repack_weights: false (llama.cpp's weight repacking crashes on "
        "some CPUs, AMX ones among them)"
    ), errors[0]


def test_the_real_probe_decodes_the_embedded_model_here_once(tmp_path, monkeypatch):
    import pipeline.generate.probe as probe

    model = resolve_model("smollm2")
    sha = model_identity(model)["sha256"]
    first = probe_decode(model, repack_weights=False, n_threads=1, model_sha256=sha, cache_dir=tmp_path)
    assert first.ok and not first.cached, first.detail
    assert '"tokens"' in first.detail
    # a second probe of the same build, CPU and model is answered by the cache: no child runs
    monkeypatch.setattr(probe, "child_command", lambda *a: (_ for _ in ()).throw(AssertionError("child ran")))
    again = probe_decode(model, repack_weights=False, n_threads=1, model_sha256=sha, cache_dir=tmp_path)
    assert again.ok and again.cached and again.key == first.key


def test_a_failure_is_not_remembered(tmp_path, monkeypatch):
    import sys

    import pipeline.generate.probe as probe

    monkeypatch.setattr(probe, "child_command", lambda *a: [sys.executable, "-c", "raise SystemExit('bad GGUF')"])
    for _ in range(2):
        result = probe_decode(
            Path("model.gguf"), repack_weights=False, n_threads=1, model_sha256="0" * 64, cache_dir=tmp_path
        )
        assert not result.ok and not result.cached and result.detail == "exit status 1: bad GGUF"
    assert list(tmp_path.iterdir()) == []


def test_the_probe_key_changes_with_build_cpu_model_and_repacking(monkeypatch):
    base = probe_key("a" * 64, False)
    assert probe_key("a" * 64, False) == base
    assert probe_key("b" * 64, False) != base
    assert probe_key("a" * 64, True) != base
    monkeypatch.setattr(environment, "cpu_flags", lambda: frozenset({"avx2", "amx_tile"}))
    with_amx = probe_key("a" * 64, False)
    assert with_amx != base
    monkeypatch.setattr(environment, "version", lambda dist: "9.9.9")
    assert probe_key("a" * 64, False) != with_amx


def test_load_llama_turns_repacking_off_unless_asked_and_restores_the_defaults(monkeypatch):
    import llama_cpp
    import llama_cpp.llama_cpp as low

    seen = []

    class FakeLlama:
        def __init__(self, model_path, **kwargs):
            seen.append((model_path, kwargs, low.llama_model_default_params().use_extra_bufts))

    monkeypatch.setattr(llama_cpp, "Llama", FakeLlama)
    from pipeline.generate.llama_load import load_llama

    load_llama(Path("m.gguf"), n_ctx=256)
    load_llama("m.gguf", repack_weights=True, n_threads=3)
    assert seen == [("m.gguf", {"n_ctx": 256}, False), ("m.gguf", {"n_threads": 3}, True)]
    assert low.llama_model_default_params().use_extra_bufts is True  # llama.cpp's own default, untouched


def test_the_backend_and_benchmarks_build_every_llama_through_load_llama():
    root = Path(__file__).resolve().parents[1]
    sources = [*(root / "pipeline").rglob("*.py"), *(root / "benchmarks").glob("*.py")]
    direct = [
        p.relative_to(root).as_posix()
        for p in sources
        if p.name != "llama_load.py"
        and any(s in p.read_text() for s in ("import Llama", "llama_cpp.Llama(", " Llama("))
    ]
    assert direct == []
