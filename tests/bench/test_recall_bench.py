import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "recall.py"), "--rows", "50000", "--sample", "200",
         "--rounds", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "the same pairs" in out.stdout
    share = float(re.search(r"^ +pruned .* computing ([\d.]+) of the products", out.stdout,
                            re.M).group(1))
    assert share < 0.5
