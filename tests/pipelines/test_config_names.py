"""Bundled configs are found by name from any working directory."""

from __future__ import annotations

import os

import pytest

from pipelines.config import load_config, resolve_config_path


def test_bundled_configs_resolve_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("dataflow", "dataflow.yaml", "configs/dataflow.yaml"):
        assert os.path.basename(resolve_config_path(name)) == "dataflow.yaml"
    assert load_config("local").output == "out"
    assert load_config("dataflow").output is None  # a gs:// prefix must be given


def test_a_file_path_wins_and_a_missing_one_is_an_error(tmp_path):
    own = tmp_path / "dataflow.yaml"
    own.write_text("batch_size: 7\n")
    assert load_config(str(own)).batch_size == 7
    with pytest.raises(FileNotFoundError):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError):
        load_config("no-such-config")
