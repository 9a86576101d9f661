"""Headless chromium for the browser tests (the viewer's site, the documentation site): Debian's chromium
driven by playwright, whose own browser download is never used, and a recorder of what a page must not do."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
# As root chromium needs --no-sandbox; the rest keep it from reaching for the network on an offline machine.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-gpu", "--disable-quic"]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def check_browser() -> None:
    if not CHROMIUM.exists():
        note = REPO / ".venv" / "chromium-unavailable.txt"
        if note.is_file():
            pytest.skip(f"chromium could not be installed: {note.read_text().strip()}")
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("chromium is not installed and cannot be installed here (Debian's package needs root and apt-get)")
        pytest.fail("chromium is not installed but could be: run scripts/setup.sh (it runs apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is missing: pip install -e '.[browser]' (scripts/setup.sh does it)")


class Recorder:
    """What the pages did that they must not: requests off this machine's files/server, dialogs, errors."""

    def __init__(self) -> None:
        self.allowed = ["file://"]
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []

    @property
    def foreign(self) -> list[str]:
        return [url for url in self.requests if not any(url.startswith(prefix) for prefix in self.allowed)]

    def attach(self, page) -> None:
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("console", lambda message: self.errors.append(f"console {message.type}: {message.text}")
                if message.type == "error" else None)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()


@contextmanager
def chromium():
    """One headless chromium; every launch gets a fresh temporary profile (its own --user-data-dir)."""
    check_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, chromium_sandbox=False)
        try:
            yield launched
        finally:
            launched.close()
