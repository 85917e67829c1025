"""Config: how decoding is scheduled beside the model (decode_overlap)."""

from __future__ import annotations

import pytest

from pipelines.config import Config, load_config


def test_auto_overlaps_decoding_only_on_a_gpu():
    assert Config().decode_overlap == "auto"
    assert Config().decode_overlaps is False
    assert Config(device="cuda").decode_overlaps is True
    assert Config(device="cuda:1").decode_overlaps is True


def test_yaml_booleans_override_auto(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("decode_overlap: true\n")
    assert load_config(str(path)).decode_overlaps is True
    path.write_text("device: cuda\ndecode_overlap: false\n")
    assert load_config(str(path)).decode_overlaps is False


@pytest.mark.parametrize("value", ["yes please", "background", 2])
def test_other_values_are_rejected(value):
    with pytest.raises(ValueError, match="decode_overlap"):
        Config(decode_overlap=value)
