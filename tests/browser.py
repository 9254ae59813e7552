"""Pages opened in a real browser: Debian's headless Chromium, with every host but the page's own unreachable.

Installed by ``.ci/run`` (``apt-get install chromium``); tests that need it skip, naming it, where it is absent.
``--host-resolver-rules`` makes the check honest offline: a page that needs a CDN cannot reach one here, even
on a machine that has internet.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=15000",  # let the page's scripts run to completion
)


def _run(page: Path, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )


def dom(page: Path) -> str:
    """The DOM after the page's scripts ran."""
    return _run(page, "--dump-dom").stdout


def screenshot(page: Path, png: Path, width: int = 1000, height: int = 1400):
    """A PNG of the page as drawn, returned as an RGB image."""
    from PIL import Image

    result = _run(page, f"--window-size={width},{height}", f"--screenshot={png}")
    assert png.is_file(), result.stderr[-2000:]
    return Image.open(png).convert("RGB")


def colored_pixels(image, box: tuple[int, int, int, int] | None = None) -> int:
    """Pixels with a clear hue (chart lines and bars), as opposed to white, grey and black (text, axes, grid)."""
    region = image.crop(box) if box else image
    return sum(1 for r, g, b in region.getdata() if max(r, g, b) - min(r, g, b) > 60)
