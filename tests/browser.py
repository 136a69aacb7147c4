"""Open HTML files in headless Chromium with all networking disabled (for tests).

Flags follow /work/shared/FIELD_NOTES.md: every host resolves to nothing and every request goes
to a dead proxy, so a page that still needs a CDN shows it. ``--virtual-time-budget`` lets the
page's scripts run to completion before the DOM is dumped or the screenshot taken.

Tests call :func:`require_chromium` (which skips when no Chromium is installed) and then
:func:`dump_dom` or :func:`screenshot`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
)


def find_chromium() -> str | None:
    """Path of a Chromium-like browser (``$CHROMIUM`` first), or None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit and Path(explicit).is_file():
        return explicit
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """Path of Chromium; skips the calling test when there is none."""
    found = find_chromium()
    if found is None:
        pytest.skip("chromium is not installed")
    return found


def _run(args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    chromium = require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [chromium, *OFFLINE_FLAGS, f"--user-data-dir={profile}", *args]
        # its own process group, so a hung browser is ended with all its helper processes
        with subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as process:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise RuntimeError(
                    f"chromium did not finish in {timeout} s (a page dialog or a hung script)"
                ) from None
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def dump_dom(page: Path, *, budget_ms: int = 15000, timeout: float = 90.0) -> str:
    """The DOM of ``page`` after its scripts ran, serialised as HTML.

    Parameters
    ----------
    page
        HTML file to open (as a ``file://`` URL).
    budget_ms
        Virtual time given to the page before the dump.
    timeout
        Wall-clock limit in seconds for the browser process.
    """
    result = _run(
        [f"--virtual-time-budget={budget_ms}", "--dump-dom", Path(page).resolve().as_uri()],
        timeout=timeout,
    )
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"chromium failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def screenshot(
    page: Path,
    out: Path,
    *,
    size: tuple[int, int] = (1400, 1000),
    budget_ms: int = 15000,
    timeout: float = 90.0,
) -> Path:
    """Save a PNG screenshot of ``page`` to ``out`` and return ``out``."""
    out = Path(out).resolve()
    result = _run(
        [
            f"--virtual-time-budget={budget_ms}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={out}",
            Path(page).resolve().as_uri(),
        ],
        timeout=timeout,
    )
    if result.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium screenshot failed ({result.returncode}): {result.stderr}")
    return out


def print_pdf(page: Path, out: Path, *, budget_ms: int = 15000, timeout: float = 90.0) -> Path:
    """Print ``page`` to a PDF file ``out`` (the page's ``@page`` size applies)."""
    out = Path(out).resolve()
    result = _run(
        [
            f"--virtual-time-budget={budget_ms}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={out}",
            Path(page).resolve().as_uri(),
        ],
        timeout=timeout,
    )
    if result.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium print failed ({result.returncode}): {result.stderr}")
    return out
