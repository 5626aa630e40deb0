"""The per-user cache's layout: embeddings where they always were, resume state and the LLM probe beside them."""

from __future__ import annotations

from pathlib import Path

from pipeline import paths


def test_the_cache_layout_without_and_with_tai_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.CACHE_ENV, raising=False)
    home = paths.user_cache_root()
    assert paths.embedding_cache_dir() == home / "embeddings"  # unchanged: earlier runs' embeddings are found
    assert paths.resume_dir("train") == home / "resume" / "train"
    assert paths.llm_probe_cache_dir() == home / "llm-probe"
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path))
    assert paths.embedding_cache_dir() == tmp_path  # as before: the chunks sit in it directly
    assert paths.resume_dir("generate") == tmp_path / "resume" / "generate"
    assert paths.llm_probe_cache_dir() == tmp_path / "llm-probe"
    assert not any(
        Path(p).is_relative_to(paths.embedding_cache_dir() / "embeddings")
        for p in (paths.resume_dir("prompt"), paths.llm_probe_cache_dir())
    )
