"""The labelled set generator: seeded, every path decodable, labels as documented; and the P/R helper."""

import csv
import hashlib
import os

import pytest
from PIL import Image

from tools import labelled_set, quality_metrics
from transforms.decode import decode_image_and_hash
from transforms.phash import hamming
from transforms.records import DEFAULT_MAX_IMAGE_PIXELS


@pytest.fixture(autouse=True)
def _default_pixel_cap(monkeypatch):
    """Decoding sets Pillow's process-wide pixel cap (other tests lower it); skimage.data opens
    its photographs through Pillow, so they get the default back."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def _sources():
    found = labelled_set.find_sources()
    photos = [s for s in found if s.family == "photos"][:3]
    icons = [s for s in found if s.family.startswith("icons")][:2]
    assert len(photos) == 3  # skimage is a requirement: its photographs are always there
    return photos + icons


def _digest(folder):
    out = {}
    for name in sorted(os.listdir(folder / "images")):
        out[name] = hashlib.sha256((folder / "images" / name).read_bytes()).hexdigest()
    return out


def test_set_is_seeded_and_labelled_as_documented(tmp_path):
    sources = _sources()
    counts = labelled_set.build(str(tmp_path / "a"), seed=7, sources=sources)
    labelled_set.build(str(tmp_path / "b"), seed=7, sources=sources)
    labelled_set.build(str(tmp_path / "c"), seed=8, sources=sources)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    rows = quality_metrics.read_labels(str(tmp_path / "a" / "labels.csv"))
    with open(tmp_path / "a" / "labels.csv", newline="") as f:
        assert next(csv.reader(f)) == ["a", "b", "label"]
    per_source = len(labelled_set.VARIANTS)
    smaller = sum(1 for s in sources if s.smaller)
    assert counts["duplicate"] == 3 * len(sources)
    assert counts["near_duplicate"] == 3 * len(sources) + smaller
    families = {}
    for s in sources:
        families[s.family] = families.get(s.family, 0) + 1
    assert counts["different"] == sum(k * (k - 1) // 2 for k in families.values())
    assert len(rows) == per_source * len(sources) + smaller + counts["different"]
    for a, b, label in rows:
        assert os.path.isabs(a) and os.path.isfile(a) and os.path.isfile(b)
        if label == "different":
            assert labelled_set.variant_of(a) == labelled_set.variant_of(b) == "original"
        else:
            assert labelled_set.variant_of(a) == "original" != labelled_set.variant_of(b)


def test_exif_rotated_copies_show_the_original(tmp_path):
    sources = _sources()[:1]
    labelled_set.build(str(tmp_path), sources=sources)
    rows = quality_metrics.read_labels(str(tmp_path / "labels.csv"))
    (a, b), = [(a, b) for a, b, _ in rows if labelled_set.variant_of(b) == "exif-rotated"]
    ha = decode_image_and_hash(open(a, "rb").read())[3]
    hb = decode_image_and_hash(open(b, "rb").read())[3]
    assert hamming(ha, hb) <= 4


def test_precision_recall_counts_planted_answers():
    truth = [True, True, True, False, False]
    scores = [0.99, 0.95, 0.5, 0.96, 0.1]
    r = quality_metrics.precision_recall(scores, truth, 0.9)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 1, 1, 1)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    d = quality_metrics.precision_recall([0, 3, 12, 2], [True, True, False, False], 3, False)
    assert (d["tp"], d["fp"], d["fn"]) == (2, 1, 0)
    best = quality_metrics.best_f1(scores, truth)
    assert best["threshold"] == 0.5 and best["recall"] == 1.0
    assert [p["threshold"] for p in quality_metrics.sweep(scores, truth)] == sorted(scores)[::-1]
    assert quality_metrics.is_match(["duplicate", "near_duplicate", "different"]).tolist() == [
        True, True, False]
    nothing = quality_metrics.counts([False], [True])  # evaluate's counting: no ratio, no number
    assert nothing["precision"] is None and nothing["recall"] == 0.0


def test_labels_with_an_unknown_label_are_refused(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("a,b,label\nx,y,same\n")
    with pytest.raises(ValueError, match="unknown labels"):
        quality_metrics.read_labels(str(path))
