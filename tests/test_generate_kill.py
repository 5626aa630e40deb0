"""SIGKILL the generate stage (embedded SmolLM2 through llama_cpp) mid-run, twice, rerun it, and
compare with an uninterrupted run: same rows, nothing lost, nothing duplicated. At the default
generate.parallel (8) the combinations are decoded in groups of 32, journaled whole: N makes three
groups, so that each kill falls after a finished group and inside the next."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import yaml

from e2e_project import kill_when, stage_command, stage_env
from pipeline.config import GenerateParams
from pipeline.data.labels import VOC_LABELS
from pipeline.io import write_parquet

ROOT = Path(__file__).resolve().parents[1]
N = 72


def make_project(path: Path) -> Path:
    path.mkdir()
    write_parquet(VOC_LABELS.to_frame(), path / "artifacts" / "data" / "voc2007" / "labels.parquet")
    generate = {
        "n_combinations": N,
        "seed": 7,
        "n_threads": 1,
        "journal_every_s": 0.3,
        "backend": "llama_cpp",
        "model": "smollm2",
    }
    (path / "params.yaml").write_text(yaml.safe_dump({"prepare": {"dataset": "voc2007"}, "generate": generate}))
    return path


def journal_dir(project: Path) -> Path:
    """Each project its own per-user cache, so the two runs never share a journal."""
    return project / "cache" / "resume" / "generate"


def start(project: Path) -> subprocess.Popen:
    return subprocess.Popen(
        stage_command("generate"),
        cwd=project,
        env={**stage_env(), "TAI_CACHE_DIR": str(project / "cache")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def journaled(project: Path) -> int:
    chunks = [p for p in journal_dir(project).glob("*/*.parquet")]
    return sum(pl.read_parquet(c, columns=["combination_id"])["combination_id"].n_unique() for c in chunks)


def kill_after(proc: subprocess.Popen, project: Path, at_least: int, timeout: float = 300) -> int:
    return kill_when(proc, lambda: journaled(project), at_least, timeout)


def read(project: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    return (
        pl.read_parquet(project / "artifacts" / "texts.parquet"),
        pl.read_parquet(project / "artifacts" / "generate" / "report.parquet"),
    )


def test_sigkill_then_rerun_gives_the_uninterrupted_result(tmp_path):
    whole = make_project(tmp_path / "whole")
    killed = make_project(tmp_path / "killed")
    reference = start(whole)  # runs alongside: one thread each

    first = kill_after(start(killed), killed, at_least=3)
    assert not (killed / "artifacts" / "texts.parquet").exists()
    second = kill_after(start(killed), killed, at_least=first + 5)
    assert first < second < N

    final = start(killed)
    out, _ = final.communicate(timeout=600)
    assert final.returncode == 0, out
    assert f"{second} of {N} LLM combinations resumed" in out
    ref_out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, ref_out

    texts, report = read(killed)
    ref_texts, ref_report = read(whole)
    assert texts.equals(ref_texts), "a killed and resumed run differs from an uninterrupted one"
    assert report.equals(ref_report)
    assert texts["text_id"].n_unique() == texts.height
    accounted = set(texts["combination_id"]) | set(report["combination_id"])
    assert accounted == set(range(N))  # no combination lost
    assert texts.height + report.height == N  # none duplicated
    assert set(texts["source"]) == {"llm"} and set(texts["model"]) == {"SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert len(list(journal_dir(killed).iterdir())) == 1
    assert not (killed / "artifacts" / "generate" / "journal").exists()  # nothing of it in the workspace


def test_llama_cpp_answers_do_not_depend_on_the_order_of_work():
    from pipeline.generate.backends import LlamaCppBackend, resolve_model
    from pipeline.generate.refine import caption_chat

    prompt, alt_prompt = GenerateParams().prompt, GenerateParams().alt_prompt
    backend = LlamaCppBackend(
        resolve_model("smollm2"), n_ctx=1024, n_threads=2, temperature=0.7, max_tokens=48, prompt=prompt
    )
    try:
        # every chat starts from the shared tokens, the first prompt up to its labels included
        assert backend.llm.detokenize(backend._prefix).decode().endswith(prompt.split("{labels}")[0].rstrip())
        chats = [
            (prompt.replace("{labels}", words), seed)
            for seed, words in [(11, "cat"), (12, "bus and person"), (13, "sofa, dog and tv monitor")]
        ]
        chats.append((alt_prompt.replace("{labels}", "cat and dog"), 14))  # leaves the shared tokens early

        def answers(order):
            return {
                i: caption_chat(
                    backend,
                    chats[i][0],
                    seed=chats[i][1],
                    n_captions=2,
                    different_prompt="Another one, please.",
                    shorten_prompt="Shorter, please.",
                    max_shorten_rounds=1,
                    max_retries=1,
                )
                for i in order
            }

        forward, backward = answers([0, 3, 1, 2]), answers([2, 1, 3, 0])
        assert forward == backward
        assert len({o.raw for outcomes in forward.values() for o in outcomes}) > 1  # the answers do vary
        backend.close()
        backend = LlamaCppBackend(
            resolve_model("smollm2"), n_ctx=1024, n_threads=1, temperature=0.7, max_tokens=48, prompt=prompt
        )
        assert answers([1]) == {1: forward[1]}  # a fresh process (and another thread count) agrees
    finally:
        backend.close()
