"""The Plan (pipeline/settings.py): each setting's decisions on known params, refusals that name the keys, and
the rule that keeps them in one place: no module below the Plan branches on a setting. Synthetic params, no
torch, no data."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pipeline.config import ParamsError, load_params
from pipeline.peers import PEERS
from pipeline.settings import FEW_SHOT, LABELS_ONLY, PARTIAL, ZERO_SHOT, DenseSet, ImageSet, Noise, plan

ROOT = Path(__file__).resolve().parents[1]


def planned(**overrides):
    return plan(load_params(ROOT / "params.yaml", overrides))


def test_zero_shot():
    p = planned(**{"train.radius": 7.5, "train.noise": "ball"})
    assert p.setting == ZERO_SHOT and p.text_noise == Noise(7.5, "ball") and p.text_shift is None
    assert p.image_noise is None and p.image_weight == 0 and p.training_images is None
    assert p.eval_resolution == 224 and p.evaluation_images == ImageSet("eval", "test", 224)
    assert p.encode == {"eval": (ImageSet("eval", "test", 224),), "support": (), "partial": ()}
    assert p.peer.name == "none" and p.peer.dense == ()
    assert set(p.off) == {"fewshot", "mask", "centroids", "prompt"}


def test_few_shot():
    p = planned(
        **{
            "fewshot.shots": 4,
            "fewshot.radius": 0.7,
            "fewshot.noise": "surface",
            "fewshot.image_weight": 0.25,
            "train.radius": 5.0,
            "prompt.method": "coop",
        }
    )
    support = ImageSet("support", "trainval", 224, support_only=True)
    assert p.setting == FEW_SHOT and p.text_noise == Noise(5.0, "surface") and p.image_noise == Noise(0.7, "surface")
    assert p.image_weight == 0.25 and p.training_images == support and p.eval_resolution == 224
    assert p.encode["support"] == (support,) and p.encode["partial"] == ()
    assert p.peer.train_images == support and p.peer.test_images == ImageSet("eval", "test", 224)
    assert set(p.off) == {"mask", "centroids"}


def test_partial_labels_texts_only_and_with_images():
    p = planned(
        **{"partial.known_proportion": 0.5, "partial.radius": 2.5, "train.radius": 25.0, "prompt.method": "dualcoop"}
    )
    trainval = ImageSet("partial", "trainval", 448)
    assert p.setting == PARTIAL and p.text_noise == Noise(2.5, "surface") and p.text_shift == "combination"
    assert p.image_noise is None and p.training_images == trainval  # centroids read it; train only when weighted
    assert p.eval_resolution == 448 and p.evaluation_images == ImageSet("eval", "test", 448)
    assert p.encode["eval"] == (ImageSet("eval", "test", 224), ImageSet("eval", "test", 448))
    assert p.encode["partial"] == (trainval,)
    assert p.peer.dense == (DenseSet("trainval", 448), DenseSet("test", 448))
    weighted = planned(
        **{
            "partial.known_proportion": 0.5,
            "partial.image_weight": 0.3,
            "partial.image_radius": 0.4,
            "partial.image_noise": "ball",
        }
    )
    assert weighted.image_noise == Noise(0.4, "ball") and weighted.image_weight == 0.3


def test_labels_only():
    p = planned(
        **{"prepare.dataset": "labels", "prepare.label_names": "l.txt", "prepare.root": "", "evaluate.split": "nowhere"}
    )
    assert p.setting == LABELS_ONLY and p.zeroshot_images is None and p.evaluation_images is None
    assert p.encode == {"eval": (), "support": (), "partial": ()}
    assert {"zeroshot", "evaluate", "fewshot", "mask", "centroids", "prompt"} <= set(p.off)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"fewshot.shots": 1, "prompt.method": "coop"},
        {"partial.known_proportion": 0.1, "prompt.method": "dualcoop"},
        {"partial.known_proportion": 0.3, "prompt.method": "taidpt", "zeroshot.split": "trainval"},
        {"partial.known_proportion": 0.3, "partial.image_weight": 0.5},
        {"fewshot.shots": 2, "prompt.method": "taidpt"},
    ],
)
def test_every_set_a_reader_reads_is_one_an_encode_stage_writes(overrides):
    p = planned(**overrides)
    written = {s for sets in p.encode.values() for s in sets}
    read = {p.zeroshot_images, p.evaluation_images, p.training_images, p.peer.train_images, p.peer.test_images} - {None}
    assert read <= written, read - written
    assert all(s.purpose == purpose for purpose, sets in p.encode.items() for s in sets)


@pytest.mark.parametrize(
    "overrides, keys",
    [
        ({"prompt.method": "coop"}, ["prompt.method = 'coop'", "fewshot.shots"]),
        (
            {"prompt.method": "dualcoop", "fewshot.shots": 4},
            ["prompt.method = 'dualcoop'", "partial.known_proportion", "coop", "taidpt"],
        ),
        ({"fewshot.shots": 4, "partial.known_proportion": 0.5}, ["fewshot.shots", "partial.known_proportion"]),
        ({"partial.known_proportion": 0.5, "encode.partial_resolution": None}, ["encode.partial_resolution"]),
        ({"partial.known_proportion": 0.5, "partial.split": "val"}, ["partial.split = 'val'", "prepare.splits"]),
        ({"prepare.dataset": "labels", "prepare.label_names": "l.txt", "prompt.method": "taidpt"}, ["prompt.method"]),
        ({"prepare.dataset": "labels", "prepare.label_names": "l.txt", "fewshot.shots": 2}, ["fewshot.shots"]),
    ],
)
def test_keys_that_cannot_work_together_are_named_with_the_fix(overrides, keys):
    params = load_params(ROOT / "params.yaml", overrides)  # each key is fine alone
    with pytest.raises(ParamsError) as refused:
        plan(params)
    assert all(key in str(refused.value) for key in keys), str(refused.value)


def test_config_checks_the_peer_name_against_the_peers_table():
    assert list(PEERS) == ["none", "coop", "dualcoop", "taidpt"]
    with pytest.raises(ParamsError, match=r"prompt\.method = 'clip_adapter' is not allowed: use one of \['none'"):
        load_params(ROOT / "params.yaml", {"prompt.method": "clip_adapter"})


# What the Plan and the spec tables decide, and nothing below them.
SETTING_BRANCHES = re.compile(r"\.fewshot\.enabled|\.partial\.enabled|\.method\s*[!=]=|has_images")
DECIDERS = {
    "pipeline/settings.py",
    "pipeline/peers.py",
    "pipeline/data/datasets/specs.py",
    "pipeline/data/dataset_kinds.py",
}


def test_no_module_below_the_plan_branches_on_a_setting():
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for folder in ("pipeline", "stages")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.relative_to(ROOT).as_posix() not in DECIDERS
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if SETTING_BRANCHES.search(line)
    ]
    assert found == []


def test_prompt_method_is_looked_up_once_by_the_plan():
    """open_clip's pattern: the Plan picks the peer's spec by name once; the stages and the prompt loop act on
    the spec (`plan.peer`), never on the name (config checks the name against PEERS)."""
    readers = sorted(
        {
            path.relative_to(ROOT).as_posix()
            for folder in ("pipeline", "stages")
            for path in (ROOT / folder).rglob("*.py")
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute)
            and node.attr == "method"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "prompt"
        }
    )
    assert readers == ["pipeline/settings.py"]


def test_a_stage_that_reads_no_plan_still_refuses_keys_that_cannot_work_together(tmp_path):
    """pipeline.stage.run makes the Plan before any stage: `prepare` reads none, and still stops first."""
    import subprocess

    from e2e_project import stage_command, stage_env
    from test_config import write_params

    write_params(tmp_path, **{"prompt.method": "coop"})
    result = subprocess.run(stage_command("prepare"), cwd=tmp_path, env=stage_env(), capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "prompt.method = 'coop'" in result.stderr and "fewshot.shots" in result.stderr
    assert not (tmp_path / "artifacts").exists()
