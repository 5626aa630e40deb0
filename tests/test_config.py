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
    assert params.encode.model == "RN50" and params.encode.resolutions == (224, 448)
    assert params.train.epochs == 60 and params.train.batch_size == 64 and params.train.max_lr == 1e-4


@pytest.mark.parametrize(
    "change, key",
    [
        ({"train.radius": -1}, "train.radius"),
        ({"train.noise": "gaussian"}, "train.noise"),
        ({"train.epochs": "sixty"}, "train.epochs"),
        ({"encode.image_resolution": 300}, "encode.image_resolution"),
        ({"encode.engine": "spark"}, "encode.engine"),
        ({"encode.ray_address": ""}, "encode.ray_address"),
        ({"partial.known_proportion": 1.5}, "partial.known_proportion"),
        ({"fewshot.shots": 3}, "fewshot.shots"),
        ({"generate.prompt": "caption this"}, "generate.prompt"),
        ({"train.radiuss": 3}, "radiuss"),
        ({"evaluate.integrate_with": "nowhere.parquet"}, "evaluate.integrate_with"),
    ],
)
def test_bad_values_name_the_key(tmp_path, change, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(write_params(tmp_path, **change))


def test_settings_that_cannot_work_together_are_refused(tmp_path):
    with pytest.raises(ParamsError, match="both set"):
        load_params(write_params(tmp_path, **{"fewshot.shots": 4, "partial.known_proportion": 0.5}))
    with pytest.raises(ParamsError, match="encode.splits"):
        load_params(write_params(tmp_path, **{"fewshot.shots": 4, "encode.splits": ["test"]}))


def test_missing_params_file_says_where(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("stage", ["prepare", "train"])
def test_a_stage_with_bad_params_stops_before_any_work(tmp_path, stage):
    import subprocess
    import sys

    write_params(tmp_path, **{"train.noise": "gaussian"})
    result = subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py")], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "train.noise = 'gaussian'" in result.stderr and "surface" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "artifacts").exists()
