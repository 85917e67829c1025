import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "query.py"), "--sizes", "3000", "--dim", "32",
         "--repeats", "2", "--load-n", "1500", "--workdir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "source row first 100%" in out.stdout
    assert "load N=1,500 x 32 from Parquet into a RunIndex" in out.stdout
