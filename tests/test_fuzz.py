"""Fuzzed inputs (hypothesis): params.yaml values, label-name files, COCO instances JSON, VOC XML and
folder CSVs, each through the real stage entry (`pipeline.stage.run`, in-process).

Every generated input either works, with complete outputs, or stops with exit status 2 and one log
line naming the file or key (and, for the stage's checks, the fix). Never a traceback (any other
exception fails the test), never a partial output (a stopped stage leaves no artifacts/ folder).

Each test counts the inputs it tried and how each ended, prints the tally and asserts that both ends
were reached. Budget: about a minute for all five on a 2-core CI machine (`FUZZ_EXAMPLES`, derandomized:
CI tries the same inputs every time; HYPOTHESIS_PROFILE=deep tries many more, randomly)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path

import polars as pl
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import stages.prepare as prepare_stage
from pipeline.data.datasets import MANIFEST_SCHEMA
from pipeline.data.labels import LABEL_SCHEMA
from pipeline.stage import run

ROOT = Path(__file__).resolve().parents[1]
FUZZ_EXAMPLES = {"params": 250, "label_files": 150, "coco": 150, "voc": 100, "folder": 150}
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", deadline=None, max_examples=5000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(name: str) -> settings:
    deep = settings.default.max_examples if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 0
    return settings(max_examples=max(FUZZ_EXAMPLES[name], deep))


# ------------------------------------------------------------------------------------------- harness


class Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def scratch():
    """A fresh project folder as the working directory (hypothesis runs many inputs in one test)."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(before)


def run_stage(name: str, main, names: tuple[str, ...]) -> tuple[str, str | None]:
    """Run `main` as `pipeline.stage.run` does: ("works", None) or ("exit 2", the one line it logged).
    Any exception but SystemExit(2) propagates (a traceback: the test fails). `names` are the inputs'
    file names and keys, one of which the line must name."""
    errors = Errors()
    logger = logging.getLogger(name)
    logger.addHandler(errors)
    try:
        run(main, name)
    except SystemExit as e:
        assert e.code == 2, e.code
        assert len(errors.messages) == 1, errors.messages
        line = errors.messages[0]
        assert line.strip() and "\n" not in line and "Traceback" not in line, line
        assert any(n in line for n in names), f"the message names none of {names}: {line}"
        assert not Path("artifacts").exists(), "a stopped stage left outputs"
        return "exit 2", line
    finally:
        logger.removeHandler(errors)
    assert errors.messages == []
    return "works", None


def prepared_outputs(dataset: str, splits: tuple[str, ...]) -> None:
    """A finished prepare wrote everything: the label table and one manifest per split, with their schemas."""
    folder = Path("artifacts/data") / dataset
    labels = pl.read_parquet(folder / "labels.parquet")
    assert dict(labels.schema) == LABEL_SCHEMA and labels.height > 0
    assert labels["label"].n_unique() == labels.height
    for split in splits:
        manifest = pl.read_parquet(folder / f"{split}.parquet")
        assert dict(manifest.schema) == MANIFEST_SCHEMA
        assert manifest["image_id"].n_unique() == manifest.height


def prepare(params: dict) -> None:
    splits = params.get("splits") or ["test"]
    Path("params.yaml").write_text(
        yaml.safe_dump(
            {"prepare": params, "evaluate": {"split": splits[0]}, "zeroshot": {"split": splits[0]}}, allow_unicode=True
        )
    )


def tally_report(what: str, tally: Counter, minimum: int) -> None:
    print(f"\nfuzz {what}: {sum(tally.values())} inputs tried: {dict(tally)}")
    assert sum(tally.values()) >= minimum and tally["works"] and tally["exit 2"], tally


# -------------------------------------------------------------------------------------------- params

DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())
LEAVES = [(section, key) for section, body in DEFAULTS.items() for key in body]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "1e-4",
            "1e12",
            ".nan",
            "-1",
            "0",
            "3.0",
            "voc2007",
            "coco",
            "folder",
            "labels",
            "test",
            "trainval",
            "surface",
            "interior",
            "null",
            "{labels}",
            "RN50",
            "data/x.csv",
            "~",
            "",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def params_documents(draw) -> str:
    """params.yaml texts: the defaults with a few values, sections or keys changed, or any text."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.text(max_size=60))
    doc = json.loads(json.dumps(DEFAULTS))
    for _ in range(draw(st.integers(1, 3))):
        section, key = draw(st.sampled_from(LEAVES))
        change = draw(st.sampled_from(["value", "value", "value", "section", "unknown key", "drop key"]))
        if change == "value":
            doc.setdefault(section, {})
            if isinstance(doc[section], dict):
                doc[section][key] = draw(values)
        elif change == "section":
            doc[section] = draw(st.one_of(st.none(), st.lists(scalars, max_size=2), scalars, st.just({})))
        elif change == "unknown key" and isinstance(doc.get(section), dict):
            doc[section][draw(st.text(min_size=1, max_size=8))] = draw(scalars)
        elif isinstance(doc.get(section), dict):
            doc[section].pop(key, None)
    return yaml.safe_dump(doc, allow_unicode=True)


def test_fuzzed_params_yaml_works_or_exits_2_naming_the_key():
    tally: Counter = Counter()
    sections = tuple(f"{s}." for s in DEFAULTS) + tuple(DEFAULTS) + ("params.yaml",)

    @examples("params")
    @given(params_documents())
    def check(text):
        with scratch():
            Path("params.yaml").write_text(text)
            ran = []
            outcome, line = run_stage("fuzz-params", lambda params: ran.append(params), sections)
            assert (outcome == "works") == bool(ran)  # a stage never starts on bad params
            tally[outcome] += 1

    check()
    tally_report("params.yaml", tally, FUZZ_EXAMPLES["params"])


# -------------------------------------------------------------------------------------- label files

label_names = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10),
    st.sampled_from(["cat", "Cat", "cat ", " dog", "tv monitor", "ＣＡＴ", "🐱", "chat noir", "a|b", "image_id", "#x"]),
)
label_lines = st.one_of(
    label_names,
    st.builds(lambda n, syns: f"{n}: {', '.join(syns)}", label_names, st.lists(label_names, max_size=3)),
    st.builds(lambda a, b, c: f"{a}:{b}:{c}", label_names, label_names, label_names),
    st.sampled_from(["", "   ", "# a comment", ":", ",", "cat: ,, kitten,", "cat # the animal", "\t"]),
)


@st.composite
def label_files(draw) -> bytes:
    lines = draw(st.lists(label_lines, max_size=8))
    if lines and draw(st.booleans()):
        lines.append(draw(st.sampled_from(lines)))  # a duplicate
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode("utf-8")
    if draw(st.integers(0, 9)) == 0:
        data += draw(st.binary(max_size=6))  # not UTF-8 at all, maybe
    return data


def test_fuzzed_label_name_files_work_or_exit_2_naming_the_file():
    tally: Counter = Counter()

    @examples("label_files")
    @given(label_files())
    def check(data):
        with scratch():
            Path("names.txt").write_bytes(data)
            prepare({"dataset": "labels", "label_names": "names.txt"})
            outcome, _ = run_stage("prepare", prepare_stage.main, ("names.txt",))
            if outcome == "works":
                prepared_outputs("labels", ())
                names = pl.read_parquet("artifacts/data/labels/labels.parquet")["label"].to_list()
                assert all(n and n == n.strip() and "\ufeff" not in n and ":" not in n for n in names), names
            tally[outcome] += 1

    check()
    tally_report("label-name files", tally, FUZZ_EXAMPLES["label_files"])


# ---------------------------------------------------------------------------------------------- COCO

IMAGE_FILES = ("a.jpg", "b.jpg", "sub/c.jpg")
junk = st.one_of(
    st.none(),
    st.integers(-1, 9),
    st.text(max_size=4),
    st.floats(allow_nan=True),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
CATEGORY_NAMES = ["cat", "dog", "background", " cat", "Cat", "", "a|b", "image_id", "chat noir", "🐱"]
FILE_NAMES = [*IMAGE_FILES, "missing.jpg", "../a.jpg", "", ".", "sub/", "a"]
COCO_MUTATIONS = [
    "drop a list",
    "junk for a list",
    "empty a list",
    "drop a field",
    "junk in a field",
    "dangling category",
    "dangling image",
    "duplicate image id",
    "duplicate category id",
    "odd file name",
    "odd file name",
]


@st.composite
def coco_files(draw) -> str:
    """An instances file: a well-formed one (images, categories, annotations that fit together), then 0-3 of
    COCO_MUTATIONS: missing keys, wrong types, dangling ids, duplicate ids, empty lists; or not JSON."""
    if draw(st.integers(0, 14)) == 0:
        return draw(st.sampled_from(["", "{", "[]", "null", '{"images": [}', "NaN", "\ufeff{}"]))
    images = [{"id": i + 1, "file_name": name} for i, name in enumerate(IMAGE_FILES[: draw(st.integers(0, 3))])]
    names = draw(st.lists(st.sampled_from(CATEGORY_NAMES), min_size=1, max_size=3))
    categories = [{"id": cid, "name": name} for cid, name in zip((1, 3, 7), names)]
    annotations = [
        {
            "id": k,
            "image_id": draw(st.sampled_from([im["id"] for im in images])),
            "category_id": draw(st.sampled_from([c["id"] for c in categories])),
            "iscrowd": 0,
        }
        for k in range(draw(st.integers(0, 4)) if images else 0)
    ]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    for mutation in draw(st.lists(st.sampled_from(COCO_MUTATIONS), max_size=3)):
        key = draw(st.sampled_from(sorted(doc)))
        entries = doc[key] if isinstance(doc[key], list) else []
        entry = draw(st.sampled_from(entries)) if entries and all(isinstance(e, dict) for e in entries) else None
        if mutation == "drop a list":
            doc.pop(key)
        elif mutation == "junk for a list":
            doc[key] = draw(junk)
        elif mutation == "empty a list":
            doc[key] = []
        elif mutation == "drop a field" and entry:
            entry.pop(draw(st.sampled_from(sorted(entry))), None)
        elif mutation == "junk in a field" and entry:
            entry[draw(st.sampled_from(sorted(entry)))] = draw(junk)
        elif mutation == "dangling category" and annotations:
            annotations[0]["category_id"] = 99
        elif mutation == "dangling image" and annotations:
            annotations[0]["image_id"] = 99
        elif mutation == "duplicate image id" and len(images) > 1:
            images[1]["id"] = images[0].get("id")
        elif mutation == "duplicate category id" and len(categories) > 1:
            categories[1]["id"] = categories[0].get("id")
        elif mutation == "odd file name" and images:
            images[0]["file_name"] = draw(st.sampled_from(FILE_NAMES))
    return json.dumps(doc)


def test_fuzzed_coco_instances_work_or_exit_2_naming_the_file():
    tally: Counter = Counter()

    @examples("coco")
    @given(coco_files(), st.booleans())
    def check(text, keep_unannotated):
        with scratch():
            for name in IMAGE_FILES:
                Path("images", name).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (4, 4)).save(Path("images", name))
            Path("train.json").write_text(text)
            prepare(
                {
                    "dataset": "coco",
                    "root": "images",
                    "annotations": {"train": "train.json"},
                    "splits": ["train"],
                    "keep_unannotated": keep_unannotated,
                }
            )
            outcome, _ = run_stage("prepare", prepare_stage.main, ("train.json", "prepare."))
            if outcome == "works":
                prepared_outputs("coco", ("train",))
            tally[outcome] += 1

    check()
    tally_report("COCO instances JSON", tally, FUZZ_EXAMPLES["coco"])


# ----------------------------------------------------------------------------------------------- VOC

VOC_CLASSES = ["dog", "person", "diningtable", "tvmonitor", "Dog", " cat ", "dining table", "unicorn", ""]
voc_objects = st.lists(
    st.tuples(
        st.sampled_from(VOC_CLASSES) | st.none() | st.text(max_size=4),
        st.sampled_from(["0", "1", "2", " 1 ", "x", ""]) | st.none(),
    ),
    max_size=4,
)


def voc_xml(objects) -> str:
    parts = []
    for name, difficult in objects:
        name_tag = "" if name is None else f"<name>{_escape(name)}</name>"
        difficult_tag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        parts.append(f"<object>{name_tag}{difficult_tag}</object>")
    return f"<annotation><filename>x.jpg</filename>{''.join(parts)}</annotation>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def voc_annotations(draw) -> bytes:
    text = voc_xml(draw(voc_objects))
    form = draw(st.sampled_from(["whole", "whole", "whole", "cut", "garbage", "bom", "latin-1"]))
    if form == "cut":
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif form == "garbage":
        text = draw(st.text(max_size=30))
    data = text.encode("latin-1", errors="replace") if form == "latin-1" else text.encode("utf-8")
    return (b"\xef\xbb\xbf" + data) if form == "bom" else data


def test_fuzzed_voc_xml_works_or_exits_2_naming_the_file():
    tally: Counter = Counter()

    @examples("voc")
    @given(st.lists(voc_annotations(), min_size=1, max_size=2))
    def check(annotations):
        with scratch():
            root = Path("VOC2007")
            for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
                (root / sub).mkdir(parents=True)
            ids = [f"{i:06d}" for i in range(1, len(annotations) + 1)]
            for image_id, data in zip(ids, annotations):
                (root / "Annotations" / f"{image_id}.xml").write_bytes(data)
                Image.new("RGB", (4, 4)).save(root / "JPEGImages" / f"{image_id}.jpg")
            (root / "ImageSets/Main/test.txt").write_text("".join(f"{i}\n" for i in ids))
            prepare({"dataset": "voc2007", "root": "VOC2007", "splits": ["test"]})
            outcome, _ = run_stage("prepare", prepare_stage.main, tuple(f"{i}.xml" for i in ids))
            if outcome == "works":
                prepared_outputs("voc2007", ("test",))
            tally[outcome] += 1

    check()
    tally_report("VOC XML", tally, FUZZ_EXAMPLES["voc"])


# -------------------------------------------------------------------------------------- folder CSVs

FOLDER_FILES = ("a.jpg", "b.jpg", "sub/c.png")
CSV_MUTATIONS = [
    "drop a column",
    "rename a column",
    "extra column",
    "duplicate a row",
    "duplicate a path",
    "unknown split",
    "missing file",
    "empty cell",
    "unknown label",
    "odd labels",
    "ragged row",
    "image_id column",
    "no rows",
]


@st.composite
def folder_csvs(draw) -> bytes:
    """A labels CSV: a well-formed one (every image once, labels cat|dog, splits train and test), then 0-3 of
    CSV_MUTATIONS: missing or renamed columns, unknown splits, duplicate paths, ...; with or without a BOM;
    or bytes that are no CSV at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.binary(max_size=40))
    columns = ["path", "labels", "split"]
    rows = [
        [name, draw(st.sampled_from(["cat", "dog", "cat|dog", ""])), split]
        for name, split in zip(FOLDER_FILES, ("train", "test", draw(st.sampled_from(["train", "test"]))))
    ]
    for mutation in draw(st.lists(st.sampled_from(CSV_MUTATIONS), max_size=3)):
        row = draw(st.sampled_from(rows)) if rows else None
        if mutation == "drop a column" and columns:
            i = draw(st.integers(0, len(columns) - 1))
            columns.pop(i)
            for r in rows:
                r.pop(i) if i < len(r) else None
        elif mutation == "rename a column" and columns:
            i = draw(st.integers(0, len(columns) - 1))
            columns[i] = draw(st.sampled_from([f" {columns[i]} ", columns[i].upper(), "", columns[i] + "s"]))
        elif mutation == "extra column":
            columns.append(draw(st.sampled_from(["notes", "path", "split ", "image_id"])))
            for r in rows:
                r.append(draw(st.sampled_from(["x", "", "a.jpg"])))
        elif mutation == "duplicate a row" and row:
            rows.append(list(row))
        elif mutation == "duplicate a path" and row and len(rows) > 1:
            rows[-1][0] = rows[0][0]
        elif mutation == "unknown split" and row and len(row) > 2:
            row[2] = draw(st.sampled_from(["validation", " train", "TEST"]))
        elif mutation == "missing file" and row:
            row[0] = draw(st.sampled_from(["missing.jpg", "../a.jpg", "sub", " b.jpg "]))
        elif mutation == "empty cell" and row:
            row[draw(st.integers(0, len(row) - 1))] = ""
        elif mutation == "unknown label" and row and len(row) > 1:
            row[1] = draw(st.sampled_from(["bird", "cat|bird", "Cat"]))
        elif mutation == "odd labels" and row and len(row) > 1:
            row[1] = draw(st.sampled_from(["|", "cat||dog", " cat | dog ", "cat|cat", "🐱"]))
        elif mutation == "ragged row" and row:
            row.extend(["x", "y"]) if draw(st.booleans()) else row.pop()
        elif mutation == "image_id column":
            columns.append("image_id")
            for r in rows:
                r.append(draw(st.sampled_from(["", "x", "y"])))
        elif mutation == "no rows":
            rows = []
    buffer = io.StringIO()
    csv.writer(buffer).writerows([columns, *rows])
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + buffer.getvalue().encode("utf-8")


def test_fuzzed_folder_csvs_work_or_exit_2_naming_the_file_or_row():
    tally: Counter = Counter()

    @examples("folder")
    @given(folder_csvs(), st.sampled_from([["train"], ["train", "test"]]), st.booleans())
    def check(data, splits, with_names):
        with scratch():
            for name in FOLDER_FILES:
                Path("images", name).parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (4, 4)).save(Path("images", name))
            Path("labels.csv").write_bytes(data)
            Path("names.txt").write_text("cat\ndog\n")
            prepare(
                {
                    "dataset": "folder",
                    "root": "images",
                    "labels_file": "labels.csv",
                    "splits": splits,
                    "label_names": "names.txt" if with_names else None,
                }
            )
            outcome, _ = run_stage("prepare", prepare_stage.main, ("labels.csv", "names.txt", "prepare."))
            if outcome == "works":
                prepared_outputs("folder", tuple(splits))
            tally[outcome] += 1

    check()
    tally_report("folder CSVs", tally, FUZZ_EXAMPLES["folder"])
