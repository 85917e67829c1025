import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "quality.py"), "--max-sources", "1",
         "--data", str(tmp_path / "set"), "--json", str(tmp_path / "q.json")],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TRANSFORMERS_VERBOSITY="error"))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "q.json").read_text())
    methods = [r["method"] for r in result["rows"]]
    assert methods[:4] == ["imagededup-style pHash", "cleanvision-style pHash (imagehash)",
                           "clipdedup phash signal", "clipdedup phash signal"]
    assert {"--model phash", "--model color-histogram", "--model hog",
            "CLIP stand-in (random weights)"} <= set(methods)
    for cnn in ("resnet50", "vgg16"):  # a row where torchvision and weights are here, else skipped
        assert (f"--model {cnn}" in methods) != (cnn in result["skipped"])
    rows = {(r["method"], r["rule"]): r for r in result["rows"]}
    stand_in = rows[("CLIP stand-in (random weights)", "cosine >= 0.9")]
    assert "MEANINGLESS" in stand_in["note"] and "MEANINGLESS" in out.stdout
    # a copy shown upright by EXIF: the peers hash the stored pixels and never find it
    ours = rows[("clipdedup phash signal", "Hamming <= 10")]["called_match_by_kind"]
    peer = rows[("imagededup-style pHash", "Hamming <= 10")]["called_match_by_kind"]
    assert ours["photo/exif-rotated"] == 1.0 and peer["photo/exif-rotated"] == 0.0
