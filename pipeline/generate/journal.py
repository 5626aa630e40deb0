"""Resumable progress: finished combinations are appended to small Parquet chunks as they finish.

Layout: `<journal>/<fingerprint>/meta.json` (what the fingerprint covers) and
`<journal>/<fingerprint>/<time_ns>-<pid>-<seq>.parquet`, each chunk written atomically (temp file
+ rename), holding every row (kept or dropped caption) of the combinations it covers, so a
combination is either wholly in the journal or not at all, whenever the process dies.

Each row also keeps every model call of its caption (`calls`: the call key, the answer), so the
chats can be run again under other rules without asking the model twice: on start the chunks
under the current fingerprint are loaded and each combination's chat is replayed from its
answers (pipeline.generate.refine), asking the model only for turns it has never answered. A
combination found in several chunks (re-judged under another generate.require_labels, or two runs
at once) has all its answers pooled.

The fingerprint covers everything that changes an answer: the generate params (not the transport:
servers, concurrency, timeouts, threads; not generate.require_labels, which only decides which
answers are asked for), the label set, the model's identity (its file's content hash), and a hash
of the code that samples, parses and runs the chats.

The journal folder is per user (pipeline.paths.generate_journal_dir), shared by every workspace and every
queued or --temp experiment, which may run at once under other settings. So a finished run removes only
the folders of other fingerprints that nobody has written for KEEP_OTHERS_S (a week): switching a generate
param back within it resumes every caption, and a parallel run's journal is never pulled from under it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import polars as pl

from pipeline.io import KEEP_UNUSED_S, prune_unused, write_json, write_parquet

log = logging.getLogger(__name__)

JOURNAL_VERSION = 2  # bump when the row format changes (the answer code is hashed into the fingerprint)
KEEP_OTHERS_S = KEEP_UNUSED_S  # how long a journal of other settings stays after it was last written

CALL_SCHEMA = pl.Struct(
    {
        "key": pl.Utf8,  # pipeline.generate.refine.call_key: the chat so far and the seed
        "text": pl.Utf8,  # the raw answer
        "finish_reason": pl.Utf8,
        "model": pl.Utf8,
        "tokens": pl.Int32,
    }
)

ROW_SCHEMA = {
    "combination_id": pl.Int64,
    "caption_index": pl.Int32,
    "combination": pl.List(pl.Utf8),
    "source": pl.Utf8,
    "prompt": pl.Utf8,
    "text": pl.Utf8,  # null when dropped
    "n_tokens": pl.Int32,
    "reason": pl.Utf8,  # null when kept
    "detail": pl.Utf8,
    "raw": pl.Utf8,
    "attempts": pl.Int32,
    "model": pl.Utf8,
    "seed": pl.Int64,
    "calls": pl.List(CALL_SCHEMA),  # every model call of this caption slot, in order
}


def fingerprint_of(meta: dict) -> str:
    blob = json.dumps({"version": JOURNAL_VERSION, **meta}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class Journal:
    def __init__(self, root: str | Path, meta: dict, *, every_s: float = 2.0, every_n: int = 64):
        self.root = Path(root)
        self.meta = meta
        self.fingerprint = fingerprint_of(meta)
        self.dir = self.root / self.fingerprint
        self.every_s = every_s
        self.every_n = every_n
        self._pending: list[dict] = []
        self._pending_combinations = 0
        self._last_flush = time.monotonic()
        self._seq = 0
        self.chunks_written = 0

    def open(self) -> "Journal":
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(".*.tmp"):  # a temp file of a run killed mid-write
            stale.unlink(missing_ok=True)
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            write_json({"fingerprint": self.fingerprint, "version": JOURNAL_VERSION, **self.meta}, meta_path)
        os.utime(meta_path)  # in use: another setting's run keeps it for KEEP_OTHERS_S from now
        return self

    def chunk_paths(self) -> list[Path]:
        return sorted(p for p in self.dir.glob("*.parquet") if not p.name.startswith("."))

    def load(self) -> pl.DataFrame:
        """Rows of every readable chunk, oldest first (a combination may appear in several)."""
        frames = []
        for path in self.chunk_paths():
            try:
                frame = pl.read_parquet(path)
                frames.append(frame.select([pl.col(c).cast(t) for c, t in ROW_SCHEMA.items()]))
            except Exception as e:  # unreadable chunk: redo its combinations
                log.warning(
                    "journal chunk %s is unreadable (%s): removing it, its combinations will be redone", path, e
                )
                path.unlink(missing_ok=True)
        return pl.concat(frames) if frames else pl.DataFrame(schema=ROW_SCHEMA)

    def add(self, rows: list[dict], combinations: int = 1) -> None:
        """All rows of one finished combination, or of a group decoded together (`combinations` of them): a
        group reaches one chunk whole, since a resumed run must decode its unjournaled groups whole again."""
        self._pending.extend(rows)
        self._pending_combinations += combinations
        if self._pending_combinations >= self.every_n or time.monotonic() - self._last_flush >= self.every_s:
            self.flush()

    def maybe_flush(self) -> None:
        if self._pending and time.monotonic() - self._last_flush >= self.every_s:
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        frame = pl.DataFrame(self._pending, schema=ROW_SCHEMA, orient="row")
        self._seq += 1
        write_parquet(frame, self.dir / f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet")
        self.chunks_written += 1
        self._pending = []
        self._pending_combinations = 0

    def prune(self, keep_others_s: float = KEEP_OTHERS_S) -> list[str]:
        """Delete what in the journal folder is not this fingerprint's and was last written more than
        `keep_others_s` ago (another setting's journal, or a parallel run's, stays while it is in use)."""
        return prune_unused(self.root, self.dir, "journal", keep_others_s)
