"""One measurement per process: run a bench script's child, read back its result.

Each bench measures in a fresh subprocess so that peak memory is its own and
two runtimes' thread pools never share a process. The child prints one
`RESULT {json}` line (`emit`); the parent runs it and parses that line (`run`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "RESULT "


def median_seconds(fn, repeats: int, warm_up: bool = True) -> float:
    """Median wall time of `repeats` calls of `fn` (after one untimed call if `warm_up`)."""
    import statistics
    import time

    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def emit(result: dict) -> None:
    print(PREFIX + json.dumps(result), flush=True)


def run(script: str, argv: list[str], tree: str = ROOT) -> dict:
    """`python script *argv` in the checkout `tree` (default: this repository), its code
    first on the path; its last RESULT line. Exits with the child's output tail if it
    failed or printed no result."""
    env = dict(os.environ, PYTHONPATH=tree, TRANSFORMERS_VERBOSITY="error",
               PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, os.path.abspath(script), *argv], capture_output=True,
                          text=True, env=env, cwd=tree, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(PREFIX)]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"measurement failed: {os.path.basename(script)} {' '.join(argv)}")
    return json.loads(lines[-1][len(PREFIX):])
