"""Headless Chromium for the report tests: Debian's chromium driven by playwright.

`make test` must pass on a fresh machine, so a missing chromium is installed here (apt, as root);
if that is impossible the test fails with the command to run, it is not skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str:
    found = next((shutil.which(n) for n in NAMES if shutil.which(n)), None)
    if found:
        return found
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "install", "-y", "-q", "chromium"],
                    ["sh", "-c", "apt-get update -q && apt-get install -y -q chromium"]):
            if subprocess.run(cmd, env=env, capture_output=True).returncode == 0 and shutil.which("chromium"):
                return shutil.which("chromium")
    pytest.fail("the report tests need Chromium: apt-get install chromium (could not install it here)")


class Page:
    """A page opened in headless Chromium, with its console errors and any JavaScript dialog."""

    def __init__(self, path, width: int = 1400, height: int = 1000):
        from playwright.sync_api import sync_playwright

        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        self.page = self._browser.new_page(viewport={"width": width, "height": height})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(f"file://{path}", wait_until="load")

    def draw_all(self) -> None:
        self.page.evaluate("() => window.flowsiemDrawAll()")

    def marks(self) -> dict[str, int]:
        """Per figure, how many drawn marks (points, bars, line paths, heatmap images) it has."""
        return self.page.evaluate("""() => Object.fromEntries(Array.from(document.querySelectorAll('.fig'))
            .map(el => [el.dataset.fig, el.querySelectorAll(
              '.scatterlayer .point, .barlayer .point path, .scatterlayer .js-line, .heatmaplayer image').length]))""")

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
