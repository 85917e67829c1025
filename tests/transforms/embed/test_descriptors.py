"""Descriptors as embedders: their vector forms mean what the docs say, and each runs the whole CLI."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from pipelines.cli import exit_code
from tests.conftest import encode, random_image
from transforms.embed import descriptors
from transforms.phash import hash_bits
from transforms.records import DEFAULT_MAX_IMAGE_PIXELS


@pytest.fixture(autouse=True)
def _default_pixel_cap(monkeypatch):
    """Decoding sets Pillow's process-wide pixel cap (other tests lower it); skimage.data opens
    its photographs through Pillow, so they get the default back."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def _batch(n=6, size=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _encode(name, pixels):
    return descriptors.DescriptorHandler(name).load_model().encode_pixels(pixels)


@pytest.mark.parametrize("name", [descriptors.PHASH, descriptors.COLOR_HISTOGRAM, descriptors.HOG])
def test_vectors_are_unit_and_of_the_declared_width(name):
    v = _encode(name, _batch())
    assert v.shape == (6, descriptors.DIMS[name]) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_phash_cosine_is_one_minus_twice_the_hamming_fraction():
    pixels = np.stack([np.asarray(Image.fromarray(skimage.data.astronaut()).resize((64, 64))),
                       np.asarray(Image.fromarray(skimage.data.coffee()).resize((64, 64)))])
    v = _encode(descriptors.PHASH, pixels)
    bits = [hash_bits(np.asarray(Image.fromarray(p).convert("L").resize((32, 32),
                                 Image.Resampling.LANCZOS), np.float64)) for p in pixels]
    h = int((bits[0] != bits[1]).sum())
    assert h > 0 and np.isclose(v[0] @ v[1], 1 - 2 * h / 64)


def test_histogram_cosine_is_bhattacharyya_and_bounds_the_other_comparisons():
    pixels = _batch(8, 32, seed=3)
    pixels[4:] //= 2  # darker images: histograms that overlap partly
    p = descriptors.color_histograms(pixels)
    assert np.allclose(p.sum(axis=1), 1) and p.shape[1] == 512
    v = _encode(descriptors.COLOR_HISTOGRAM, pixels)
    for a in range(8):
        for b in range(8):
            bc = float(v[a] @ v[b])
            assert np.isclose(bc, np.sqrt(p[a] * p[b]).sum(), atol=1e-5)
            total_variation = 1 - np.minimum(p[a], p[b]).sum()  # 1 - intersection
            assert 1 - bc - 1e-5 <= total_variation <= np.sqrt(max(0.0, 1 - bc * bc)) + 1e-5
            s = p[a] + p[b]
            chi2 = (((p[a] - p[b]) ** 2)[s > 0] / s[s > 0]).sum()
            assert 2 * (1 - bc) - 1e-4 <= chi2 <= 4 * (1 - bc) + 1e-4
            centred = [x - x.mean() for x in (p[a], p[b])]
            correlation = np.corrcoef(p[a], p[b])[0, 1]
            assert np.isclose(centred[0] @ centred[1] / np.linalg.norm(centred[0])
                              / np.linalg.norm(centred[1]), correlation)


def test_hog_tells_a_copy_from_another_picture():
    base = np.asarray(Image.fromarray(skimage.data.camera()).convert("RGB").resize((96, 96)))
    other = np.asarray(Image.fromarray(skimage.data.coins()).convert("RGB").resize((96, 96)))
    noisy = np.clip(base.astype(int) + np.random.default_rng(0).integers(-8, 9, base.shape),
                    0, 255).astype(np.uint8)
    v = _encode(descriptors.HOG, np.stack([base, noisy, other]))
    assert v[0] @ v[1] > 0.9 > v[0] @ v[2]


def test_cnn_without_torchvision_or_weights_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(descriptors.WEIGHTS_ENV, raising=False)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(encode(random_image(0)))
    code = exit_code(["run", "--input", str(tmp_path / "in"), "--model", "resnet50",
                      "--output", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "resnet50" in err[0]
    assert "torchvision" in err[0] or "weights" in err[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("descriptor-data")
    for i, photo in enumerate(("astronaut", "camera", "coffee")):  # three unlike photographs
        img = Image.fromarray(getattr(skimage.data, photo)()).convert("RGB").resize((120, 90))
        (root / f"{i}.jpg").write_bytes(encode(img, quality=90))
        (root / f"{i}-half.png").write_bytes(encode(img.resize((60, 45)), "PNG"))
    return root


@pytest.mark.parametrize("name", [descriptors.PHASH, descriptors.COLOR_HISTOGRAM, descriptors.HOG])
def test_descriptor_runs_end_to_end_and_is_not_taken_for_clip(name, images, tmp_path):
    code = exit_code(["run", "--input", str(images), "--model", name, "--output", str(tmp_path),
                      "--run-id", "r", "--near-duplicate-threshold", "0.5", "-q"])
    assert code == 0
    run = tmp_path / "r"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == name and summary["model_kind"] == "descriptor"
    assert summary["embedding_dim"] == descriptors.DIMS[name]
    assert summary["model_is_stand_in"] is False
    emb = pd.read_parquet(run / "embeddings")
    assert len(emb) == 6 and set(emb["model"]) == {name}
    assert {len(e) for e in emb["embedding"]} == {descriptors.DIMS[name]}
    assert emb["phash"].notna().all()
    # each half-size copy is found with its original, by the embedding and by the hash
    near = pd.concat([pd.read_parquet(run / "duplicates.parquet"),
                      pd.read_parquet(run / "near_duplicates.parquet")])
    key = dict(zip(emb["record_id"], emb["key"].map(lambda k: os.path.basename(k)[0])))
    found = {key[a] for a, b in zip(near["record_id_a"], near["record_id_b"]) if key[a] == key[b]}
    assert found == {"0", "1", "2"}
    phash = pd.read_parquet(run / "phash_pairs.parquet")
    assert {(key[a], key[b]) for a, b in zip(phash["record_id_a"], phash["record_id_b"])} == {
        ("0", "0"), ("1", "1"), ("2", "2")}
    assert set(phash["signal"]) <= {"both", "phash"} and summary["counts"]["phash_pairs"] == 3
