"""`tools.local_engine.run_launcher`: the launcher's peak memory is its own."""

import sys

import numpy as np
import pytest

from tools.local_engine import LocalEngine, run_launcher

MB = 2**20


def test_peak_is_not_the_parents():
    held = np.ones(1024 * MB // 8)  # what a bench holds while it starts the launcher
    held += 1
    rc, peak, _ = run_launcher([sys.executable, "-c", "import time; time.sleep(0.5)"])
    assert rc == 0 and peak < 200 * MB


def test_peak_counts_what_the_launcher_allocates():
    rc, peak, output = run_launcher(
        [sys.executable, "-c", "import numpy, time; a = numpy.ones(400 * 2**20 // 8); "
                               "a += 1; time.sleep(0.2); print('done')"])
    assert rc == 0 and output.strip() == "done"
    assert 400 * MB <= peak < 600 * MB


def test_exit_code_and_output_come_back():
    rc, _, output = run_launcher([sys.executable, "-c", "print('bad'); raise SystemExit(3)"])
    assert (rc, output.strip()) == (3, "bad")


def test_unknown_worker_kind_is_refused():
    with pytest.raises(ValueError, match="embedded"):
        LocalEngine(worker="docker")
