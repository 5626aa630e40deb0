"""The paper's numbers live once (pipeline/experiments/paper_targets.csv): every number the docs quote as the paper's equals that
file, `tai report` prints the matching cell beside a run's mean ± std, and the docs' prose pointers to README sections
name headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.experiments import summary as rp
from pipeline.experiments.paper_targets import DATASET_NAMES, lookup, paper_targets, target_for

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DATASET_OF = {name: key for key, name in DATASET_NAMES.items()}
# "89.0 (Table 2, VOC 2007, TaI-Adapter)" or "95.1 (Table 1, VOC 2007, TaI-Adapter\*, avg)"
CITATION = re.compile(r"(\d+\.\d) \(Table (\d), ([^,()]+), ([^,()]+?)(?:, ([^,()]+))?\)")
SETTING_OF_TABLE = {1: "partial", 2: "zeroshot", 3: "fewshot"}


def _key(table: int, header: str) -> str:
    """A targets table's column header as the file's key: "10%" -> "0.1", "16" -> "16", "avg", "mAP" -> ""."""
    if header.endswith("%"):
        return f"{int(header[:-1]) / 100:g}"
    return "" if header == "mAP" else header


def quoted_numbers() -> list[tuple[str, int, str, str, str, float]]:
    """(where, table, dataset, method, key, number) for every paper number the docs quote: the cells of each
    Markdown table whose header starts `| table | dataset | method |`, and every citation in the prose."""
    found = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            where = f"{page.relative_to(ROOT)}:{i + 1}"
            for number, table, dataset, method, key in CITATION.findall(line.replace("\\*", "*")):
                found.append((where, int(table), dataset, method, key or "", float(number)))
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and cells[:3] == ["table", "dataset", "method"]:
                header = cells[3:]
                for row in lines[i + 2 :]:
                    if not row.startswith("|"):
                        break
                    table, dataset, method, *values = [
                        c.strip().replace("\\*", "*") for c in row.strip().strip("|").split("|")
                    ]
                    for column, value in zip(header, values):
                        found.append((where, int(table), dataset, method, _key(int(table), column), float(value)))
    return found


def test_every_paper_number_the_docs_quote_equals_the_targets_file():
    quoted = quoted_numbers()
    assert len(quoted) > 90, "the targets tables of docs/tables.md were not found"
    wrong = []
    for where, table, dataset, method, key, number in quoted:
        target = lookup(DATASET_OF.get(dataset, dataset), SETTING_OF_TABLE[table], method, key)
        if target is None or target.table != table or target.map != number:
            wrong.append(
                f"{where}: Table {table}, {dataset}, {method}, {key!r} = {number} "
                f"(the file: {target.map if target else 'no such cell'})"
            )
    assert wrong == []


def test_a_line_saying_the_paper_reports_quotes_in_a_checked_form():
    """A number after "the paper reports" is checked only in a citation or a targets table: no other form."""
    loose = []
    for page in PAGES:
        for i, line in enumerate(page.read_text().splitlines()):
            if re.search(r"the paper reports \d", line, re.I) and not CITATION.search(line.replace("\\*", "*")):
                loose.append(f"{page.relative_to(ROOT)}:{i + 1}")
    assert loose == []


def test_the_targets_file_holds_tables_1_to_3_and_each_average_is_its_rows_mean():
    targets = paper_targets()
    assert len([t for t in targets if t.table == 1]) == 11 * 10
    assert len([t for t in targets if t.table == 2]) == 9 and len([t for t in targets if t.table == 3]) == 6 * 5
    for t in (t for t in targets if t.key == "avg"):
        row = [u.map for u in targets if (u.dataset, u.method, u.table) == (t.dataset, t.method, 1) and u.key != "avg"]
        assert len(row) == 9 and abs(np.mean(row) - t.map) <= 0.06, (t, np.mean(row))  # printed to one decimal


@pytest.mark.parametrize(
    "params, metric, expected",
    [
        ({"prepare.dataset": "voc2007", "fewshot.shots": 0, "partial.known_proportion": None}, "eval.map", 89.0),
        ({"prepare.dataset": "voc2007", "prompt.method": "taidpt"}, "prompt.map", 88.3),
        ({"prepare.dataset": "coco2014"}, "zeroshot.map", 49.7),
        (
            {
                "prepare.dataset": "voc2007",
                "partial.known_proportion": 0.5,
                "prompt.method": "dualcoop",
                "evaluate.integrate_with": "prompt",
            },
            "eval.integrated_map",
            95.3,
        ),
        (
            {"prepare.dataset": "nuswide", "partial.known_proportion": 0.1, "prompt.method": "dualcoop"},
            "prompt.map",
            54.0,
        ),
        (
            {
                "prepare.dataset": "coco2014",
                "fewshot.shots": 16,
                "prompt.method": "coop",
                "evaluate.integrate_with": "prompt",
            },
            "eval.other_map",
            59.8,
        ),
        (
            {
                "prepare.dataset": "coco2014",
                "fewshot.shots": 2,
                "prompt.method": "coop",
                "evaluate.integrate_with": "prompt",
            },
            "eval.integrated_map",
            70.7,
        ),
        # no table cell: the adapter alone in few-shot (Fig. 6b), integration with another method, 0% known, own data
        ({"prepare.dataset": "voc2007", "fewshot.shots": 16}, "eval.map", None),
        (
            {
                "prepare.dataset": "voc2007",
                "fewshot.shots": 16,
                "prompt.method": "taidpt",
                "evaluate.integrate_with": "prompt",
            },
            "eval.integrated_map",
            None,
        ),
        (
            {"prepare.dataset": "voc2007", "partial.known_proportion": 0, "prompt.method": "dualcoop"},
            "prompt.map",
            None,
        ),
        ({"prepare.dataset": "folder"}, "eval.map", None),
    ],
)
def test_a_runs_setting_finds_its_table_cell(params, metric, expected):
    target = target_for(params, metric)
    assert (target.map if target else None) == expected


def test_tai_report_prints_the_target_beside_the_mean():
    runs = [
        rp.Run(
            f"exp-{seed}",
            f"{seed:040x}",
            "experiment",
            {
                "prepare.dataset": "voc2007",
                "fewshot.shots": 16,
                "prompt.method": "coop",
                "evaluate.integrate_with": "prompt",
                "fewshot.seed": seed,
                "train.radius": radius,
            },
            {"eval.integrated_map": 0.90 + seed / 100, "eval.map": 0.8},
        )
        for seed in (0, 1)
        for radius in (25, 10)
    ]
    text = rp.markdown(rp.summarize(runs))
    rows = [line for line in text.splitlines() if line.startswith("| 1") or line.startswith("| 2")]
    assert len(rows) == 2 and all("[paper 93.9]" in row for row in rows), text
    assert all(row.count("[paper") == 1 for row in rows)  # eval.map alone is Fig. 6b: no cell
    assert "pipeline/experiments/paper_targets.csv" in text
    assert "[paper" not in rp.markdown(
        rp.summarize([rp.Run("a", "0" * 40, "experiment", {"prepare.dataset": "folder"}, {"eval.map": 0.5})])
    )


# ---- prose pointers to README sections -----------------------------------------------------------------

POINTER = re.compile(r"README(?:'s)? \"([^\"]+)\"|the README's ([A-Z][\w' ]+?) section|README ([A-Z][a-z]+) \"")


def test_every_pointer_to_a_readme_section_names_a_heading_that_exists():
    headings = {h.strip() for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", (ROOT / "README.md").read_text(), re.M)}
    stale = []
    for page in PAGES:
        for i, line in enumerate(page.read_text().splitlines()):
            for match in POINTER.finditer(line):
                name = next(g for g in match.groups() if g)
                if name not in headings:
                    stale.append(f"{page.relative_to(ROOT)}:{i + 1}: {name!r}")
    # a pointer broken across two lines ("README\nBenchmarks") is caught on the joined text too
    for page in PAGES:
        joined = re.sub(r"\s*\n\s*", " ", page.read_text())
        for match in re.finditer(r"README ([A-Z][a-z]+)\b(?! ?\()", joined):
            if match.group(1) not in {h.split()[0] for h in headings} and match.group(1) not in ("The", "A"):
                stale.append(f"{page.relative_to(ROOT)}: README {match.group(1)}")
    assert stale == []


def test_the_readme_and_the_docs_give_the_same_table_commands():
    """One set of commands: each `dvc exp run` line the README gives for Tables 1-3 is in docs/tables.md and
    docs/experiments.md verbatim, and tables.md gives no other."""

    def table_commands(path: Path) -> set[str]:
        lines = path.read_text().splitlines()
        return {
            line.strip()
            for i, line in enumerate(lines)
            if line.startswith("dvc exp run") and i and re.match(r"# Table [123] ", lines[i - 1])
        }

    readme = table_commands(ROOT / "README.md")
    assert len(readme) == 3
    assert table_commands(ROOT / "docs" / "tables.md") == readme
    assert table_commands(ROOT / "docs" / "experiments.md") == readme
