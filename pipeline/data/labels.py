"""The label set: names, synonyms, and finding labels mentioned in a text.

Label table (Parquet, `labels.parquet`, written by `prepare`; `read_labels` reads it): `index`
(Int32, the logit position), `label` (Utf8, the name used in prompts and as a column name),
`synonyms` (List[Utf8], other words that mean the label, plurals included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from pipeline import paths
from pipeline.errors import UserError

LABEL_SCHEMA = {"index": pl.Int32, "label": pl.Utf8, "synonyms": pl.List(pl.Utf8)}


# Column names the tables beside the labels already use (scores: image_id; tai predict: path, predicted).
RESERVED_NAMES = ("image_id", "path", "predicted")


class LabelError(UserError, ValueError):
    """A label name that is not in the label set, or a malformed label file."""


@dataclass(frozen=True)
class LabelSet:
    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.synonyms):
            raise LabelError("names and synonyms differ in length")
        dupes = sorted({n for n in self.names if self.names.count(n) > 1})
        if dupes:
            raise LabelError(f"duplicate label names {dupes}: each label must appear once")

    @classmethod
    def from_names(cls, names, synonyms: dict[str, list[str]] | None = None) -> "LabelSet":
        synonyms = synonyms or {}
        return cls(tuple(names), tuple(tuple(synonyms.get(n, ())) for n in names))

    def __len__(self) -> int:
        return len(self.names)

    @cached_property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def check_known(self, labels, where: str) -> None:
        """Raise LabelError naming `where` for any label not in the set."""
        unknown = sorted(set(labels) - set(self.names))
        if unknown:
            raise LabelError(
                f"{where}: unknown label(s) {unknown[:10]}{' ...' if len(unknown) > 10 else ''}; "
                f"known labels are {list(self.names)[:30]}. Fix the spelling or add them to the label list."
            )

    @cached_property
    def _pattern(self) -> tuple[re.Pattern, dict[str, str]]:
        word_to_label: dict[str, str] = {}
        for name, syns in zip(self.names, self.synonyms):
            for word in (name, *syns):
                word_to_label.setdefault(word.lower(), name)
        for word, name in list(word_to_label.items()):  # names and synonyms first: they win over a plural
            for plural in regular_plurals(word):
                word_to_label.setdefault(plural, name)
        words = sorted(word_to_label, key=len, reverse=True)  # longest first: "dining table" before "table"
        pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for w in words) + r")(?![\w-])", re.IGNORECASE)
        return pattern, word_to_label

    def find_in_text(self, text: str) -> list[str]:
        """Labels whose name or a synonym occurs in `text` as a whole word (case-insensitive), in label order.

        A regular English plural counts too ("cats", "buses", "ponies", "dining tables"); an irregular
        one ("mice", "knives") only where it is listed as a synonym."""
        pattern, word_to_label = self._pattern
        found = {word_to_label[m.group(1).lower()] for m in pattern.finditer(text)}
        return [n for n in self.names if n in found]

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {"index": list(range(len(self))), "label": list(self.names), "synonyms": [list(s) for s in self.synonyms]},
            schema=LABEL_SCHEMA,
        )

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> "LabelSet":
        frame = frame.sort("index")
        return cls(tuple(frame["label"].to_list()), tuple(tuple(s) for s in frame["synonyms"].to_list()))

    @classmethod
    def read(cls, path: str | Path) -> "LabelSet":
        return cls.from_frame(pl.read_parquet(path))

    def multi_hot(self, label_lists) -> np.ndarray:
        """Rows of 0/1 (float32), one column per label."""
        out = np.zeros((len(label_lists), len(self)), dtype=np.float32)
        for row, labels in enumerate(label_lists):
            for label in labels:
                out[row, self.index[label]] = 1.0
        return out


def read_labels(dataset: str) -> LabelSet:
    """The label table `prepare` wrote for `dataset` (prepare.dataset)."""
    path = paths.labels_path(dataset)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no label table; run `dvc repro prepare` first")
    return LabelSet.read(path)


def label_key(name: str) -> str:
    """A label name as captions are matched against it: case and runs of spaces ignored."""
    return " ".join(name.lower().split())


def regular_plurals(word: str) -> tuple[str, ...]:
    """The regular plurals of a word or phrase (its last word): +s, +es, and consonant + y -> ies."""
    if not word or not word[-1].isalpha():
        return ()
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return (word[:-1] + "ies",)
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return (word + "es",)
    return (word + "s", word + "es") if word.endswith("o") else (word + "s",)


def read_label_file(path: str | Path) -> LabelSet:
    """A text file, one label per line, synonyms after ':' ("tv monitor: tv, television"); '#' starts a comment."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found; write one label per line, synonyms after ':'")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise LabelError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from e
    names, synonyms = [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, rest = line.partition(":")
        name = name.strip()
        if not name:
            raise LabelError(f"{path}:{lineno}: empty label name before ':'; write 'label: synonym, synonym'")
        if ":" in rest:
            raise LabelError(f"{path}:{lineno}: more than one ':' in {line!r}; write 'label: synonym, synonym'")
        if name in RESERVED_NAMES or "|" in name:
            raise LabelError(
                f"{path}:{lineno}: {name!r} cannot be a label name (a column of the scores tables, or "
                "the '|' that separates labels in a labels file): rename it"
            )
        if name in synonyms:
            raise LabelError(f"{path}:{lineno}: label {name!r} is listed twice; keep one line per label")
        same = next((n for n in names if label_key(n) == label_key(name)), None)
        if same is not None:
            raise LabelError(
                f"{path}:{lineno}: label {name!r} is {same!r} once case and spaces are ignored (captions "
                "are matched so, and could not tell them apart); keep one line per label"
            )
        names.append(name)
        synonyms[name] = [s.strip() for s in rest.split(",") if s.strip()]
    if not names:
        raise LabelError(f"{path}: no labels found; write one label per line")
    return LabelSet.from_names(names, synonyms)


VOC_SYNONYMS: dict[str, list[str]] = {
    "aeroplane": ["aeroplanes", "airplane", "airplanes", "plane", "planes", "aircraft", "jet", "jets"],
    "bicycle": ["bicycles", "bike", "bikes", "cycle", "cycles"],
    "bird": ["birds"],
    "boat": ["boats", "ship", "ships", "sailboat", "sailboats", "yacht", "yachts"],
    "bottle": ["bottles"],
    "bus": ["buses", "busses"],
    "car": ["cars", "automobile", "automobiles"],
    "cat": ["cats", "kitten", "kittens", "kitty"],
    "chair": ["chairs"],
    "cow": ["cows", "cattle"],
    "dining table": ["dining tables", "diningtable", "table", "tables"],
    "dog": ["dogs", "puppy", "puppies"],
    "horse": ["horses", "pony", "ponies"],
    "motorbike": ["motorbikes", "motorcycle", "motorcycles"],
    "person": [
        "persons",
        "people",
        "man",
        "men",
        "woman",
        "women",
        "boy",
        "boys",
        "girl",
        "girls",
        "child",
        "children",
    ],
    "potted plant": ["potted plants", "pottedplant", "houseplant", "houseplants"],
    "sheep": [],
    "sofa": ["sofas", "couch", "couches"],
    "train": ["trains"],
    "tv monitor": ["tv monitors", "tvmonitor", "tv", "tvs", "television", "televisions", "monitor", "monitors"],
}
VOC_LABELS = LabelSet.from_names(list(VOC_SYNONYMS), VOC_SYNONYMS)
