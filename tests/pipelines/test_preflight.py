"""Pre-flight checks: inputs, output and credentials are checked before anything starts."""

from __future__ import annotations

import os

import pytest

from pipelines import preflight
from pipelines.config import Config
from pipelines.jobs import execute
from pipelines.preflight import PreflightError


def _config(tmp_path, **changes) -> Config:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "a.tar").write_bytes(b"")
    return Config(inputs=(str(tmp_path / "data" / "*.tar"),),
                  output=str(tmp_path / "out")).replace(**changes)


def test_a_pattern_matching_nothing_fails_before_any_folder_is_made(tmp_path):
    config = _config(tmp_path, inputs=[str(tmp_path / "data" / "*.tar"),
                                       str(tmp_path / "nowhere" / "*.tar")])
    with pytest.raises(PreflightError, match=r"--input '.*/nowhere/\*\.tar' matches no files"):
        execute(config.replace(run_id="r"), [])
    assert not (tmp_path / "out").exists()


def test_an_empty_folder_is_named(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(PreflightError, match="is a folder with no files in it"):
        preflight.check_matches(str(tmp_path / "empty"))
    (tmp_path / "empty" / "sub" / "x.jpg").write_bytes(b"x")
    preflight.check_matches(str(tmp_path / "empty"))  # found below a sub-folder


def test_no_inputs_fail_before_any_folder_is_made(tmp_path):
    with pytest.raises(PreflightError, match="no inputs given"):
        execute(Config(output=str(tmp_path / "out")), [])
    assert not (tmp_path / "out").exists()


def test_the_write_probe_makes_the_folder_and_leaves_nothing_else(tmp_path):
    output = tmp_path / "a" / "b"
    preflight.check_writable(str(output))
    assert output.is_dir() and os.listdir(output) == []


def test_an_output_below_a_file_is_not_writable(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PreflightError, match=r"output .*/file/out is not writable"):
        preflight.check_writable(str(tmp_path / "file" / "out"))


def test_gs_without_credentials_fails_unless_no_auth(tmp_path, monkeypatch):
    """`--no_auth` (public buckets) is Beam's way to go without credentials."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    config = _config(tmp_path, model="gs://public-bucket/models/clip")
    with pytest.raises(PreflightError, match="gs://public-bucket/models/clip needs Google "
                                             "Cloud credentials"):
        preflight.check(config, [], embed=True)
    assert not (tmp_path / "out").exists()
    preflight.check(config, ["--no_auth"], embed=True)
    assert (tmp_path / "out").is_dir()
