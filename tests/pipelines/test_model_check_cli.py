"""`clipdedup run` with a model it cannot load: exit 2 and one line, at once
(issue 14: `clip-ViT-B-32` offline failed with a traceback after the whole
read pass)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import encode, random_image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _clipdedup(args: list[str], tmp_path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")}
    # An empty cache and a hub that refuses connections: the same on every machine.
    env.update(PYTHONPATH=ROOT, HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT="http://127.0.0.1:9")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)
    return done, time.monotonic() - started


@pytest.mark.parametrize("model,says", [
    ("clip-ViT-B-32", "model 'clip-ViT-B-32' cannot be loaded"),
    ("./models/clip-missing", "does not exist"),
])
def test_unloadable_model_exits_2_with_one_line_before_reading(model, says, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(encode(random_image(0)))
    done, seconds = _clipdedup(["run", "--input", str(images), "--model", model,
                                "--output", str(tmp_path / "out"), "--run-id", "r"], tmp_path)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("clipdedup: error:")]
    assert len(errors) == 1 and says in errors[0], done.stderr
    assert "--model PATH" in errors[0] and "make-stand-in" in errors[0]
    assert "Traceback" not in done.stderr and "ReadImages" not in done.stderr
    # pre-flight made the output folder to check it is writable; nothing is in it
    assert os.listdir(tmp_path / "out") == []
    assert seconds < 60  # interpreter and imports; no network retries
