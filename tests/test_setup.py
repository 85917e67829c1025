"""`setup.py`: the sdist and wheel hold every module and config, and the
installed console script runs from a fresh venv.

This is what `--setup_file ./setup.py` ships to Dataflow workers: a module or
config missing from the sdist would only surface there, at job start.
The fresh venv gets the heavy third-party packages from the current venv
through a `.pth` file (a full dependency install takes minutes); the
project's own code must come from the wheel alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                              ".pytest_cache", ".hypothesis", "tests", "bench-output",
                              "demo-output", "models")


def _modules() -> set[str]:
    found = set()
    for package in ("pipelines", "transforms"):
        for folder, _dirs, files in os.walk(os.path.join(ROOT, package)):
            found |= {os.path.relpath(os.path.join(folder, f), ROOT).replace(os.sep, "/")
                      for f in files if f.endswith(".py")}
    return found


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, str]:
    """sdist and wheel built from a clean copy of the source (wheel via the sdist)."""
    tmp = tmp_path_factory.mktemp("dist")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                    str(tmp / "out"), str(src)], check=True, capture_output=True)
    files = os.listdir(tmp / "out")
    return {kind: str(tmp / "out" / next(f for f in files if f.endswith(ext)))
            for kind, ext in (("sdist", ".tar.gz"), ("wheel", ".whl"))}


def test_wheel_and_sdist_hold_every_module_and_config(dists):
    configs = {f"configs/{f}" for f in os.listdir(os.path.join(ROOT, "configs"))}
    assert configs and _modules()
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
    assert _modules() <= names, _modules() - names
    assert {f"pipelines/{c}" for c in configs} <= names  # found by name at runtime
    with tarfile.open(dists["sdist"]) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        names = {n[len(top) + 1:] for n in sdist.getnames()}
    assert _modules() | configs | {"setup.py", "requirements.txt"} <= names


def test_console_script_runs_from_a_fresh_venv(dists, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install",
                    "--no-deps", "--no-index", dists["wheel"]], check=True, env=env,
                   capture_output=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Third-party packages only: a plain path line does not run the editable
    # install hooks of the current venv, so `pipelines` cannot come from there.
    with open(os.path.join(site, "shared-deps.pth"), "w", encoding="utf-8") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")

    def run(*cmd):
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              check=True).stdout

    where = run(python, "-c", "import pipelines, transforms.embed.images as e; "
                "from pipelines.config import load_config, resolve_config_path; "
                "print(pipelines.__file__); print(e.__file__); "
                "print(resolve_config_path('dataflow')); print(load_config('dataflow').model)")
    pipelines_file, embed_file, config_file, model = where.split()
    for path in (pipelines_file, embed_file, config_file):
        assert path.startswith(site), (path, site)
    assert model == "clip-ViT-B-32"
    help_text = run(str(venv / "bin" / "clipdedup"), "--help")
    assert "usage: clipdedup" in help_text and "make-stand-in" in help_text
    assert "--config" in run(str(venv / "bin" / "clipdedup"), "run", "--help")
