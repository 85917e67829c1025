"""Looking at a report in a real browser: headless Debian `chromium`.

    python -m tools.report.browser demo-output/runs/<run_id>/report.html docs/report.png

`screenshot` writes a PNG of a page (`make report-screenshot`); `check_page`
loads a copy of a page with a probe script and a Content-Security-Policy that
allows only inline styles, `data:` images and the probe, and returns what the
probe saw once the page had loaded: every image's `naturalWidth`, the
section ids, whether the histogram has bars, and every error (a failed
image, a script error, `console.error`, a blocked fetch of anything outside
the page: a self-contained page has none).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", "--disable-background-networking"]

# Runs first in <head>: records errors, then reports at `load` into <pre id="probe">.
PROBE = """
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:;
 style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<script>
window.__probe = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  __probe.push(t && t.tagName ? 'failed to load <' + t.tagName.toLowerCase() + '> '
               + String(t.src || t.href || '').slice(0, 80) : 'error: ' + e.message);
}, true);
document.addEventListener('securitypolicyviolation', function (e) {
  __probe.push('blocked ' + e.violatedDirective + ': ' + e.blockedURI);
});
var __consoleError = console.error;
console.error = function () {
  __probe.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  __consoleError.apply(console, arguments);
};
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var out = {
    images: imgs.map(function (i) { return i.complete ? i.naturalWidth : 0; }),
    sections: Array.prototype.map.call(document.querySelectorAll('section[id]'),
                                       function (s) { return s.id; }),
    histogram_bars: document.querySelectorAll('#histogram svg rect[fill="#4a78c2"]').length,
    threshold_lines: document.querySelectorAll('#histogram svg line.threshold').length,
    errors: __probe
  };
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="clipdedup-chromium-") as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


def screenshot(page: str, png: str, width: int = 1280, height: int = 2400,
               timeout: float = 60) -> str:
    """A PNG of the top `height` pixels of `page` (an HTML file) at `width`."""
    os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
    done = _run([f"--window-size={width},{height}", f"--screenshot={os.path.abspath(png)}",
                 "file://" + os.path.abspath(page)], timeout)
    if not os.path.isfile(png):
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode}): "
                           f"{done.stderr[-2000:]}")
    return png


def check_page(page: str, timeout: float = 60) -> dict:
    """What the probe saw in `page` (see the module docstring), plus `console`:
    the console lines chromium logged."""
    with open(page, encoding="utf-8") as f:
        text = f.read()
    probed = re.sub(r"<head>", lambda m: "<head>" + PROBE, text, count=1)
    with tempfile.TemporaryDirectory(prefix="clipdedup-probe-") as folder:
        wrapper = os.path.join(folder, "probed.html")
        with open(wrapper, "w", encoding="utf-8") as f:
            f.write(probed)
        done = _run(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
                     "--dump-dom", "file://" + wrapper], timeout)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    if not found:
        raise RuntimeError(f"the probe did not report (chromium exit {done.returncode}): "
                           f"{done.stderr[-2000:]}")
    import html

    result = json.loads(html.unescape(found.group(1)))
    result["console"] = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tools.report.browser REPORT.html OUT.png", file=sys.stderr)
        return 2
    print(screenshot(argv[0], argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
