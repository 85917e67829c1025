import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "mine.py"), "--n-exact", "600", "--n-approx", "3000",
         "--dim", "32", "--recall-sample", "300", "--workdir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "identical: True" in out.stdout
    assert "sampled recall" in out.stdout
