"""report.html of a generated run in a real headless browser (Debian `chromium`).

The set-up installs chromium with apt when it is missing and the tests run as
root; otherwise (or if the install fails) the tests are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from PIL import Image

from tools.report import browser


@pytest.fixture(scope="session")
def chromium() -> str:
    found = browser.find_chromium()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and "
                    "apt-get: `apt-get install -y chromium`)")
    try:
        subprocess.run("apt-get update -q && apt-get install -y -q chromium", shell=True,
                       check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"chromium could not be installed with apt-get: {exc}")
    return browser.find_chromium() or pytest.skip("apt-get installed no chromium binary")


def test_every_thumbnail_loads_and_nothing_errs(chromium, report_run):
    folder, summary = report_run
    page = folder / "report.html"
    seen = browser.check_page(str(page))
    assert seen["errors"] == [] and seen["console"] == []
    images = page.read_text().count("<img ")
    assert images > 0 and len(seen["images"]) == images
    assert all(width > 0 for width in seen["images"])
    bands = [f"band-{b:g}".replace(".", "_") for b in (0.999, 0.98, 0.95, 0.9)]
    assert {"counts", "histogram", "groups", "errors", "byte-copies", "shards", *bands
            } <= set(seen["sections"])
    assert seen["histogram_bars"] > 0 and seen["threshold_lines"] >= 2


def test_a_broken_or_external_picture_is_seen(chromium, tmp_path):
    """The probe itself: what the report test relies on it to notice."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><head></head><body>"
                    '<img src="data:image/jpeg;base64,AAAA"><img src="https://example.com/a.png">'
                    "</body></html>")
    seen = browser.check_page(str(page))
    assert seen["images"] == [0, 0]
    assert any("blocked img-src: https://example.com/a.png" in e for e in seen["errors"])
    assert any("failed to load <img> data:" in e for e in seen["errors"])


def test_screenshot(chromium, report_run, tmp_path):
    folder, _ = report_run
    png = browser.screenshot(str(folder / "report.html"), str(tmp_path / "r.png"), 1000, 1200)
    assert Image.open(png).size == (1000, 1200)
