from pathlib import Path

import pytest
import yaml

from pipeline.config import ParamsError, load_params
from pipeline.settings import plan

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
    assert params.encode.model == "RN50" and (params.encode.image_resolution, params.encode.partial_resolution) == (
        224,
        448,
    )
    assert (params.encode.precision, params.encode.runtime) == ("fp32", "auto")  # bf16 is an opt-in
    assert params.train.epochs == 60 and params.train.batch_size == 64 and params.train.max_lr == 1e-4


def test_the_paper_s_rules_are_the_defaults():
    params = load_params(ROOT / "params.yaml")
    assert params.fewshot.noise == "interior" and params.partial.image_noise == "interior"  # eq. 6: inside the ball
    assert params.partial.image_weight == 0 and params.partial.shift == "combination"  # texts only, eq. 9
    assert params.generate.label_rule == "combination" and params.evaluate.integrate_scaling == "global"
    for kind in ("surface", "interior", "ball"):
        assert load_params(ROOT / "params.yaml", {"train.noise": kind}).train.noise == kind


@pytest.mark.parametrize(
    "change, key",
    [
        ({"train.radius": -1}, "train.radius"),
        ({"train.noise": "gaussian"}, "train.noise"),
        ({"train.epochs": "sixty"}, "train.epochs"),
        ({"encode.image_resolution": 300}, "encode.image_resolution"),
        ({"encode.engine": "spark"}, "encode.engine"),
        ({"encode.ray_address": ""}, "encode.ray_address"),
        ({"encode.precision": "int8"}, "encode.precision"),
        ({"encode.runtime": "tensorrt"}, "encode.runtime"),
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
        plan(load_params(write_params(tmp_path, **{"fewshot.shots": 4, "partial.known_proportion": 0.5})))
    with pytest.raises(ParamsError, match=r"fewshot\.split = 'train' is not in prepare\.splits"):
        plan(load_params(write_params(tmp_path, **{"fewshot.shots": 4, "fewshot.split": "train"})))


def test_missing_params_file_says_where(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize("stage", ["prepare", "train"])
def test_a_stage_with_bad_params_stops_before_any_work(tmp_path, stage):
    import subprocess

    from e2e_project import stage_command, stage_env

    write_params(tmp_path, **{"train.noise": "gaussian"})
    result = subprocess.run(stage_command(stage), cwd=tmp_path, env=stage_env(), capture_output=True, text=True)
    assert result.returncode == 2
    assert "train.noise = 'gaussian'" in result.stderr and "surface" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "artifacts").exists()


def write_raw(tmp_path, dotted, text):
    """params.yaml with `dotted` set to `text` exactly as written (so YAML, not Python, reads it)."""
    path = write_params(tmp_path, **{dotted: "PLACEHOLDER"})
    path.write_text(path.read_text().replace("PLACEHOLDER", text))
    return path


@pytest.mark.parametrize(
    "key",
    [
        "train.radius",
        "train.max_lr",
        "fewshot.radius",
        "generate.temperature",
        "partial.known_proportion",
        "train.epochs",
    ],
)
@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", "1e999"])
def test_nan_and_infinity_are_refused_for_every_number(tmp_path, key, text):
    escaped = key.replace(".", r"\.")
    with pytest.raises(ParamsError, match=rf"{escaped} = .* is not a finite number: write a number"):
        load_params(write_raw(tmp_path, key, text))


def test_numbers_read_as_yaml_1_2_does_and_whole_floats_count_as_ints(tmp_path):
    # PyYAML reads 1e-4 as text; DVC (YAML 1.2) reads a number: both must mean the same run
    params = load_params(write_raw(tmp_path, "train.max_lr", "1e-4"))
    assert params.train.max_lr == 1e-4
    params = load_params(write_raw(tmp_path, "generate.n_combinations", "2e3"))
    assert params.generate.n_combinations == 2000 and isinstance(params.generate.n_combinations, int)
    with pytest.raises(ParamsError, match=r"train\.epochs = 2\.5 should be a whole number"):
        load_params(write_params(tmp_path, **{"train.epochs": 2.5}))


@pytest.mark.parametrize("text", ["1e12", "1000000000000", "1.0e+12"])
def test_a_combination_count_beyond_memory_is_refused_with_the_reason(tmp_path, text):
    with pytest.raises(ParamsError) as error:
        load_params(write_raw(tmp_path, "generate.n_combinations", text))
    message = str(error.value)
    assert "generate.n_combinations = 1000000000000" in message
    assert "1,000,000,000,000 captions, more than one run can hold in memory" in message
    assert "lower n_combinations" in message
    path = write_params(tmp_path, **{"generate.n_combinations": 1_000_001, "generate.captions_per_combination": 2})
    with pytest.raises(ParamsError, match="2,000,002 captions, more than"):
        load_params(path)
    params = load_params(
        write_params(tmp_path, **{"generate.n_combinations": 1_000_000, "generate.captions_per_combination": 2})
    )
    assert params.generate.n_combinations == 1_000_000
