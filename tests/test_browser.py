"""End-to-end in a real browser: Debian's Chromium driven by Playwright against the real server."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from core.next_questions import NextQuestions
from tests.test_server import free_port, start_server

CHROMIUM = Path(os.environ.get("CSBOT_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def screenshot(page, name: str) -> None:
    """Save a screenshot into $CSBOT_SCREENSHOTS (the README's pictures are made this way)."""
    folder = os.environ.get("CSBOT_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


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
    # What customers asked after a lost card in earlier sessions (as `csbot train` counts it).
    NextQuestions({"lost_or_stolen_card": {"card_delivery_estimate": 9, "order_physical_card": 6}}).save(home / "models")
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
    # "Did you mean…": the other topics the question could be about, as buttons
    page.locator("#suggestion-0").wait_for(state="visible", timeout=10_000)
    assert "Did you mean one of these?" in page.locator("#suggestions-label").inner_text()
    db = sqlite3.connect(home / "csbot.db")
    rows = db.execute("select t.intent, f.vote from feedback f join turns t on t.id = f.turn_id").fetchall()
    assert rows == [("lost_or_stolen_card", -1)]
    screenshot(page, "chat.png")
    assert dialogs == []
    page.close()


def test_gradio_next_questions_are_buttons_and_a_click_is_a_label(browser, served):
    base, home = served
    page = browser.new_page()
    page.goto(base + "/")
    page.fill("#message textarea", "I lost my card, what do I do?")
    page.keyboard.press("Enter")
    button = page.locator("#suggestion-0")
    button.wait_for(state="visible", timeout=30_000)
    assert button.inner_text().strip() == "Card delivery estimate"
    assert page.locator("#suggestion-1").inner_text().strip() == "Order physical card"
    assert "Customers also asked" in page.locator("#suggestions-label").inner_text()
    screenshot(page, "chat-next-questions.png")
    from playwright.sync_api import expect

    before = page.locator("#chat .bot").count()
    button.click()
    # Gradio may draw the reply's bubble before the chosen question's: wait for each, not one for the other.
    expect(page.locator("#chat .user").last).to_have_text("Card delivery estimate", timeout=30_000)
    page.wait_for_function(f"document.querySelectorAll('#chat .bot').length > {before}", timeout=30_000)
    query = "select corrected_intent, comment from feedback where vote = 0"
    for _ in range(100):  # the label is written before the reply is sent; allow for the page being ahead of it
        rows = sqlite3.connect(home / "csbot.db").execute(query).fetchall()
        if rows:
            break
        page.wait_for_timeout(100)
    assert rows == [("card_delivery_estimate", "next question")]
    page.close()


def test_gradio_chat_a_person_answers_live_and_hands_back(browser, served):
    """The handoff flow once through the Gradio chat (the agent side over the agent REST API)."""
    import httpx
    from playwright.sync_api import expect

    from bot.agents import AgentDirectory
    from core.store import FeedbackStore

    base, home = served
    AgentDirectory(FeedbackStore(home / "csbot.db")).add("Sam", "correct horse battery")
    sam = ("Sam", "correct horse battery")
    assert httpx.get(f"{base}/api/v1/agent/inbox", auth=sam, timeout=30).status_code == 200  # Sam is at the inbox
    page = browser.new_page()
    page.goto(base + "/")
    page.fill("#message textarea", "I lost my card, what do I do?")
    page.keyboard.press("Enter")
    page.locator("#chat .bot").last.wait_for(timeout=30_000)
    page.get_by_role("button", name="Talk to a person").click()
    expect(page.locator("#chat .bot").last).to_contain_text("passing this conversation", timeout=30_000)
    sid = next(c["session_id"] for c in httpx.get(f"{base}/api/v1/agent/inbox", auth=sam, timeout=30).json() if c["intent"] == "lost_or_stolen_card")
    httpx.post(f"{base}/api/v1/agent/conversations/{sid}/claim", auth=sam, timeout=30).raise_for_status()
    httpx.post(f"{base}/api/v1/agent/conversations/{sid}/reply", json={"text": "<b>Sam</b> here"}, auth=sam, timeout=30).raise_for_status()
    expect(page.locator("#chat .bot").last).to_contain_text("Sam from support: <b>Sam</b> here", timeout=3_000)
    bots = page.locator("#chat .bot").count()
    page.fill("#message textarea", "it was stolen on the train")
    page.keyboard.press("Enter")
    expect(page.locator("#chat .user").last).to_contain_text("it was stolen on the train", timeout=30_000)
    transcript = httpx.get(f"{base}/api/v1/agent/conversations/{sid}", auth=sam, timeout=30).json()
    assert "it was stolen on the train" in [i.get("message") for i in transcript["items"]]
    assert page.locator("#chat .bot").count() == bots  # the bot said nothing
    resolved = httpx.post(f"{base}/api/v1/agent/conversations/{sid}/resolve", json={"intent": "lost_or_stolen_card"}, auth=sam, timeout=30).json()
    assert len(resolved["labelled"]) == 1
    expect(page.locator("#chat .bot").last).to_contain_text("The bot is back", timeout=3_000)
    page.fill("#message textarea", "how do I top up by card?")
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelectorAll('#chat .bot').length > {bots + 1}", timeout=30_000)
    page.close()


@pytest.fixture(scope="module")
def host_page(tmp_path_factory):
    """A plain page on another origin (another port) that embeds the widget with one script tag."""
    import http.server
    import threading

    root = tmp_path_factory.mktemp("site")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_widget_on_another_origin_clarify_choose_and_vote(browser, ready_home, tmp_path, host_page):
    home = tmp_path / "home"
    shutil.copytree(ready_home, home)
    root, site = host_page
    # Thresholds that make every question a clarification, so the suggestion flow is exercised.
    with start_server(home, free_port(), CSBOT_ANSWER_THRESHOLD="1.0", CSBOT_HANDOFF_THRESHOLD="0") as bot:
        (root / "index.html").write_text(
            f"<!doctype html><html><head><title>Acme Bank</title></head><body><h1>Acme Bank</h1>"
            f'<script src="{bot}/widget.js" data-title="Acme support" defer></script></body></html>'
        )
        page = browser.new_page(viewport={"width": 390, "height": 800})  # phone width
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(site + "/index.html")
        page.get_by_role("button", name="Open the support chat").click()
        box = page.get_by_label("Your message")
        box.fill("my card <img src=x onerror=alert(1)>")
        box.press("Enter")
        page.locator(".csbot-suggestion").first.wait_for(timeout=30_000)
        assert page.locator(".csbot-user").first.inner_text() == "my card <img src=x onerror=alert(1)>"
        chosen = page.locator(".csbot-suggestion").first.inner_text()
        page.locator(".csbot-suggestion").first.click()
        answer = page.locator(".csbot-bot[data-action=answer]").last
        answer.wait_for(timeout=30_000)
        answer.get_by_role("button", name="Helpful", exact=True).click()
        answer.locator("button[aria-pressed=true]").wait_for(timeout=10_000)
        screenshot(page, "widget.png")
        db = sqlite3.connect(home / "csbot.db")
        feedback = db.execute("select vote, corrected_intent from feedback order by id").fetchall()
        assert len(feedback) == 2 and feedback[0][0] == 0 and feedback[0][1] and feedback[1] == (1, "")
        intent = feedback[0][1]
        assert chosen.lower() == intent.replace("_", " ").strip(" ?").lower()
        assert dialogs == []
        page.close()


def test_widget_down_vote_offers_alternatives_and_a_pick_labels_the_question(browser, ready_home, tmp_path, host_page):
    home = tmp_path / "home"
    shutil.copytree(ready_home, home)
    root, site = host_page
    with start_server(home, free_port()) as bot:
        (root / "alternatives.html").write_text(f'<!doctype html><html><body><script src="{bot}/widget.js" defer></script></body></html>')
        page = browser.new_page()
        page.goto(site + "/alternatives.html")
        page.get_by_role("button", name="Open the support chat").click()
        page.get_by_label("Your message").fill("I lost my card, what do I do?")
        page.get_by_label("Your message").press("Enter")
        answer = page.locator(".csbot-bot[data-action=answer]").first
        answer.wait_for(timeout=30_000)
        answer.get_by_role("button", name="Not helpful", exact=True).click()
        offered = answer.locator("[data-kind=alternatives] .csbot-suggestion")
        offered.first.wait_for(timeout=10_000)
        assert "Did you mean one of these?" in answer.inner_text()
        title = offered.first.inner_text()
        offered.first.click()
        page.locator(".csbot-bot[data-action=answer]").nth(1).wait_for(timeout=30_000)
        db = sqlite3.connect(home / "csbot.db")
        rows = db.execute("select t.message, f.vote, f.corrected_intent from feedback f join turns t on t.id = f.turn_id order by f.id").fetchall()
        assert rows[0] == ("I lost my card, what do I do?", -1, "")
        assert rows[1][:2] == ("I lost my card, what do I do?", -1) and rows[1][2].replace("_", " ").lower() == title.lower()
        page.close()


def test_admin_console_login_and_relabel(browser, ready_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(ready_home, home)
    with start_server(home, free_port(), CSBOT_ADMIN_USER="admin", CSBOT_ADMIN_PASSWORD="s3cret-pass") as bot:
        import httpx

        reply = httpx.post(f"{bot}/api/v1/chat", json={"message": "<script>alert(3)</script> my card was swallowed"}, timeout=30).json()
        httpx.post(f"{bot}/api/v1/feedback", json={"turn_id": reply["turn_id"], "vote": "down", "session_id": reply["session_id"]}, timeout=30)
        page = browser.new_page()
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(bot + "/admin/")
        page.get_by_label("username").fill("admin")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("Incorrect").wait_for(timeout=10_000)
        page.get_by_label("username").fill("admin")
        page.get_by_label("password").fill("s3cret-pass")
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="Analytics").wait_for(timeout=30_000)
        page.wait_for_timeout(5000)  # let the plots draw before the screenshot
        screenshot(page, "admin-analytics.png")
        page.get_by_role("tab", name="Review").click()
        from playwright.sync_api import expect

        expect(page.locator("#review-table")).to_contain_text("<script>alert(3)</script> my card was swallowed", timeout=30_000)
        # Selecting a row selects its turn and shows the conversation (what the bot answered, the vote).
        page.locator("#review-table").get_by_test_id(re.compile(r"^cell-\d+-1$")).get_by_text("my card was swallowed").first.click()
        expect(page.locator("#review-transcript")).to_contain_text("customer voted down", timeout=30_000)
        expect(page.locator("#review-turn input")).to_have_value(reply["turn_id"], timeout=10_000)
        page.locator("#review-intent input").fill("card_swallowed")
        page.get_by_role("option", name="card_swallowed", exact=True).click()
        page.locator("#review-save").click()
        page.locator("#review-status").get_by_text("Saved: card_swallowed.").wait_for(timeout=30_000)
        screenshot(page, "admin-review.png")
        rows = sqlite3.connect(home / "csbot.db").execute("select turn_id, corrected_intent, source from feedback where vote = 0").fetchall()
        assert rows == [(reply["turn_id"], "card_swallowed", "reviewer")]
        page.get_by_role("tab", name="Models").click()
        expect(page.locator("#model-versions")).to_contain_text("first model", timeout=30_000)
        table = page.locator("#model-versions").inner_text()
        assert re.search(r"\b\d{1,3}\.\d%", table) and not re.search(r"0\.\d{6,}", table)  # rounded percentages, not raw fractions
        page.locator("#learning-curve").wait_for(timeout=30_000)
        page.wait_for_timeout(5000)
        screenshot(page, "admin-models.png")
        assert dialogs == []
        page.close()


def login(page, url: str, user: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()


def test_a_person_answers_in_the_widget_live_and_the_bot_learns_it(browser, ready_home, tmp_path, host_page):
    """Two browsers: a customer in the widget on another site, an agent in the inbox. Delivery both ways within 2 s."""
    from playwright.sync_api import expect

    from bot.agents import AgentDirectory
    from core.config import Settings
    from core.registry import ModelRegistry
    from core.store import FeedbackStore
    from csbot.wiring import retrain
    from training.train_intent import IntentTrainConfig

    home = tmp_path / "home"
    shutil.copytree(ready_home, home)
    AgentDirectory(FeedbackStore(home / "csbot.db")).add("Sam", "correct horse battery")
    root, site = host_page
    with start_server(home, free_port()) as bot:
        (root / "shop.html").write_text(f'<!doctype html><html><body><h1>Acme Bank</h1><script src="{bot}/widget.js" defer></script></body></html>')
        agent = browser.new_context().new_page()
        customer = browser.new_context(viewport={"width": 390, "height": 800}).new_page()
        dialogs = []
        for page in (agent, customer):
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        login(agent, bot + "/agent/", "Sam", "correct horse battery")
        agent.locator("#inbox-table").wait_for(timeout=30_000)
        expect(agent.locator("#inbox-who")).to_contain_text("Signed in as Sam", timeout=30_000)

        customer.goto(site + "/shop.html")
        customer.get_by_role("button", name="Open the support chat").click()
        customer.get_by_label("Your message").fill("an ATM in Lisbon kept my card")
        customer.get_by_label("Your message").press("Enter")
        customer.locator(".csbot-bot").first.wait_for(timeout=30_000)
        customer.get_by_role("button", name="Talk to a person", exact=True).last.click()
        expect(customer.locator(".csbot-status")).to_have_text("Waiting for a person…", timeout=10_000)
        session_id = customer.evaluate("() => Object.entries(sessionStorage).find(([k]) => k.startsWith('csbot-session:'))[1]")
        bot_messages = customer.locator(".csbot-bot").count()

        row = agent.locator("#inbox-table").get_by_test_id(re.compile(r"^cell-\d+-0$")).get_by_text(session_id)
        row.wait_for(timeout=2_000)  # the inbox shows the waiting customer within 2 s
        row.click()
        expect(agent.locator("#inbox-transcript")).to_contain_text("an ATM in Lisbon kept my card", timeout=10_000)
        agent.locator("#inbox-claim").click()
        expect(customer.locator(".csbot-status")).to_have_text("Sam from support", timeout=10_000)
        agent.locator("#inbox-reply textarea").fill("<b>Hi</b>, I'm Sam. Which machine?")
        agent.locator("#inbox-send").click()
        said = customer.locator(".csbot-agent").last
        expect(said).to_contain_text("<b>Hi</b>, I'm Sam. Which machine?", timeout=2_000)  # within 2 s, markup as text
        expect(said.locator(".csbot-who")).to_have_text("Sam from support")

        customer.get_by_label("Your message").fill("the one at <i>the airport</i>")
        customer.get_by_label("Your message").press("Enter")
        expect(agent.locator("#inbox-transcript")).to_contain_text("the one at <i>the airport</i>", timeout=2_000)
        customer.wait_for_timeout(500)
        assert customer.locator(".csbot-bot").count() == bot_messages  # the bot said nothing meanwhile
        screenshot(agent, "agent-inbox.png")
        screenshot(customer, "widget-agent.png")

        agent.locator("#inbox-intent input").fill("card_swallowed")
        agent.get_by_role("option", name="card_swallowed", exact=True).click()
        agent.locator("#inbox-resolve").click()
        expect(agent.locator("#inbox-status")).to_contain_text("1 turn(s) labelled card_swallowed", timeout=10_000)
        expect(customer.locator(".csbot-event").last).to_contain_text("back with the bot", timeout=10_000)
        customer.get_by_label("Your message").fill("I lost my card, what do I do?")
        customer.get_by_label("Your message").press("Enter")
        customer.locator(".csbot-bot[data-action=answer]").last.wait_for(timeout=30_000)  # the bot answers again
        assert dialogs == []
        agent.context.close()
        customer.context.close()

    db = sqlite3.connect(home / "csbot.db")
    events = db.execute("select event, author, text from session_events where session_id = ? order by id", [session_id]).fetchall()
    kinds = [e[0] for e in events]
    assert kinds[0] == "waiting" and "assigned" in kinds and kinds[-1] == "resolved"
    assert ("agent", "Sam", "<b>Hi</b>, I'm Sam. Which machine?") in events and ("customer", "customer", "the one at <i>the airport</i>") in events
    turns = db.execute("select message, text from turns where session_id = ? order by created_at", [session_id]).fetchall()
    assert ("the one at <i>the airport</i>", "") in turns  # stored, and the bot's text is empty: it said nothing
    label = db.execute("select t.message, f.corrected_intent, f.source from feedback f join turns t on t.id = f.turn_id").fetchall()
    assert label == [("an ATM in Lisbon kept my card", "card_swallowed", "agent")]
    result = retrain(Settings(home=home), IntentTrainConfig(quick=True, followup_pairs=0), from_feedback=True)
    assert ModelRegistry(home / "models").card("intent", result.version)["data"]["labels_by_source"] == {"agent": 1}
