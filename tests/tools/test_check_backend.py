"""check-backend: the comparison rule, and the command on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.cli import run as cli_run
from tests.conftest import encode, random_image, write_tar
from tools import check_backend as cb


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_identical_vectors_are_accepted():
    v = _unit(np.random.default_rng(0).normal(size=(20, 8)))
    a = cb.compare(v, v.copy(), duplicate=0.999, near=0.9)
    assert a.accepted and a.changed_pairs == 0 and a.min_cosine == pytest.approx(1.0)


def test_noisy_vectors_are_rejected_with_reasons():
    rng = np.random.default_rng(1)
    v = _unit(rng.normal(size=(30, 8)))
    noisy = _unit(v + rng.normal(scale=0.2, size=v.shape))
    a = cb.compare(v, noisy, duplicate=0.999, near=0.9)
    assert not a.accepted
    assert any("mean cosine" in r for r in a.reasons)


def test_pair_class_changes_are_counted():
    base = _unit(np.eye(4, 8) + 0.01)
    # rows 0 and 1 are duplicates under fp32 ...
    ref = base.copy()
    ref[1] = ref[0]
    cand = ref.copy()
    # ... and only near-duplicates under the candidate
    cand[1] = _unit((ref[0] + 0.3 * ref[2])[None])[0]
    a = cb.compare(ref, cand, duplicate=0.999, near=0.9, min_mean=0, min_min=0)
    assert a.fp32_duplicates == 1
    assert a.changed_pairs == 1
    assert not a.accepted  # 1% of 1 pair allows 0 changes


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        cb.compare(np.ones((2, 3)), np.ones((3, 3)), 0.999, 0.9)


def test_command_on_tiny_model(tiny_model, tmp_path, capsys):
    members = [(f"{i}.jpg", encode(random_image(i, (300, 200)))) for i in range(6)]
    members.append(("broken.jpg", b"not an image"))
    shard = write_tar(str(tmp_path / "s.tar"), members)
    status = cli_run(["-q", "check-backend", "--model", tiny_model, "--images", shard,
                      "--backend", "torch", "--json"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "on 6 images" in out and "ACCEPTED" in out and "STAND-IN" in out
    status = cli_run(["-q", "check-backend", "--model", tiny_model, "--images", shard,
                      "--backend", "torch-int8", "--min-mean-cosine", "1.01"])
    out = capsys.readouterr().out
    assert status == 1 and "REJECTED" in out
