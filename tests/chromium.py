"""Headless Debian Chromium for the browser tests, driven by Playwright.

No test downloads a browser: Playwright launches /usr/bin/chromium. Under the
sanitizer run (scripts/test --sanitize) the interpreter has the ASan runtime
preloaded; Chromium does not start with it, so neither the Playwright driver
nor the browser inherits the sanitizer variables.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import pytest

from profiler_service.www import STATIC_DIR

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking"]
SANITIZER_VARIABLES = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")

needs_chromium = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason="no /usr/bin/chromium")
needs_viewer_build = pytest.mark.skipif(
    not os.path.isfile(os.path.join(STATIC_DIR, "index.html")),
    reason="viewer not built: run scripts/build-viewer",
)


@contextlib.contextmanager
def launched_chromium() -> Iterator[object]:
    """A Playwright Browser on /usr/bin/chromium, closed on exit."""
    from playwright.sync_api import sync_playwright

    saved = {name: os.environ.pop(name) for name in SANITIZER_VARIABLES if name in os.environ}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                env=dict(os.environ), timeout=30_000,
            )
            os.environ.update(saved)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        os.environ.update(saved)
