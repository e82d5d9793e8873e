"""PNG images of a report, for slides: the timeline chart of each run, at the size it is drawn.

CairoSVG renders the SVG directly when it is installed (``pip install cairosvg``); otherwise headless Chromium (Debian
``chromium``) screenshots a page holding just that chart. ``screenshot`` is the Chromium call, also used for whole
pages (the tests, the images in docs/).
"""

import os
import re
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional

from ..errors import ChaosSchedulerError

__all__ = ["export_png", "screenshot", "chromium_binary", "CHROMIUM_FLAGS"]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1"]
_SVG = re.compile(r"<svg [^>]*class=\"timeline\".*?</svg>", re.S)
_SIZE = re.compile(r"width=\"(\d+)\" height=\"(\d+)\"")


def chromium_binary() -> Optional[str]:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(url_or_path: str, png_path: str, width: int, height: int, timeout: float = 90.0) -> None:
    """Headless Chromium screenshot of a page (a file path or a URL) at ``width`` × ``height`` CSS pixels, with a
    fresh profile that is removed afterwards. Raises ChaosSchedulerError when Chromium is missing or fails."""
    binary = chromium_binary()
    if binary is None:
        raise ChaosSchedulerError("headless Chromium is not installed (apt-get install chromium)")
    url = url_or_path if "://" in url_or_path else "file://" + os.path.abspath(url_or_path)
    profile = tempfile.mkdtemp(prefix="cs-chromium-")
    try:
        if os.path.exists(png_path):
            os.unlink(png_path)
        argv = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={os.path.abspath(png_path)}",
                f"--window-size={width},{height}", url]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ChaosSchedulerError(f"Chromium did not finish the screenshot within {timeout:.0f} s") from e
        if not os.path.exists(png_path):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ChaosSchedulerError(f"Chromium wrote no screenshot (exit {proc.returncode}): {tail[0]}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _charts(html_text: str) -> List[str]:
    return _SVG.findall(html_text)


def export_png(html_path: str, png_path: str) -> Dict[str, Any]:
    """Write the timeline chart of each run of the report at ``html_path`` as PNG: ``png_path`` for the first,
    ``<stem>-2.png``, ``<stem>-3.png``… for the others. Returns ``{"files": [...], "method": ...}``."""
    with open(html_path, encoding="utf-8") as handle:
        charts = _charts(handle.read())
    if not charts:
        raise ChaosSchedulerError("the report holds no timeline chart to export (no timestamp in the journals)")
    stem, ext = os.path.splitext(png_path)
    files = [png_path] + [f"{stem}-{i}{ext or '.png'}" for i in range(2, len(charts) + 1)]
    try:
        import cairosvg  # optional
    except (ImportError, OSError):  # OSError: the package is there but libcairo is not
        cairosvg = None
    for svg, target in zip(charts, files):
        if cairosvg is not None:
            cairosvg.svg2png(bytestring=svg.encode(), write_to=target)
            continue
        size = _SIZE.search(svg)
        width, height = (int(size.group(1)), int(size.group(2))) if size else (1100, 700)
        with tempfile.TemporaryDirectory(prefix="cs-png-") as tmp:
            page = os.path.join(tmp, "chart.html")
            with open(page, "w", encoding="utf-8") as handle:
                handle.write(f"<!DOCTYPE html><html><body style=\"margin:0;background:#fff\">{svg}</body></html>")
            screenshot(page, target, width, height)
    return {"files": files, "method": "cairosvg" if cairosvg is not None else "chromium"}
