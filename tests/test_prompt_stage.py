"""The prompt stage's params and its integration with the adapter: refusals that name the fix, the
peers' defaults, and the paper's integration rule checked to 1e-9 on hand-made scores."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import numpy as np
import polars as pl
import pytest

from pipeline.config import ParamsError, load_params
from pipeline.data.labels import LabelSet
from pipeline.evaluation.metrics import mean_ap
from pipeline.evaluation.results import write_evaluation
from pipeline.prompt.values import PEER_VALUES, resolved
from pipeline.settings import DenseSet, plan
from test_config import ROOT, write_params


def test_the_default_pipeline_runs_no_prompt_method():
    params = load_params(ROOT / "params.yaml")
    assert params.prompt.method == "none" and params.evaluate.integrate_with is None


@pytest.mark.parametrize(
    "change, says",
    [
        ({"prompt.method": "coop"}, "fewshot.shots"),  # CoOp learns from the support images
        ({"prompt.method": "dualcoop"}, "partial.known_proportion"),  # DualCoOp from partial labels
        ({"prompt.method": "dualcoop", "fewshot.shots": 4}, "partial.known_proportion"),
        ({"prompt.method": "taidpt", "encode.model": "open_clip:ViT-B-32/laion2b_s34b_b79k"}, "an OpenAI CLIP"),
        ({"prompt.method": "clip_adapter"}, "prompt.method = 'clip_adapter'"),
        ({"prompt.n_ctx": 0}, "prompt.n_ctx"),
        ({"prompt.lr": -1.0}, "prompt.lr"),
        ({"prompt.epochs": 0}, "prompt.epochs"),
        ({"prompt.class_specific": "yes"}, "prompt.class_specific"),
        ({"evaluate.integrate_with": "promt"}, "use 'prompt'"),
    ],
)
def test_a_peer_setting_that_makes_no_sense_is_refused_naming_the_fix(tmp_path, change, says):
    with pytest.raises(ParamsError, match=says.replace("(", r"\(").replace(")", r"\)")):
        plan(load_params(write_params(tmp_path, **change)))


def test_prompt_method_in_a_labels_only_project_is_refused(tmp_path):
    path = write_params(
        tmp_path, **{"prepare.dataset": "labels", "prepare.label_names": "labels.txt", "prompt.method": "taidpt"}
    )
    with pytest.raises(ParamsError, match="no images to score"):
        plan(load_params(path))


def test_a_bad_prompt_param_stops_the_stage_with_one_line(tmp_path):
    from e2e_project import stage_command, stage_env

    write_params(tmp_path, **{"prompt.method": "coop"})
    result = subprocess.run(stage_command("prompt"), cwd=tmp_path, env=stage_env(), capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "prompt.method = 'coop'" in result.stderr and "fewshot.shots" in result.stderr


def test_null_hyperparameters_take_the_peers_own():
    def hp(overrides: dict, dataset: str = "voc2007") -> dict:
        params = load_params(ROOT / "params.yaml", overrides)  # resolved for the dataset and the shots
        params = dataclasses.replace(params, prepare=dataclasses.replace(params.prepare, dataset=dataset))
        return resolved(params.prompt.method, params)

    coop = {"prompt.method": "coop"}
    assert hp({**coop, "fewshot.shots": 16}) == {
        "epochs": 200,
        "lr": 0.002,
        "batch_size": 32,
        "class_specific": False,
        "loss_weight": 1.0,
    }
    assert hp({**coop, "fewshot.shots": 1})["epochs"] == 50  # CoOp's rn50_ep50
    assert hp({**coop, "fewshot.shots": 4})["epochs"] == 100  # rn50_ep100
    dual = {"prompt.method": "dualcoop", "partial.known_proportion": 0.5, "prompt.lr": 0.002}
    assert hp(dual) == {**PEER_VALUES["dualcoop"].defaults, "lr": 0.002, "loss_weight": 0.03}
    assert hp({"prompt.method": "taidpt"}) == {**PEER_VALUES["taidpt"].defaults, "loss_weight": 1.0}
    # where a peer's config differs by dataset: TaI-DPT on NUS-WIDE, DualCoOp on COCO
    assert hp({"prompt.method": "taidpt"}, "nuswide")["lr"] == 0.001
    assert hp({"prompt.method": "taidpt"}, "nuswide")["image_spatial_scale"] == 4.0
    assert "image_spatial_scale" not in hp({"prompt.method": "taidpt"})  # the module's 40 (VOC and COCO configs)
    assert hp(dual, "coco2014")["lr"] == 0.002  # prompt.lr set: it wins
    assert hp({"prompt.method": "dualcoop", "partial.known_proportion": 0.5}, "coco2014")["lr"] == 0.002
    assert hp({"prompt.method": "dualcoop", "partial.known_proportion": 0.5})["lr"] == 0.001


@pytest.mark.parametrize("dataset, scale", [("nuswide", 4.0), ("voc2007", None)])
def test_a_peers_other_own_values_reach_its_method(monkeypatch, dataset, scale):
    """TaI-DPT's image softmax scale for NUS-WIDE (4, not the module's 40) travels from its values to the
    method's constructor through the setup the prompt stage builds; on VOC nothing is passed (the module's 40)."""
    import types

    from pipeline.prompt import taidpt, train_and_score

    class Captured(Exception):
        pass

    def capture(peer, prompt, dataset, labels, model, device, setup, fitting):
        raise Captured(setup)

    clip = types.SimpleNamespace(model=None, device="cpu", identity="clip")
    monkeypatch.setattr(train_and_score, "load_clip", lambda *args, **kwargs: clip)
    monkeypatch.setattr(train_and_score, "check_dense_model", lambda *args: None)
    monkeypatch.setattr(taidpt, "fit_taidpt", capture)
    params = load_params(ROOT / "params.yaml", {"prompt.method": "taidpt"})
    params = dataclasses.replace(params, prepare=dataclasses.replace(params.prepare, dataset=dataset))
    with pytest.raises(Captured) as captured:
        train_and_score.run_prompt_method(params, plan(params).peer, LabelSet.from_names(["cat", "dog"]))
    (setup,) = captured.value.args
    assert setup.get("image_spatial_scale") == scale


# ---- integration: per-class scaling (ours; the default, global, is in tests/test_peer_fidelity.py) -----


def test_integration_per_class_to_1e_9(tmp_path):
    """evaluate.integrate_scaling per_class (ours): the other method's scores min-max scaled to [0, 1] per
    label, averaged with the adapter's probabilities. Hand-made scores, a prompt-scores file in another row
    order, by-hand sums."""
    labels = LabelSet.from_names(["cat", "dog"])
    ids = ["i0", "i1", "i2", "i3"]
    adapter = np.array([[0.9, 0.1], [0.2, 0.7], [0.6, 0.4], [0.3, 0.8]])
    other = np.array([[12.0, -3.0], [4.0, 1.0], [8.0, -1.0], [20.0, 5.0]])  # logits, any range
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    # by hand: cat spans 4..20 (16), dog spans -3..5 (8)
    by_hand = np.array(
        [
            [(0.9 + (12 - 4) / 16) / 2, (0.1 + (-3 + 3) / 8) / 2],
            [(0.2 + (4 - 4) / 16) / 2, (0.7 + (1 + 3) / 8) / 2],
            [(0.6 + (8 - 4) / 16) / 2, (0.4 + (-1 + 3) / 8) / 2],
            [(0.3 + (20 - 4) / 16) / 2, (0.8 + (5 + 3) / 8) / 2],
        ]
    )
    order = [2, 0, 3, 1]
    pl.DataFrame({"image_id": [ids[i] for i in order], "cat": other[order, 0], "dog": other[order, 1]}).write_parquet(
        tmp_path / "scores.parquet"
    )
    metrics = write_evaluation(
        tmp_path / "eval",
        tmp_path / "eval.json",
        ids,
        adapter,
        targets,
        labels,
        integrate_with=str(tmp_path / "scores.parquet"),
        integrate_scaling="per_class",
    )
    from pipeline.evaluation.metrics import integrate

    np.testing.assert_allclose(integrate(adapter, other, "per_class"), by_hand, rtol=0, atol=1e-9)
    assert abs(metrics["integrated_map"] - mean_ap(by_hand, targets)) < 1e-9
    assert abs(metrics["other_map"] - mean_ap(other, targets)) < 1e-9
    assert json.loads((tmp_path / "eval.json").read_text())["integrated_map"] == metrics["integrated_map"]
    # the integration changes the ranking: it is not either method alone
    assert metrics["integrated_map"] not in (metrics["map"], metrics["other_map"])


def test_dense_features_are_encoded_only_for_the_methods_that_read_them():
    def sets(**overrides):
        return plan(load_params(ROOT / "params.yaml", overrides)).peer.dense

    assert sets() == () and sets(**{"prompt.method": "coop", "fewshot.shots": 4}) == ()
    assert sets(**{"prompt.method": "taidpt"}) == (DenseSet("test", 224),)
    assert sets(**{"prompt.method": "dualcoop", "partial.known_proportion": 0.3}) == (
        DenseSet("trainval", 448),
        DenseSet("test", 448),
    )


def test_a_clip_without_an_attention_pool_gets_one_line_naming_the_fix():
    from clip.model import CLIP

    from pipeline.encoding.dense import check_dense_model
    from pipeline.encoding.openai_clip import ClipError

    vit = CLIP(64, 64, 1, 64, 8, 77, 49408, 64, 1, 1)  # a tiny ViT: no attention pool, no dense map
    with pytest.raises(ClipError, match="use encode.model RN50"):
        check_dense_model(vit, "dualcoop")
