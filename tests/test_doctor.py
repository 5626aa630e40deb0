"""`tai doctor`: on this machine it prints every section and finds no problem beyond version drift from the
lock; with faked problems, each becomes one line naming the fix, and the exit status is 1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import pipeline.doctor as doctor
import pipeline.generate.probe as probe
from pipeline.cli import app
from pipeline.config import load_params
from pipeline.device import resolve_device
from pipeline.doctor import (
    Finding,
    check_cache,
    check_image_runtimes,
    check_python,
    check_versions,
    read_lock,
    render,
    run_checks,
)
from pipeline.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("python", "library", "lock", "cpu", "gpu", "llm", "clip", "images", "cache", "data")


def params_file(tmp_path: Path, **changes) -> Path:
    """The project's params.yaml with `changes` ({"encode.runtime": "openvino"}) applied."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        raw[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.fix is not None]


def test_doctor_runs_here_and_finds_nothing_but_drift_from_the_lock(monkeypatch):
    monkeypatch.chdir(ROOT)  # params.yaml's relative paths (prepare.root) are the project's
    result = CliRunner().invoke(app, ["doctor"])
    lines = result.output.splitlines()
    assert {line.split()[0] for line in lines if line and not line.startswith(" ")} >= set(SECTIONS), result.output
    found = [line for line in lines if line.startswith("  ")]
    # the suite also runs after `pip install --upgrade` (README): newer releases than the lock are the one allowed problem
    assert all(line.startswith("  lock: ") and "Fix: " in line for line in found), result.output
    assert result.exit_code == (1 if found else 0), result.output
    assert "no problem found" in result.output or f"{len(found)} problem(s):" in result.output
    assert any(line.startswith("llm ") and "decodes here" in line for line in lines), result.output


def test_each_faked_problem_is_one_line_naming_the_fix_and_exit_1(tmp_path, monkeypatch):
    params = params_file(
        tmp_path,
        **{
            "encode.runtime": "onnxruntime",
            "encode.model": str(tmp_path / "missing.pt"),
            "encode.precision": "fp16",
            "prepare.root": str(tmp_path / "my-voc"),
        },
    )
    (tmp_path / "constraints.txt").write_text("torch==0.0.1\nnot-installed-anywhere==1.0\n")
    monkeypatch.setattr(
        probe,
        "child_command",
        lambda *a: [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"],
    )
    monkeypatch.setattr(doctor, "MIN_FREE_BYTES", 1 << 62)
    import pipeline.encoding.image_runtime as image_engine

    real_installed = image_engine.installed
    monkeypatch.setattr(image_engine, "installed", lambda runtime: runtime != "onnxruntime" and real_installed(runtime))
    monkeypatch.setattr(doctor, "check_python", lambda: check_python(claimed=">=2.0,<3.0"))

    findings = run_checks(params, root=tmp_path, probe_cache_dir=tmp_path / "probe")
    by_topic = {f.topic: f for f in problems(findings)}
    assert sorted(by_topic) == ["cache", "clip", "data", "images", "llm", "lock", "python"], render(findings)
    assert "torch" in by_topic["lock"].text and "-c constraints.txt" in by_topic["lock"].fix
    assert "killed by SIGSEGV" in by_topic["llm"].text and "GGML_NATIVE=OFF" in by_topic["llm"].fix
    assert "no such file" in by_topic["clip"].text and "encode.model" in by_topic["clip"].fix
    assert "prepare.root" in by_topic["data"].text and str(tmp_path / "my-voc") in by_topic["data"].text
    assert "TAI_CACHE_DIR" in by_topic["cache"].fix
    assert "outside the Pythons" in by_topic["python"].text
    images = [f for f in problems(findings) if f.topic == "images"]
    assert any("onnxruntime" in f.text and ".[onnx]" in f.fix for f in images), images
    assert any("fp16" in f.text for f in images), images
    text = render(findings)
    problem_lines = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(problem_lines) == len(problems(findings)) and all(". Fix: " in line for line in problem_lines)

    monkeypatch.setattr(doctor, "run_checks", lambda path: findings)
    result = CliRunner().invoke(app, ["doctor", "--params", str(params)])
    assert result.exit_code == 1 and f"{len(problems(findings))} problem(s):" in result.output


def test_a_check_that_raises_is_a_problem_not_a_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("the model file cannot be read: set generate.model to a GGUF file")

    monkeypatch.setattr(doctor, "check_llm", broken)
    monkeypatch.setattr(doctor, "check_clip", lambda params: [])
    monkeypatch.setattr(doctor, "check_image_runtimes", lambda params: [])
    findings = run_checks(params_file(tmp_path), root=tmp_path, probe_cache_dir=tmp_path)
    (llm,) = [f for f in findings if f.topic == "llm"]
    assert "OSError" in llm.text and "reinstall from the lock" in llm.fix


def test_a_cuda_device_without_a_gpu_is_a_user_error_and_a_doctor_problem(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU is visible: set device to auto or cpu"):
        resolve_device("cuda")
    findings = check_image_runtimes(load_params(params_file(tmp_path, **{"encode.device": "cuda"})))
    assert [f.fix for f in problems(findings)] == ["set encode.device: auto or cpu"], findings


def test_bad_params_are_one_problem_naming_the_key(tmp_path):
    params = params_file(tmp_path, **{"generate.n_threads": 0})
    findings = run_checks(params, root=tmp_path)
    (bad,) = problems(findings)
    assert bad.topic == "params" and "generate.n_threads" in bad.text


def test_the_lock_is_read_as_exact_pins_and_compared(tmp_path):
    lock = tmp_path / "constraints.txt"
    lock.write_text("# a comment\nPyYAML==6.0.4\nllama_cpp_python==0.3.36 ; python_version >= '3.11'\nfoo>=1\n")
    assert read_lock(lock) == {"pyyaml": "6.0.4", "llama-cpp-python": "0.3.36"}
    lock.write_text("numpy==0.0.0\n")
    (drift,) = problems(check_versions(tmp_path))
    assert drift.text.startswith("numpy ") and drift.text.endswith("the lock says 0.0.0")


def test_the_project_lock_pins_every_package_exactly():
    lock = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line for line in lock if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins), [line for line in pins if "==" not in line]
    names = read_lock(ROOT / "constraints.txt")
    assert {"torch", "llama-cpp-python", "pytest", "onnxruntime", "open-clip-torch", "setuptools"} <= set(names)


def test_the_cache_check_measures_free_space_where_the_folder_will_be(tmp_path, monkeypatch):
    monkeypatch.setenv("TAI_CACHE_DIR", str(tmp_path / "not" / "made" / "yet"))
    seen = []
    (finding,) = check_cache(lambda p: seen.append(p) or 10 << 30)
    assert seen == [tmp_path] and finding.fix is None and "not made yet" in finding.text
