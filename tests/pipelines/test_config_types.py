"""Config: every field's type and range is checked, from YAML and from flags alike."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from pipelines import config as config_module
from pipelines.config import Config, load_config


@pytest.mark.parametrize("yaml_text, message", [
    ('batch_size: "16"\n', "batch_size must be an integer, got '16'"),
    ('drop_near_duplicates: "no"\n', "drop_near_duplicates must be true or false, got 'no'"),
    ("inputs: data/shards/*.tar\n", "inputs must be a list of strings"),
    ("inputs: [data/a.tar, 3]\n", "inputs[1] must be a string, got 3"),
    ("max_image_pixels: 0\n", "max_image_pixels must be >= 1, got 0"),
    ("block_size: 2.5\n", "block_size must be an integer, got 2.5"),
    ("batch_size: -1\n", "batch_size must be >= 0, got -1"),
    ("num_output_shards: -2\n", "num_output_shards must be >= 0"),
    ("decode_timeout_s: 0\n", "decode_timeout_s must be > 0"),
    ("duplicate_threshold: .nan\n", "duplicate_threshold must be within (0, 1], got nan"),
    ("max_error_fraction: 1.5\n", "max_error_fraction must be within [0, 1]"),
    ("mode: fast\n", "mode must be one of auto, exact, approximate, distributed"),
    ("decode_overlap: 1\n", "decode_overlap must be one of auto, true, false, got 1"),
    ("key_column: 5\n", "key_column must be a string or null, got 5"),
    ("model: ''\n", "model must not be empty"),
    ("batch_size:\n", "batch_size must be an integer, got None"),
])
def test_wrong_types_and_ranges_in_yaml_are_one_line_errors_naming_the_file(
        tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError) as err:
        load_config(str(path))
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_every_wrong_field_is_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text('batch_size: "16"\nblock_size: 0\nnprobe: -1\n')
    with pytest.raises(ValueError, match="batch_size .*; block_size .*; nprobe "):
        load_config(str(path))


def test_a_string_is_never_split_into_characters():
    with pytest.raises(ValueError, match="inputs must be a list of strings"):
        Config(inputs="data/shards")
    assert Config(inputs=["a/*.tar", "b/"]).inputs == ("a/*.tar", "b/")
    assert Config().replace(inputs=["a", "b"]).inputs == ("a", "b")


def test_valid_yaml_values_keep_their_meaning(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("inputs:\n  - a/*.tar\n  - b/\ndrop_near_duplicates: no\n"
                    "decode_timeout_s: 5\nduplicate_threshold: 1\nembedding_dim: null\n"
                    "decode_overlap: auto\n")
    cfg = load_config(str(path))
    assert cfg.inputs == ("a/*.tar", "b/")
    assert cfg.drop_near_duplicates is False  # YAML's bare `no` is a boolean
    assert cfg.decode_timeout_s == 5.0 and isinstance(cfg.decode_timeout_s, float)
    assert cfg.duplicate_threshold == 1.0 and cfg.embedding_dim is None
    path.write_text("inputs:\n")
    assert load_config(str(path)).inputs == ()
    assert load_config("dataflow").output is None and load_config("local").inputs == ()


def test_flag_values_are_checked_like_yaml_values():
    with pytest.raises(ValueError, match="max_image_pixels must be >= 1"):
        Config().replace(max_image_pixels=0)
    with pytest.raises(ValueError, match="partition_size must be >= 1"):
        Config().replace(partition_size=0)


@pytest.mark.parametrize("yaml_text, line", [
    ("batch_size: 8\ninputs: [a.tar, b.tar\nmode: exact\n", 3),
    ("batch_size: 8\nmode: a: b\n", 2),
    ("\tbatch_size: 8\n", 1),
])
def test_malformed_yaml_is_one_line_with_file_and_line(tmp_path, yaml_text, line):
    path = tmp_path / "broken.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError) as err:
        load_config(str(path))
    text = str(err.value)
    assert text.startswith(f"{path}:{line}:") and "not valid YAML" in text
    assert "\n" not in text


def test_a_misspelt_key_gets_a_suggestion(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("batchsize: 8\n1: 2\n")
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        load_config(str(path))


def test_every_numeric_field_has_a_range():
    """A new int or float field must say what range it accepts."""
    hints = typing.get_type_hints(Config)
    numeric = {f.name for f in dataclasses.fields(Config)
               if {int, float} & set(typing.get_args(hints[f.name]) or (hints[f.name],))}
    assert numeric and numeric <= set(config_module._RANGES)
    assert set(config_module._RANGES) <= {f.name for f in dataclasses.fields(Config)}
