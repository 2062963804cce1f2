"""End-to-end in a real browser: Debian's Chromium driven by Playwright against the real server."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.test_server import free_port, start_server

CHROMIUM = Path(os.environ.get("CSBOT_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(ready_home, tmp_path_factory):
    home = tmp_path_factory.mktemp("browser") / "home"
    shutil.copytree(ready_home, home)
    with start_server(home, free_port()) as base:
        yield base, home


def test_gradio_chat_thumbs_down_is_stored(browser, served):
    base, home = served
    page = browser.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(base + "/")
    page.fill("#message textarea", "I lost my card, what do I do? <img src=x onerror=alert(1)><script>alert(2)</script>")
    page.keyboard.press("Enter")
    bot = page.locator("#chat .bot").last
    bot.wait_for(timeout=30_000)
    assert "If your card is lost or stolen" in bot.inner_text()
    user_text = page.locator("#chat .user").last.inner_text()
    assert "<script>alert(2)</script>" in user_text and "<img src=x onerror=alert(1)>" in user_text
    page.get_by_role("button", name="Dislike").last.click()
    page.locator("#status").get_by_text("Thanks, we'll use this").wait_for(timeout=10_000)
    db = sqlite3.connect(home / "csbot.db")
    rows = db.execute("select t.intent, f.vote from feedback f join turns t on t.id = f.turn_id").fetchall()
    assert rows == [("lost_or_stolen_card", -1)]
    assert dialogs == []
    page.close()
