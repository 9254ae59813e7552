from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from tests.conftest import REPO
from tuneline.config import ConfigError, TunelineConfig, apply_overrides, json_schema, load_config

# What params.yaml (the demo, `dvc repro`, the compiled pipeline) chooses over the built-in defaults: a real
# pretrained model, trained for a fixed number of steps sized to the bundled data. The defaults keep builtin:tiny,
# which needs no package and trains in seconds (the tests' model).
DEMO_CHOICES = {
    "model.base": "builtin:smollm2-135m",
    "eval.judge.model": "builtin:smollm2-135m",
    "train.epochs": 1.0,
    "train.max_steps": 24,
    "train.learning_rate": 0.001,
    "train.gradient_checkpointing": False,
    "train.logging_steps": 4,
    "train.eval_steps": 12,
    "train.save_steps": 12,
    "eval.max_new_tokens": 48,
}


def test_params_yaml_is_a_valid_instance_and_matches_the_defaults_but_for_the_demo_choices():
    cfg = load_config(REPO / "params.yaml")
    assert cfg == load_config(None, [f"{k}={json.dumps(v)}" for k, v in DEMO_CHOICES.items()])
    assert cfg != TunelineConfig()
    # every section the issue names is present in params.yaml (DVC tracks them by name)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert {"data", "clean", "split", "model", "lora", "train", "eval", "registry", "serve"} <= set(raw)


def test_committed_json_schema_is_fresh():
    assert (REPO / "params.schema.json").read_text() == json_schema(), "run `make schema`"
    assert (REPO / "params.yaml").read_text().startswith("# yaml-language-server: $schema=params.schema.json")


def test_unknown_key_names_its_path(tmp_path: Path):
    p = tmp_path / "params.yaml"
    p.write_text("clean:\n  near_dedup:\n    treshold: 0.9\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    assert "clean.near_dedup.treshold: unknown key" in str(exc.value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "split.strategy=alphabetical",
            "split.strategy: Input should be 'random', 'stratified', 'temporal' or 'group'",
        ),
        ("clean.near_dedup.threshold=1.5", "clean.near_dedup.threshold: Input should be less than 1"),
        ("split.ratios.train=0.9", "split.ratios: Value error, train + val + test must be 1.0, got 1.1"),
        ("split.strategy=temporal", "split: Value error, strategy 'temporal' needs split.field"),
        ("train.method=full", "train.method: Input should be 'qlora', 'lora', 'dpo' or 'kto'"),
        ("data.max_bad_fraction=lots", "data.max_bad_fraction: Input should be a valid number"),
        ("serve.github_api=http://ghe.internal/api/v3", "serve.github_api: Value error, must be an https:// URL"),
    ],
)
def test_invalid_values_fail_fast_with_key_and_allowed_values(override: str, expected: str):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    assert expected in str(exc.value)


def test_overrides_parse_yaml_values_and_create_nested_keys():
    data = apply_overrides({"split": {"seed": 1}}, ["split.seed=7", "split.ratios.train=0.5", "data.sources=[a, b]"])
    assert data == {"split": {"seed": 7, "ratios": {"train": 0.5}}, "data": {"sources": ["a", "b"]}}
    cfg = load_config(None, ["split.seed=7", "data.sources=[s3://b/x.jsonl]"])
    assert cfg.split.seed == 7
    assert cfg.data.sources[0].uri == "s3://b/x.jsonl" and cfg.data.sources[0].format == "auto"


@pytest.mark.parametrize("bad", ["split.seed", "=3", "split..seed=3", "split.seed.x=1"])
def test_malformed_overrides_are_rejected(bad: str):
    with pytest.raises(ConfigError):
        load_config(None, ["split.seed=3", bad] if bad == "split.seed.x=1" else [bad])


def test_config_is_immutable_and_schema_has_descriptions():
    cfg = TunelineConfig()
    with pytest.raises(ValidationError):
        cfg.split.seed = 3  # type: ignore[misc]
    schema = json.loads(json_schema())
    assert schema["$defs"]["NearDedupRule"]["properties"]["threshold"]["description"]
