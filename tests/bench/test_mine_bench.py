import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "mine.py"), "--n-exact", "600", "--n-approx", "3000",
         "--dim", "32", "--recall-sample", "300", "--workdir", str(tmp_path), "--skip-launcher",
         "--dense-n", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert "identical: True" in out.stdout
    assert "sampled recall" in out.stdout


def test_bench_dense_cluster_reports_job_and_launcher_memory(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "mine.py"), "--n-exact", "0", "--n-approx", "0",
         "--dim", "16", "--dense-n", "800", "--dense", "60", "--workdir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if "clipdedup mine exact" in ln)
    launcher, engine, idle = (float(m) for m in re.search(
        r"launcher +(\d+) MB peak, engine +(\d+) MB peak \((\d+) MB idle\)", line).groups())
    assert launcher > 0 and 0 < idle <= engine
    pairs = int(re.search(r"; ([\d,]+) pairs", line).group(1).replace(",", ""))
    assert pairs >= 60 * 59 // 2  # every pair of the dense cluster, at least
    assert int(re.search(r"largest component (\d+)", line).group(1)) >= 60
