"""`clipdedup compare`: SSIM, the boxes around a planted edit, the picture, the model score."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines.cli import exit_code
from tests.conftest import encode, random_image
from tools import compare as cmp

PLANTED = (50, 40, 90, 70)  # x0, y0, x1, y1 (exclusive) of the painted rectangle


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture()
def pair(tmp_path):
    original = random_image(3, (160, 120))
    edited = original.copy()
    x0, y0, x1, y1 = PLANTED
    ImageDraw.Draw(edited).rectangle((x0, y0, x1 - 1, y1 - 1), fill=(20, 200, 40))
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(encode(original, quality=95))
    b.write_bytes(encode(edited, quality=95))
    return a, b


def test_planted_edit_is_boxed(pair, tmp_path, capsys):
    a, b = pair
    out = tmp_path / "diff.png"
    assert exit_code(["-q", "compare", str(a), str(b), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["boxes"], result
    best = max(_iou(box, PLANTED) for box in result["boxes"])
    assert best > 0.5, result["boxes"]
    assert 0 < result["ssim"] < 0.99
    assert result["cosine"] is None  # no model asked for
    picture = Image.open(out)
    assert picture.size == (3 * 160 + 2 * cmp.GAP, 120)
    # the box is drawn on both images: its outline colour sits on the planted rectangle's edge
    pixels = np.asarray(picture.convert("RGB"))
    x0, y0, x1, y1 = max(result["boxes"], key=lambda box: _iou(box, PLANTED))
    for left in (0, 160 + cmp.GAP):
        assert tuple(pixels[y0, left + (x0 + x1) // 2]) == cmp.BOX_COLOUR


def test_identical_images_have_ssim_one_and_no_boxes(pair):
    a, _ = pair
    c = cmp.compare(str(a), str(a))
    assert c.ssim == pytest.approx(1.0) and c.boxes == ()


def test_regions_of_a_map(tmp_path):
    full = np.ones((60, 80))
    assert cmp.regions(full) == []
    full[10:30, 20:50] = 0.3  # 600 px
    full[50:52, 70:72] = 0.3  # 4 px: below the minimum area
    assert cmp.regions(full) == [(20, 10, 50, 30)]
    assert cmp.regions(full, min_area=1) == [(20, 10, 50, 30), (70, 50, 72, 52)]


def test_different_sizes_are_compared_at_a_common_size(pair, tmp_path):
    a, _ = pair
    small = tmp_path / "small.png"
    Image.open(a).resize((80, 60), Image.Resampling.LANCZOS).save(small)
    c = cmp.compare(str(a), str(small), out=str(tmp_path / "d.png"))
    assert c.size_a == (160, 120) and c.size_b == (80, 60) and c.aligned_size == (80, 60)
    assert c.ssim > 0.95 and c.boxes == ()
    assert cmp.common_size((4000, 3000), (3000, 4000), max_side=1024) == (1024, 1024)
    assert cmp.common_size((160, 120), (90, 200)) == (90, 120)


def test_model_score_and_one_line_errors(pair, tiny_model, tmp_path, capsys):
    a, b = pair
    assert exit_code(["-q", "compare", str(a), str(a), "--model", tiny_model]) == 0
    out = capsys.readouterr().out
    assert "cosine 1.00000" in out and "STAND-IN" in out and "SSIM 1.00000" in out
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(a.read_bytes()[:150])
    assert exit_code(["-q", "compare", str(a), str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.jpg: cannot be decoded (" in err[0]
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (5, 5)).save(tiny)
    assert exit_code(["-q", "compare", str(tiny), str(tiny)]) == 2
    assert "too small for SSIM" in capsys.readouterr().err
