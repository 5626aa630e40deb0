"""The generate stage: label combinations -> captions (LLM or templates) -> texts.parquet + report.

`generate_texts` is the whole stage; `stages/generate.py` only reads params and the label table.

texts.parquet, one row per kept caption, sorted by (combination_id, caption index), text_id unique:
    text_id         Utf8          sha256(source, text)[:16]
    text            Utf8          the caption (<= 77 CLIP tokens)
    labels          List[Utf8]    the training target, label-table order: exactly the combination
                                  (generate.label_rule combination, the paper's), or the combination plus
                                  every label named in the text, name or synonym (mentions, ours)
    combination     List[Utf8]    the sampled labels, label-table order
    source          Utf8          "llm" | "template"
    prompt          Utf8          the chat's first user turn, or the template used
    model           Utf8          GGUF file name, the server's model, or "template"
    seed            Int64         the combination's own seed (derived from generate.seed and combination_id):
                                  its chat sampling seed, or its template/synonym draw
    n_tokens        Int32         CLIP tokens, start and end included
    combination_id  Int64         0 .. n_combinations-1

generate/report.parquet, one row per caption slot that did not make it (REPORT_SCHEMA); reasons:
too_long, empty, refusal, unparseable, off_topic (named too few of its labels: generate.require_labels),
backend_error, duplicate (same text_id as an earlier row).
Kept rows + report rows = n_combinations x captions_per_combination.

Whatever generate.require_labels, the stage counts which of its combination's labels each kept LLM
caption names (name or synonym, whole word, plural allowed: LabelSet.find_in_text): all, some
or none, for reports/generate.json.

generate/mentions.parquet (MENTIONS_SCHEMA, optional): whatever the rule, the labels that `mentions`
adds to some text (named in the text, not in its combination), most often first, so that users can
judge their synonyms ("train", "monitor", "table" are words as well as labels).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline import paths
from pipeline.config import GenerateParams
from pipeline.data.labels import LabelSet
from pipeline.errors import UserError
from pipeline.generate.backends import ChatBackend, make_backend
from pipeline.generate.capacity import check_capacity
from pipeline.generate.combinations import LLM, TEMPLATE, Combination, derive_seed, join_labels, plan_combinations
from pipeline.generate.journal import ROW_SCHEMA, Journal
from pipeline.generate.models import model_identity, resolve_model
from pipeline.generate.probe import check_decodes
from pipeline.generate.refine import BACKEND_ERROR, OFF_TOPIC, TOO_LONG, Outcome, caption_turns, drive, fill, reply_of
from pipeline.generate.templates import template_texts
from pipeline.generate.tokens import CLIP_CONTEXT, clip_token_count
from pipeline.io import write_parquet

log = logging.getLogger(__name__)

TEXTS_SCHEMA = {
    "text_id": pl.Utf8,
    "text": pl.Utf8,
    "labels": pl.List(pl.Utf8),
    "combination": pl.List(pl.Utf8),
    "source": pl.Utf8,
    "prompt": pl.Utf8,
    "model": pl.Utf8,
    "seed": pl.Int64,
    "n_tokens": pl.Int32,
    "combination_id": pl.Int64,
}
REPORT_SCHEMA = {
    "combination_id": pl.Int64,
    "caption_index": pl.Int32,
    "combination": pl.List(pl.Utf8),
    "source": pl.Utf8,
    "reason": pl.Utf8,  # too_long | empty | refusal | unparseable | off_topic | backend_error | duplicate
    "detail": pl.Utf8,
    "raw": pl.Utf8,  # the last raw answer (null for templates and unanswered requests)
    "attempts": pl.Int32,  # model calls spent on this caption
    "model": pl.Utf8,
}
MENTIONS_SCHEMA = {
    "label": pl.Utf8,
    "n_texts": pl.Int64,  # texts whose labels `mentions` would extend with this label
    "share": pl.Float64,  # of all kept texts
    "example": pl.Utf8,  # the first such text
}
DUPLICATE = "duplicate"
NAMING = ("all", "some", "none")  # which of its combination's labels a caption names
ABORT_AFTER_BACKEND_ERRORS = 25  # combinations in a row failing with backend_error: the servers are down


class GenerateError(UserError, RuntimeError):
    """The stage cannot produce a usable texts table."""


@dataclass
class GenerateSummary:
    combinations: int = 0
    llm_combinations: int = 0
    template_combinations: int = 0
    resumed: int = 0  # LLM combinations whose chats the journal answered whole (no model call)
    generated: int = 0  # LLM combinations that asked the model (or its server) this run
    texts: int = 0  # rows of texts.parquet
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count (report.parquet rows)
    llm_seconds: float = 0.0  # wall time of the LLM chats of this run
    seconds: float = 0.0
    fingerprint: str | None = None
    model: str | None = None

    llm_texts: int = 0  # rows of texts.parquet from the LLM (resumed ones included)
    llm_calls: int = 0  # model calls behind every LLM caption slot, kept or dropped (resumed ones included)
    mean_text_tokens: float = 0.0  # CLIP tokens of a kept text, start and end included
    mentions_would_change: int = 0  # texts whose labels the `mentions` rule would extend
    mentions_added: int = 0  # (text, label) pairs it would add
    llm_texts_naming: dict[str, int] = field(default_factory=dict)  # all | some | none -> kept LLM texts

    @property
    def llm_texts_per_s(self) -> float:
        """Kept LLM captions of this run per second of its LLM chats."""
        return 0.0 if not self.llm_seconds else self.new_llm_texts / self.llm_seconds

    new_llm_texts: int = 0  # kept LLM captions generated by this run

    def metrics(self) -> dict[str, float]:
        """Numbers worth a column in `dvc exp show` (reports/generate.json); the same for a resumed run."""
        n_dropped = sum(self.dropped.values())
        return {
            "n_combinations": self.combinations,
            "n_texts": self.texts,
            "n_llm_texts": self.llm_texts,
            "n_template_texts": self.texts - self.llm_texts,
            "n_dropped": n_dropped,
            "kept_share": self.texts / (self.texts + n_dropped) if self.texts + n_dropped else 0.0,
            "model_calls_per_llm_text": self.llm_calls / self.llm_texts if self.llm_texts else 0.0,
            "mean_text_tokens": self.mean_text_tokens,
            "n_texts_mentions_would_change": self.mentions_would_change,
            "share_texts_mentions_would_change": self.mentions_would_change / self.texts if self.texts else 0.0,
            "n_labels_mentions_would_add": self.mentions_added,
            # of the kept LLM texts: which of their combination's labels they name (generate.require_labels)
            **{
                f"share_llm_texts_naming_{k}_labels": (
                    self.llm_texts_naming.get(k, 0) / self.llm_texts if self.llm_texts else 0.0
                )
                for k in NAMING
            },
            "n_dropped_off_topic": self.dropped.get(OFF_TOPIC, 0),
        }


def text_id(text: str, source: str) -> str:
    return hashlib.sha256(f"{source}\x1f{text}".encode()).hexdigest()[:16]


def journal_meta(params: GenerateParams, labels: LabelSet, backend_identity: dict) -> dict:
    """What the journal fingerprint covers: every answer-changing input, no transport detail."""
    answer_params = dataclasses.asdict(params)
    for key in (
        "n_combinations",
        "llm_fraction",
        "templates",
        "use_synonyms",
        "n_threads",
        "model",
        "openai",
        "journal_every_s",
        "label_rule",
        "require_labels",
        "parallel",
    ):
        # combination i's answers do not depend on them (require_labels decides which are asked for: the
        # journal keeps every answer, and a chat is replayed from them); the model is in backend_identity,
        # and so are `parallel` and the group size where the backend batches
        answer_params.pop(key, None)
    answer_params.update(_group_params(params, backend_identity))
    return {
        "code": _answer_code_hash(),
        "generate": answer_params,
        "labels": {"names": list(labels.names), "synonyms": [list(s) for s in labels.synonyms]},
        "backend": backend_identity,
    }


def _group_params(params: GenerateParams, backend_identity: dict) -> dict:
    """What a batching backend's answers depend on besides the chat: the group a combination is decoded in
    (pipeline.generate.llama_batch). Groups follow from the plan (n_combinations, llm_fraction) and, step
    by step, from every chat of the group (require_labels decides which turns they ask): a journal of
    other values would resume answers that a fresh run decodes beside other turns, so it is not used.
    One combination per group (parallel 1), or a backend that does not batch: none of them matters."""
    if backend_identity.get("group", 1) <= 1:
        return {}
    return {
        "n_combinations": params.n_combinations,
        "llm_fraction": params.llm_fraction,
        "require_labels": params.require_labels,
    }


# The code that turns a combination into captions (sampling, parsing, the chat rules), beside this file.
ANSWER_CODE = ("combinations.py", "llama_batch.py", "loops.py", "parse.py", "refine.py", "sentence.py", "tokens.py")


def _answer_code_hash() -> str:
    """A hash of ANSWER_CODE: a change to it must not resume from captions the old code made (DVC reruns
    the stage; this stops the resume)."""
    digest = hashlib.sha256()
    for name in ANSWER_CODE:
        digest.update(Path(__file__).with_name(name).read_bytes())
    return digest.hexdigest()[:16]


def generate_texts(
    params: GenerateParams,
    labels: LabelSet,
    *,
    texts_path: str | Path = paths.TEXTS,
    report_path: str | Path = paths.GENERATE_REPORT,
    journal_dir: str | Path | None = None,
    mentions_path: str | Path | None = None,
    backend: ChatBackend | None = None,
    progress: bool = True,
) -> GenerateSummary:
    """Caption `params.n_combinations` random label combinations; write texts, report and journal.

    `backend` overrides the one `params` names (tests, benchmarks); it is not closed here.
    `mentions_path`, when given, receives the table of labels the `mentions` rule adds. `journal_dir`:
    where finished captions are journaled (default: the per-user paths.generate_journal_dir()).
    """
    started = time.perf_counter()
    check_capacity(params, labels)
    plan = plan_combinations(
        labels,
        seed=params.seed,
        n=params.n_combinations,
        max_labels=params.max_labels,
        llm_fraction=params.llm_fraction,
    )
    llm_plan = [c for c in plan if c.source == LLM]
    summary = GenerateSummary(len(plan), len(llm_plan), len(plan) - len(llm_plan))
    log.info(
        "%d combinations of 1..%d labels from %d labels: %d for the LLM, %d for templates",
        len(plan),
        min(params.max_labels, len(labels)),
        len(labels),
        len(llm_plan),
        summary.template_combinations,
    )

    rows = _template_rows([c for c in plan if c.source == TEMPLATE], labels, params)

    own_backend = False
    if llm_plan and backend is None:
        if params.backend == "llama_cpp":  # a native crash must not take the stage down (pipeline.generate.probe)
            model = resolve_model(params.model)
            check_decodes(
                model,
                repack_weights=params.repack_weights,
                n_threads=params.n_threads,
                model_sha256=model_identity(model)["sha256"],
            )
        backend = make_backend(params)
        own_backend = True
    try:
        identity = backend.identity() if llm_plan else {"backend": "none (templates only)"}
        journal = Journal(
            journal_dir or paths.generate_journal_dir(),
            journal_meta(params, labels, identity),
            every_s=params.journal_every_s,
        ).open()
        summary.fingerprint = journal.fingerprint
        if llm_plan:
            summary.model = backend.model_name
            rows += _llm_rows(llm_plan, params, labels, backend, journal, summary, progress)
        journal.prune()
    finally:
        if own_backend:
            backend.close()

    texts, report, mentions, n_changed = _assemble(rows, labels, params.label_rule)
    summary.texts = texts.height
    summary.llm_texts_naming = _naming_counts(texts.filter(pl.col("source") == LLM), labels)
    summary.mentions_would_change = n_changed
    summary.mentions_added = int(mentions["n_texts"].sum())
    _log_mentions(mentions, n_changed, texts.height, params.label_rule)
    if mentions_path is not None:
        write_parquet(mentions, mentions_path)
    summary.dropped = dict(Counter(report["reason"].to_list()))
    summary.llm_texts = int(texts.filter(pl.col("source") == LLM).height)
    summary.llm_calls = sum(row["attempts"] or 0 for row in rows if row["source"] == LLM)
    summary.mean_text_tokens = float(texts["n_tokens"].mean()) if texts.height else 0.0
    write_parquet(report, report_path)
    _log_drops(report, report_path)
    if texts.height == 0:
        fix = (
            "Check the backend settings (generate.backend, generate.model, generate.openai)"
            if OFF_TOPIC not in summary.dropped
            else "Use a model that names the labels it is given, or generate.require_labels none"
        )
        raise GenerateError(
            f"no caption was kept out of {len(plan)} combinations (drops by reason: {summary.dropped}); "
            f"see {report_path}. {fix}."
        )
    write_parquet(texts, texts_path)
    summary.seconds = time.perf_counter() - started
    log.info(
        "wrote %d texts to %s (%d dropped: %s) in %.1fs",
        texts.height,
        texts_path,
        report.height,
        summary.dropped or "none",
        summary.seconds,
    )
    return summary


# --------------------------------------------------------------------------------------- sources


def _template_rows(combos: list[Combination], labels: LabelSet, params: GenerateParams) -> list[dict]:
    rows = []
    for c in combos:
        for t in template_texts(
            c, labels, params.templates, n_captions=params.captions_per_combination, use_synonyms=params.use_synonyms
        ):
            n_tokens = clip_token_count(t.text)
            kept = n_tokens <= CLIP_CONTEXT
            rows.append(
                _row(
                    c,
                    t.caption_index,
                    t.template,
                    "template",
                    text=t.text if kept else None,
                    n_tokens=n_tokens if kept else None,
                    reason=None if kept else TOO_LONG,
                    detail="" if kept else f"{n_tokens} CLIP tokens > {CLIP_CONTEXT}",
                    raw=None,
                    attempts=0,
                    calls=[],
                )
            )
    return rows


def _row(c: Combination, caption_index: int, prompt: str, model: str | None, **values) -> dict:
    return {
        "combination_id": c.id,
        "caption_index": caption_index,
        "combination": list(c.labels),
        "source": c.source,
        "prompt": prompt,
        "model": model,
        "seed": c.seed,
        **values,
    }


def _outcome_rows(c: Combination, prompt: str, outcomes: list[Outcome], default_model: str) -> list[dict]:
    return [
        _row(
            c,
            o.caption_index,
            prompt,
            o.model or default_model,
            text=o.text,
            n_tokens=o.n_tokens,
            reason=o.reason,
            detail=o.detail,
            raw=o.raw,
            attempts=o.attempts,
            calls=list(o.calls),
        )
        for o in outcomes
    ]


def _llm_rows(
    plan: list[Combination],
    params: GenerateParams,
    labels: LabelSet,
    backend: ChatBackend,
    journal: Journal,
    summary: GenerateSummary,
    progress: bool,
) -> list[dict]:
    answered = _journaled_answers(journal.load(), {c.id: c for c in plan})
    log.info(
        "journal %s: %d of %d LLM combinations resumed from journaled answers, %d to caption with %s (%s)",
        journal.fingerprint,
        len(answered),
        len(plan),
        len(plan) - len(answered),
        backend.model_name,
        params.backend,
    )
    rows: list[dict] = []  # every chat runs, replayed from the journal where it can (require_labels may ask for more)

    def turns(c: Combination):
        """Combination c's chat as a generator of model calls (refine.caption_turns)."""
        return caption_turns(
            fill(first_prompt(c, params), c.words),
            seed=c.seed,
            n_captions=params.captions_per_combination,
            different_prompt=params.different_prompt,
            shorten_prompt=params.shorten_prompt,
            max_shorten_rounds=params.max_shorten_rounds,
            max_retries=params.max_retries,
            single_sentence=params.single_sentence,
            check=label_check(params.require_labels, labels, c.labels),
            answered=answered.get(c.id),
        )

    def work(c: Combination) -> tuple[str, list[Outcome]]:
        return fill(first_prompt(c, params), c.words), drive(turns(c), backend.chat)

    from tqdm import tqdm

    bar = tqdm(
        total=len(plan) * params.captions_per_combination,
        unit="text",
        desc="generate",
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    counts: Counter = Counter()
    failing_in_a_row = 0
    started = time.perf_counter()

    def finished(c: Combination, prompt: str, outcomes: list[Outcome]) -> list[dict]:
        """Count combination c's outcomes; its rows for the journal (none when resumed whole or failed)."""
        nonlocal failing_in_a_row
        new = _outcome_rows(c, prompt, outcomes, backend.model_name)
        rows.extend(new)
        failed = any(o.reason == BACKEND_ERROR for o in outcomes)
        if not failed and not any(o.fresh_calls for o in outcomes):
            summary.resumed += 1  # every answer came from the journal
            bar.update(len(outcomes))
            return []
        summary.generated += 1
        counts.update("kept" if o.kept else o.reason for o in outcomes)
        summary.new_llm_texts += sum(o.kept for o in outcomes)
        bar.update(len(outcomes))
        bar.set_postfix({k: v for k, v in sorted(counts.items())}, refresh=False)
        failing_in_a_row = failing_in_a_row + 1 if failed else 0
        if failing_in_a_row >= ABORT_AFTER_BACKEND_ERRORS:
            last = next(o.detail for o in outcomes if o.reason == BACKEND_ERROR)
            raise GenerateError(
                f"{failing_in_a_row} combinations in a row failed with backend errors (last: {last}); stopping. "
                "Check the server(s) in generate.openai.base_urls or generate.model; finished captions are kept in "
                "the journal and a rerun resumes from there"
            )
        return [] if failed else new  # a backend failure is not an answer: that combination is retried next run

    try:
        if hasattr(backend, "chat_group"):
            # fixed groups of `backend.group` combinations in plan order, each decoded together and journaled
            # whole: an answer depends on its group (pipeline.generate.llama_batch), which a resumed run rebuilds
            for group in _groups(plan, backend.group):
                outcomes = backend.chat_group([turns(c) for c in group])
                new = [
                    row
                    for c, o in zip(group, outcomes)
                    for row in finished(c, fill(first_prompt(c, params), c.words), o)
                ]
                if new:
                    journal.add(new, combinations=len({row["combination_id"] for row in new}))
        elif backend.concurrency <= 1:
            for c in plan:
                new = finished(c, *work(c))
                if new:
                    journal.add(new)
        else:
            with ThreadPoolExecutor(backend.concurrency, thread_name_prefix="generate") as pool:
                pending = {pool.submit(work, c): c for c in plan}
                try:
                    while pending:
                        ready, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                        for future in ready:
                            new = finished(pending.pop(future), *future.result())
                            if new:
                                journal.add(new)
                        journal.maybe_flush()
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
    finally:
        journal.flush()
        bar.close()
        summary.llm_seconds = time.perf_counter() - started
    log.info(
        "LLM: %d combinations asked the model in %.1fs (%s); %d answered whole by the journal",
        summary.generated,
        summary.llm_seconds,
        dict(counts),
        summary.resumed,
    )
    return rows


def _groups(plan: list[Combination], size: int) -> list[list[Combination]]:
    """The plan cut into consecutive groups of `size` combinations (the last may be smaller): a function of
    the plan alone, so every run of it makes the same groups."""
    return [plan[i : i + size] for i in range(0, len(plan), size)]


def label_check(require: str, labels: LabelSet, combination: tuple[str, ...]):
    """generate.require_labels as refine's `check`: why a caption names too few of `combination`, or None."""
    if require == "none":
        return None

    def check(text: str) -> str | None:
        named = [label for label in labels.find_in_text(text) if label in combination]
        if require == "any" and not named:
            return f"names none of {join_labels(combination)}"
        if require == "all" and len(named) < len(combination):
            missing = [label for label in combination if label not in named]
            said = join_labels(named) if named else "none"
            return f"names {said} of {join_labels(combination)}, not {join_labels(missing)}"
        return None

    return check


def _naming_counts(llm_texts: pl.DataFrame, labels: LabelSet) -> dict[str, int]:
    """How many texts name all, some or none of their combination's labels."""
    counts = Counter({k: 0 for k in NAMING})
    for text, combination in zip(llm_texts["text"].to_list(), llm_texts["combination"].to_list()):
        named = len(set(labels.find_in_text(text)) & set(combination))
        counts["all" if named == len(combination) else "some" if named else "none"] += 1
    return dict(counts)


def first_prompt(c: Combination, params: GenerateParams) -> str:
    """The paper's two instructions: `alt_prompt` for a seeded share `alt_prompt_fraction` of the combinations."""
    draw = derive_seed(c.seed, "alt_prompt") / 0x7FFFFFFF
    return params.alt_prompt if draw < params.alt_prompt_fraction else params.prompt


def _journaled_answers(journaled: pl.DataFrame, by_id: dict[int, Combination]) -> dict[int, dict]:
    """combination id -> {call key: Reply}, every answer the journal holds for a combination of this plan
    with the same labels (other ids are ignored)."""
    answered: dict[int, dict] = {}
    for row in journaled.select("combination_id", "combination", "source", "calls").iter_rows(named=True):
        c = by_id.get(row["combination_id"])
        if c is not None and tuple(row["combination"]) == c.labels and row["source"] == LLM:
            known = answered.setdefault(c.id, {})
            for record in row["calls"] or ():
                known.setdefault(record["key"], reply_of(record))
    return answered


# -------------------------------------------------------------------------------------- assemble


def _assemble(rows: list[dict], labels: LabelSet, label_rule: str = "combination") -> tuple[pl.DataFrame, ...]:
    """texts, report, the `mentions` table and how many texts `mentions` extends (whatever the rule)."""
    frame = pl.DataFrame(rows, schema=ROW_SCHEMA).sort("combination_id", "caption_index")
    kept = frame.filter(pl.col("text").is_not_null())
    label_order = labels.index
    added = []  # per kept row: the labels named in the text beyond its combination
    for text, combination in zip(kept["text"].to_list(), kept["combination"].to_list()):
        added.append([l for l in labels.find_in_text(text) if l not in combination])
    targets = [
        sorted(set(c) | set(a), key=label_order.__getitem__) if label_rule == "mentions" else list(c)
        for c, a in zip(kept["combination"].to_list(), added)
    ]
    kept = kept.with_columns(
        pl.Series(
            "text_id", [text_id(t, s) for t, s in zip(kept["text"].to_list(), kept["source"].to_list())], pl.Utf8
        ),
        pl.Series("labels", targets, pl.List(pl.Utf8)),
        pl.Series("_added", added, pl.List(pl.Utf8)),
    )
    first = kept.with_row_index("_row").group_by("text_id").agg(pl.col("_row").min().alias("_first"))
    kept = kept.with_row_index("_row").join(first, on="text_id", how="left").sort("_row")
    duplicates = kept.filter(pl.col("_row") != pl.col("_first"))
    kept_first = kept.filter(pl.col("_row") == pl.col("_first"))
    if duplicates.height:
        origin = kept_first.select(
            pl.col("text_id"), pl.col("combination_id").alias("_cid"), pl.col("caption_index").alias("_cap")
        )
        duplicates = (
            duplicates.join(origin, on="text_id", how="left")
            .sort("_row")
            .with_columns(
                pl.lit(DUPLICATE).alias("reason"),
                pl.format("same text as combination {} caption {}", "_cid", "_cap").alias("detail"),
                pl.coalesce("raw", "text").alias("raw"),
            )
        )
    texts = kept_first.select([pl.col(c).cast(t) for c, t in TEXTS_SCHEMA.items()])
    mentions = _mentions_table(kept_first.select("text", "_added"))
    n_changed = int((kept_first["_added"].list.len() > 0).sum())
    dropped = frame.filter(pl.col("text").is_null())
    report = pl.concat(
        [
            dropped.select([pl.col(c).cast(t) for c, t in REPORT_SCHEMA.items()]),
            duplicates.select([pl.col(c).cast(t) for c, t in REPORT_SCHEMA.items()])
            if duplicates.height
            else pl.DataFrame(schema=REPORT_SCHEMA),
        ]
    ).sort("combination_id", "caption_index")
    return texts, report, mentions, n_changed


def _mentions_table(kept: pl.DataFrame) -> pl.DataFrame:
    exploded = kept.with_row_index("_row").explode("_added").drop_nulls("_added")
    if exploded.height == 0:
        return pl.DataFrame(schema=MENTIONS_SCHEMA)
    return (
        exploded.group_by("_added")
        .agg(pl.len().cast(pl.Int64).alias("n_texts"), pl.col("text").sort_by("_row").first().alias("example"))
        .select(
            pl.col("_added").alias("label"),
            "n_texts",
            (pl.col("n_texts") / max(kept.height, 1)).alias("share"),
            "example",
        )
        .sort(["n_texts", "label"], descending=[True, False])
        .select([pl.col(c).cast(t) for c, t in MENTIONS_SCHEMA.items()])
    )


def _log_mentions(mentions: pl.DataFrame, n_changed: int, n_texts: int, label_rule: str, show: int = 8) -> None:
    verb = "adds" if label_rule == "mentions" else "would add (generate.label_rule is combination: not used)"
    log.info(
        "label rule %s; the mentions rule %s labels named in the text to %d of %d texts (%.1f%%)",
        label_rule,
        verb,
        n_changed,
        n_texts,
        100 * n_changed / max(n_texts, 1),
    )
    for row in mentions.head(show).iter_rows(named=True):
        log.info("  +%s in %d texts, e.g. %r", row["label"], row["n_texts"], row["example"][:100])


def _log_drops(report: pl.DataFrame, report_path: str | Path, examples: int = 3) -> None:
    if report.height == 0:
        return
    for reason, group in sorted(report.group_by("reason"), key=lambda kv: str(kv[0])):
        reason = reason[0] if isinstance(reason, tuple) else reason
        log.info("dropped %d caption(s): %s, e.g.:", group.height, reason)
        for row in group.head(examples).iter_rows(named=True):
            log.info("  combination %d %s: %s", row["combination_id"], row["combination"], (row["detail"] or "")[:160])
    log.info("every drop is listed in %s", report_path)
