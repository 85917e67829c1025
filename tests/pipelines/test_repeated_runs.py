"""The whole CLI, run again and again in fresh processes: every exit code is 0
(issue 14: one `make demo` in ten printed its summary, then aborted with
`terminate called without an active exception`, exit 134)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import encode, random_image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(encode(random_image(i, (120, 90))))
    (folder / "copy.jpg").write_bytes(encode(random_image(0, (120, 90))))
    return folder


def _runs(times: int, images, tiny_model, tmp_path) -> list[tuple[int, str]]:
    outcomes = []
    for i in range(times):
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "run", "--input", str(images),
             "--model", tiny_model, "--output", str(tmp_path / "out"), "--run-id", f"r{i}", "-q"],
            capture_output=True, text=True, timeout=300,
            env=dict(os.environ, PYTHONPATH=ROOT, PYTHONFAULTHANDLER="1"))
        outcomes.append((done.returncode, done.stderr[-2000:]))
    return outcomes


def _check(outcomes, tmp_path):
    bad = [(i, rc, err) for i, (rc, err) in enumerate(outcomes) if rc != 0]
    assert not bad, f"{len(bad)} of {len(outcomes)} runs failed; first: {bad[0]}"
    assert not [err for _, err in outcomes if "terminate called" in err]
    assert all((tmp_path / "out" / f"r{i}" / "_SUCCESS").exists() for i in range(len(outcomes)))


def test_three_runs_all_exit_0(images, tiny_model, tmp_path):
    _check(_runs(3, images, tiny_model, tmp_path), tmp_path)


@pytest.mark.slow
def test_ten_runs_all_exit_0(images, tiny_model, tmp_path):
    _check(_runs(10, images, tiny_model, tmp_path), tmp_path)


# A native static destructor that aborts, run by exit() after the interpreter
# has finalized: what a C++ library's teardown does when one of its threads is
# still joinable (`terminate called without an active exception`).
_TEARDOWN_ABORTS = r"""
import atexit, ctypes, sys
libc = ctypes.CDLL(None)
libc.__cxa_atexit.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
libc.__cxa_atexit(ctypes.cast(libc.abort, ctypes.c_void_p), None, None)
marker, images, out = sys.argv[1], sys.argv[2], sys.argv[3]
atexit.register(lambda: open(marker, "w").write("atexit ran"))
sys.argv = ["clipdedup", "run", "--input", images, "--model", "/nonexistent/model", "--output", out]
print("printed before exit")
from pipelines.cli import main
main()
"""


def test_exit_code_does_not_depend_on_native_teardown(tmp_path):
    marker = tmp_path / "atexit"
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"never read: the model check fails first")
    done = subprocess.run([sys.executable, "-c", _TEARDOWN_ABORTS, str(marker), str(images),
                           str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 2, done.stderr[-2000:]  # the model error, not SIGABRT
    assert "clipdedup: error: model folder /nonexistent/model does not exist" in done.stderr
    assert done.stdout == "printed before exit\n"  # flushed into a pipe
    assert marker.read_text() == "atexit ran"  # Beam's clean-ups and logging's flush still run
