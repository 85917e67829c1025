"""Static checks of the worker Dockerfiles (no Docker engine is available here).

Dataflow requires the worker's apache-beam and Python minor version to equal
the launcher's; a pin bumped in requirements.txt but not in a Dockerfile
would only fail when workers start. These tests read the files: the Beam
image tags follow the pin, every COPY source exists, everything `setup.py`
reads is copied before `pip install .`, and the image ends on Beam's boot
program.
"""

from __future__ import annotations

import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILES = ["docker/Dockerfile.cpu", "docker/Dockerfile.gpu"]


def _beam_pin() -> str:
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as f:
        (pin,) = re.findall(r"^apache-beam\[gcp\]==([\d.]+)", f.read(), re.MULTILINE)
    return pin


def _instructions(path: str) -> list[tuple[str, str]]:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    rows = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in rows if line and not line.startswith("#")]


def _expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], value)


@pytest.mark.parametrize("path", DOCKERFILES)
def test_dockerfile_matches_the_pins_and_copies_what_setup_needs(path):
    steps = _instructions(path)
    args = {k: v for op, rest in steps if op == "ARG" and "=" in rest
            for k, v in [rest.split("=", 1)]}
    beam_images = [_expand(rest.split()[0], args) for op, rest in steps
                   if op == "FROM" and "beam_python" in rest]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert beam_images == [f"apache/beam_python{python}_sdk:{_beam_pin()}"], beam_images

    copied = []
    for op, rest in steps:
        if op == "COPY" and not rest.startswith("--from"):
            copied += rest.split()[:-1]
    for source in copied:
        assert os.path.exists(os.path.join(ROOT, source)), f"{path}: COPY {source} missing"
    install = next(i for i, (op, rest) in enumerate(steps)
                   if op == "RUN" and re.search(r"pip install .*--no-deps \.", rest))
    before = {s for op, rest in steps[:install] if op == "COPY" for s in rest.split()[:-1]}
    assert {"setup.py", "MANIFEST.in", "requirements.txt", "configs", "pipelines",
            "transforms"} <= before
    assert steps[-1] == ("ENTRYPOINT", '["/opt/apache/beam/boot"]')
    if path.endswith("gpu"):
        assert ("COPY", "--from=beam /opt/apache/beam /opt/apache/beam") in steps
        assert any(op == "RUN" and f"python{python}" in rest for op, rest in steps)
