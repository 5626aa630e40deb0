"""The paper's numbers (Tables 1-3, mAP %), kept once in `paper_targets.csv`, and the table cell a run's
setting matches: `tai report` prints the target beside a run's mean ± std, and a docs test checks
every number the docs quote against the file."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TARGETS_FILE = Path(__file__).with_name("paper_targets.csv")
DATASET_NAMES = {"voc2007": "VOC 2007", "coco2014": "MS-COCO", "nuswide": "NUS-WIDE"}
# The peer whose row a setting's table has (prompt.method -> the paper's row name).
PEER_OF_SETTING = {"partial": ("dualcoop", "DualCoOp"), "fewshot": ("coop", "CoOp"), "zeroshot": ("taidpt", "TaI-DPT")}


@dataclass(frozen=True)
class Target:
    table: int
    dataset: str  # prepare.dataset: voc2007 | coco2014 | nuswide
    setting: str  # partial | fewshot | zeroshot
    method: str  # the paper's row: TaI-Adapter, TaI-Adapter*, DualCoOp, CoOp, TaI-DPT, TaI-DPT*, CLIP, SARB
    key: str  # known share ("0.5", "avg"), shots ("16") or "" (Table 2)
    map: float  # mAP in %, as printed

    def label(self) -> str:
        where = {"partial": f", {self.key} known", "fewshot": f", {self.key} shots"}.get(self.setting, "")
        return f"Table {self.table}, {DATASET_NAMES[self.dataset]}{where}, {self.method}"


@lru_cache(maxsize=1)
def paper_targets() -> tuple[Target, ...]:
    lines = [line for line in TARGETS_FILE.read_text().splitlines() if line and not line.startswith("#")]
    return tuple(
        Target(int(r["table"]), r["dataset"], r["setting"], r["method"], r["key"], float(r["map"]))
        for r in csv.DictReader(lines)
    )


def lookup(dataset: str, setting: str, method: str, key: str = "") -> Target | None:
    for target in paper_targets():
        if (target.dataset, target.setting, target.method, target.key) == (dataset, setting, method, key):
            return target
    return None


def setting_of(params: dict) -> tuple[str, str]:
    """(setting, key) of a run's flattened params: partial labels by known share, few-shot by shots, else zero-shot."""
    known, shots = params.get("partial.known_proportion"), params.get("fewshot.shots") or 0
    if known not in (None, 0, 0.0):
        return "partial", f"{float(known):g}"
    if shots:
        return "fewshot", str(int(shots))
    return "zeroshot", ""


def target_for(params: dict, metric: str) -> Target | None:
    """The table cell a run's metric reproduces, or None where the paper has no such cell.

    eval.map is TaI-Adapter (Table 2 only: Tables 1 and 3 print the integrated row alone);
    eval.integrated_map is TaI-Adapter* when the peer of the setting is integrated (Table 1 DualCoOp,
    Table 3 CoOp); prompt.map (and eval.other_map when it is the prompt stage's) is that peer's row;
    zeroshot.map is Table 2's CLIP row."""
    dataset = params.get("prepare.dataset")
    if dataset not in DATASET_NAMES:
        return None
    setting, key = setting_of(params)
    method_param = params.get("prompt.method") or "none"
    peer_param, peer_row = PEER_OF_SETTING[setting]
    with_prompt = params.get("evaluate.integrate_with") == "prompt"
    row = None
    if metric == "eval.map" and setting == "zeroshot":
        row = "TaI-Adapter"
    elif metric == "eval.integrated_map" and with_prompt and method_param == peer_param and setting != "zeroshot":
        row = "TaI-Adapter*"
    elif (metric == "prompt.map" or (metric == "eval.other_map" and with_prompt)) and method_param == peer_param:
        row = peer_row
    elif metric == "zeroshot.map" and setting == "zeroshot":
        row = "CLIP"
    return lookup(dataset, setting, row, key) if row else None
