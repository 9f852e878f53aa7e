"""The HTML report renders in headless Chromium (a screenshot test).

Skipped only on a developer machine without Chromium; in CI (``CI`` set) Chromium is installed
by .ci/system-deps and a missing one fails the test.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from .conftest import Store

WIDTH, HEIGHT = 1200, 2600


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/system-deps installs it")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _png_rows(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the raw (filtered) scanlines of an 8-bit RGB/RGBA PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    stride = 1 + width * (3 if color == 2 else 4)
    raw = zlib.decompress(idat)
    assert len(raw) == stride * height
    return width, height, [raw[i : i + stride] for i in range(0, len(raw), stride)]


def test_html_report_renders_in_chromium(store: Store, tmp_path: Path) -> None:
    chromium = _chromium()
    page = tmp_path / "report.html"
    done = store.syncd("report", "--no-record", "--output", str(page))
    assert done.returncode == 0, done.stderr
    shot = tmp_path / "report.png"
    rendered = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={WIDTH},{HEIGHT}",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    width, height, rows = _png_rows(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    # A blank page has identical scanlines; the report's text, tables and charts make many
    # distinct ones, and the last part of the page (below the content) is blank again.
    distinct = len(set(rows))
    assert distinct > 300, distinct
    assert len(set(rows[-100:])) <= 2
    # The DOM Chromium built holds the report's sections and both charts.
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile-dom'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 2
    for section in ("coverage", "failures", "expiring", "changes", "passes"):
        assert f'<section id="{section}">' in dom.stdout
