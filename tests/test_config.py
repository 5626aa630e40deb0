from pathlib import Path

import pytest
import yaml

from pipeline.config import ParamsError, load_params

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path, **changes):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in changes.items():
        section, key = dotted.split(".", 1)
        raw[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_repository_params_are_valid_and_typed():
    params = load_params(ROOT / "params.yaml")
    assert params.train.radius == 25.0 and params.train.noise == "surface"
    assert params.encode.model == "RN50" and (params.encode.image_resolution, params.encode.partial_resolution) == (224, 448)
    assert params.train.epochs == 60 and params.train.batch_size == 64 and params.train.max_lr == 1e-4


def test_the_paper_s_rules_are_the_defaults():
    params = load_params(ROOT / "params.yaml")
    assert params.fewshot.noise == "interior" and params.partial.image_noise == "interior"   # eq. 6: inside the ball
    assert params.partial.image_weight == 0 and params.partial.shift == "combination"        # texts only, eq. 9
    assert params.generate.label_rule == "combination" and params.evaluate.integrate_scaling == "other"
    for kind in ("surface", "interior", "ball"):
        assert load_params(ROOT / "params.yaml", {"train.noise": kind}).train.noise == kind


@pytest.mark.parametrize(
    "change, key",
    [
        ({"train.radius": -1}, "train.radius"),
        ({"train.noise": "gaussian"}, "train.noise"),
        ({"train.epochs": "sixty"}, "train.epochs"),
        ({"encode.image_resolution": 300}, "encode.image_resolution"),
        ({"partial.known_proportion": 1.5}, "partial.known_proportion"),
        ({"fewshot.shots": 3}, "fewshot.shots"),
        ({"generate.prompt": "caption this"}, "generate.prompt"),
        ({"train.radiuss": 3}, "radiuss"),
        ({"evaluate.integrate_with": "nowhere.parquet"}, "evaluate.integrate_with"),
        ({"train.noise": "gaussian"}, "train.noise"),
        ({"fewshot.noise": "gaussian"}, "fewshot.noise"),
        ({"partial.image_noise": "edge"}, "partial.image_noise"),
        ({"partial.shift": "per_image"}, "partial.shift"),
        ({"generate.label_rule": "found"}, "generate.label_rule"),
        ({"evaluate.integrate_scaling": "rank"}, "evaluate.integrate_scaling"),
    ],
)
def test_bad_values_name_the_key(tmp_path, change, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(write_params(tmp_path, **change))


def test_settings_that_cannot_work_together_are_refused(tmp_path):
    with pytest.raises(ParamsError, match="both set"):
        load_params(write_params(tmp_path, **{"fewshot.shots": 4, "partial.known_proportion": 0.5}))
    with pytest.raises(ParamsError, match=r"fewshot\.split = 'train' is not in prepare\.splits"):
        load_params(write_params(tmp_path, **{"fewshot.shots": 4, "fewshot.split": "train"}))


def test_missing_params_file_says_where(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("stage", ["prepare", "train"])
def test_a_stage_with_bad_params_stops_before_any_work(tmp_path, stage):
    import os
    import subprocess
    import sys

    write_params(tmp_path, **{"train.noise": "gaussian"})
    result = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert "train.noise = 'gaussian'" in result.stderr and "surface" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "artifacts").exists()
