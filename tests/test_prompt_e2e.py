"""The paper's comparisons as commands, end to end on the tiny project (plumbing, never accuracy).
The baseline is few-shot with evaluate.integrate_with: prompt and no prompt method, run once; one
queued sweep then runs the grid prompt.method=none,coop (Table 3 with and without the star), TaI-DPT
on the same texts, and DualCoOp with partial labels (Table 1's star; choosing its epoch with prompt.select val), and `dvc exp show --json` has
prompt.map and eval.integrated_map for each method (no number where the method is none)."""

import json
import math
import os

import pytest

from e2e_project import commit, make_project, run, stages_run
from test_experiments_e2e import wait_for_experiments

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    """An embedding cache of its own: the tests that count what reaches CLIP must not find these images."""
    before = os.environ["TAI_CACHE_DIR"]
    os.environ["TAI_CACHE_DIR"] = str(tmp_path_factory.mktemp("peers-cache"))
    yield
    os.environ["TAI_CACHE_DIR"] = before


@pytest.fixture(scope="module")
def swept(tmp_path_factory, tiny_clip, private_cache):
    project = make_project(
        tmp_path_factory.mktemp("peers"),
        tiny_clip,
        **{"prompt.epochs": 2, "prompt.n_ctx": 4, "fewshot.shots": 2, "evaluate.integrate_with": "prompt"},
    )
    assert "prompt" in stages_run(run(project, "dvc", "repro").stdout)
    commit(project, "few-shot baseline, integrated with the prompt stage")
    run(project, "dvc", "exp", "run", "--queue", "-S", "prompt.method=none,coop,taidpt")
    run(
        project,
        "dvc",
        "exp",
        "run",
        "--queue",
        "-S",
        "prompt.method=dualcoop",
        "-S",
        "fewshot.shots=0",
        "-S",
        "partial.known_proportion=0.5",
        "-S",
        "prompt.select=val",
    )
    run(project, "dvc", "queue", "start", "-j", "2")
    states = wait_for_experiments(project, timeout_s=900)
    assert "failed" not in states.values(), states
    return experiments(json.loads(run(project, "dvc", "exp", "show", "--json").stdout))


def experiments(shown: list) -> dict[str, dict]:
    """prompt.method -> {metrics file: its data} of each experiment, read from `dvc exp show --json`
    itself (tai report's collect_runs would fold the none run into the identical baseline)."""
    found = {}
    for top in shown:
        for group in top.get("experiments") or []:
            for entry in group.get("revs") or []:
                data = entry["data"]
                method = data["params"]["params.yaml"]["data"]["prompt"]["method"]
                found[method] = {path: content.get("data", {}) for path, content in data["metrics"].items()}
    return found


def test_the_grid_none_coop_fills_the_peer_columns(swept):
    assert set(swept) == {"none", "coop", "taidpt", "dualcoop"}
    coop, none = swept["coop"], swept["none"]
    prompt, evaluated = coop["reports/prompt.json"], coop["reports/eval.json"]
    for value in (prompt["map"], evaluated["integrated_map"], evaluated["other_map"], evaluated["map"]):
        assert math.isfinite(value)
    assert evaluated["other_map"] == prompt["map"]
    assert prompt["epochs"] == 2 and 0 < prompt["n_train"] < 16  # the support images of trainval
    # none: no number where no method exists (a 0 would read as a score; DVC shows "-"), the rest filled
    assert none["reports/prompt.json"].get("map") is None and none["reports/eval.json"].get("integrated_map") is None
    assert math.isfinite(none["reports/eval.json"]["map"]) and none["reports/prompt.json"]["n_train"] == 0


def test_taidpt_trains_on_the_texts_and_dualcoop_on_the_partial_labels(swept):
    taidpt, dualcoop = swept["taidpt"], swept["dualcoop"]
    # the generated texts and TaI-DPT's own template sentences (prompt.taidpt_templates, 89 per label)
    report = taidpt["reports/prompt.json"]
    assert report["n_template_texts"] > 0 and report["n_template_texts"] % 89 == 0
    assert report["n_train"] == taidpt["reports/generate.json"]["n_texts"] + report["n_template_texts"]
    # prompt.select val: 20% of the 16 partially labelled images held out (never test) to pick the epoch
    assert (
        dualcoop["reports/prompt.json"]["n_train"] == 16 - 3 and dualcoop["reports/prompt.json"]["class_specific"] == 1
    )
    assert dualcoop["reports/prompt.json"]["selected_epoch"] in (1, 2)
    assert dualcoop["reports/eval.json"]["image_resolution"] == 128  # scored where the partial-label adapter is
    for files in (taidpt, dualcoop):
        assert math.isfinite(files["reports/prompt.json"]["map"]) and math.isfinite(
            files["reports/eval.json"]["integrated_map"]
        )
        assert files["reports/prompt.json"]["n_images"] == files["reports/eval.json"]["n_images"]
