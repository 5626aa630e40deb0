"""One home for each default: params.yaml and the dataclasses of pipeline/config.py agree on every key.

A default written twice drifts (params.yaml once listed four templates where the dataclass had the
paper's one): a run without params.yaml, a test building `GenerateParams()`, and the shipped
params.yaml must mean the same pipeline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from pipeline.config import Params, load_params

ROOT = Path(__file__).resolve().parents[1]


def flat(obj, prefix: str = "") -> dict:
    """A params dataclass as {"section.key": value}, nested sections (generate.openai) flattened too."""
    out = {}
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        out.update(flat(value, key + ".") if dataclasses.is_dataclass(value) else {key: value})
    return out


def disagreements(params_yaml: Path) -> dict[str, tuple]:
    """key -> (params.yaml's value, the dataclass default) wherever they differ."""
    written, coded = flat(load_params(params_yaml)), flat(Params())
    return {k: (written[k], coded[k]) for k in coded if written[k] != coded[k]}


def yaml_keys(tree: dict, prefix: str = "") -> set[str]:
    """Every dotted key written in a YAML mapping, nested mappings' own keys included."""
    keys = set()
    for key, value in tree.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= yaml_keys(value, f"{prefix}{key}.")
    return keys


def test_every_params_yaml_value_is_its_dataclass_default():
    assert disagreements(ROOT / "params.yaml") == {}, "key: (params.yaml, pipeline/config.py)"


def test_every_dataclass_field_is_written_in_params_yaml():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert sorted(set(flat(Params())) - yaml_keys(raw)) == []


def test_a_changed_default_is_reported_with_both_values(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["radius"] = 10.0
    raw["generate"]["templates"].append("a photo of {labels}.")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert disagreements(path) == {
        "train.radius": (10.0, 25.0),
        "generate.templates": (
            ("there are {labels} in the photo.", "a photo of {labels}."),
            ("there are {labels} in the photo.",),
        ),
    }
