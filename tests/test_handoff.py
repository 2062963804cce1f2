"""A person takes over: states, silence, what agents do, what the bot learns, and nobody lost. Real SQLite, real model."""

from __future__ import annotations

import http.server
import io
import json
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from bot.assistant import OUT_OF_SCOPE_TEXT, Assistant
from bot.handoff import OfficeHours
from bot.mood import OFFER_TEXT, angry
from core.errors import InputError
from csbot.wiring import open_assistant
from tests.conftest import with_thresholds


def people(assistant: Assistant, session_id: str) -> list[tuple[str, str, str]]:
    """(event, author, text) of what the customer's chat shows."""
    return [(e["event"], e["author"], e["text"]) for e in assistant.desk.customer_events(session_id)]


def test_a_person_takes_over_answers_and_hands_back_and_the_bot_learns(assistant, settings):
    desk = assistant.desk
    question = assistant.respond("my card got swallowed by the cash machine in Lisbon")
    sid = question.session_id
    assert assistant.respond("I want to talk to a person", sid).state == "waiting"
    assert desk.inbox()[0]["session_id"] == sid

    desk.claim(sid, "Sam")
    assert assistant.respond("are you there? <b>hello</b>", sid).text == ""  # silent while a person has it
    desk.note(sid, "Sam", "looks like card_swallowed")
    desk.reply(sid, "Sam", "Hi, I'm Sam. Which machine was it?")
    shown = people(assistant, sid)
    assert ("assigned", "Sam", "") in shown and ("agent", "Sam", "Hi, I'm Sam. Which machine was it?") in shown
    assert not any(kind == "note" for kind, _, _ in shown)  # internal notes never reach the customer
    inbox_side = [(e["event"], e["text"]) for e in desk.store.events(session_id=sid)]
    assert ("customer", "are you there? <b>hello</b>") in inbox_side and ("note", "looks like card_swallowed") in inbox_side

    desk.transfer(sid, "Sam", "Alex", ["Sam", "Alex"])
    with pytest.raises(InputError, match="Alex has this conversation"):
        desk.reply(sid, "Sam", "still me")
    answer = "We have blocked the card; a new one is on its way and the machine's bank will destroy the old one."
    done = desk.resolve(sid, "Alex", "card_swallowed", known_intents=set(assistant.kb.intents()), answer=answer)

    # The label goes on the question the customer was stuck on (not on "I want to talk to a person").
    assert done["labelled"] == [question.turn_id]
    labels = desk.store.db.execute("select turn_id, corrected_intent, source from feedback").fetchall()
    assert labels == [(question.turn_id, "card_swallowed", "agent")]
    ticket = desk.store.db.execute("select question, answer, intent, source from tickets where id = ?", [done["ticket_id"]]).fetchone()
    assert ticket == ("my card got swallowed by the cash machine in Lisbon", answer, "card_swallowed", "agent")
    after = assistant.respond("my card got swallowed by the cash machine in Lisbon", sid)  # the bot answers again ...
    assert after.state == "bot" and after.text
    assert done["ticket_id"] in [s.ticket_id for s in after.sources]  # ... and the agent's answer is in its knowledge


def test_actions_out_of_turn_are_refused_plainly(assistant):
    desk = assistant.desk
    sid = assistant.respond("I lost my card").session_id
    with pytest.raises(InputError, match="bot has this conversation"):
        desk.claim(sid, "Sam")
    assistant.handoff(sid)
    with pytest.raises(InputError, match="Claim the conversation first"):
        desk.reply(sid, "Sam", "hello")
    desk.claim(sid, "Sam")
    with pytest.raises(InputError, match="Sam has this conversation"):
        desk.claim(sid, "Alex")
    with pytest.raises(InputError, match="no agent"):
        desk.transfer(sid, "Sam", "Nobody", ["Sam"])
    with pytest.raises(InputError, match="empty"):
        desk.reply(sid, "Sam", "   ")
    with pytest.raises(InputError, match="Unknown intent"):
        desk.resolve(sid, "Sam", "not_an_intent", known_intents=set(assistant.kb.intents()))
    desk.release(sid, "Sam")
    assert desk.state(sid) == ("bot", "")


def test_unsure_twice_in_a_row_hands_off_to_a_person(settings):
    assistant = open_assistant(with_thresholds(settings, answer=1.0, handoff=1.0))
    first = assistant.respond("what's the weather in Paris")
    assert first.text == OUT_OF_SCOPE_TEXT and first.offer_person and first.state == "bot"  # rephrase, or ask for a person
    second = assistant.respond("and in Rome?", first.session_id)
    assert second.state == "waiting" and "support team" in second.text
    reason = assistant.desk.store.events(session_id=first.session_id, kinds=("waiting",))[0]["data"]["reason"]
    assert reason == "bot unsure"


def test_frustration_offers_a_person_before_they_ask(assistant):
    calm = assistant.respond("I lost my card, what do I do?")
    assert not calm.offer_person and OFFER_TEXT not in calm.text
    angry_reply = assistant.respond("this is useless, I lost my card!!!", calm.session_id)
    assert angry_reply.offer_person and angry_reply.text.endswith(OFFER_TEXT)
    assert angry_reply.state == "bot"  # an offer, not a handoff

    sid = assistant.respond("how do I top up my account?").session_id
    first = assistant.respond("my transfer has not arrived yet", sid)
    assert not assistant.feedback(first.turn_id, -1, session_id=sid).offer_person  # one down-vote is not frustration yet
    repeated = assistant.respond("my transfer has not arrived yet", sid)  # the same question right after a down-vote
    assert repeated.offer_person
    assert assistant.feedback(repeated.turn_id, -1, comment="still wrong", session_id=sid).offer_person  # two down-votes in a row
    assert assistant.feedback(repeated.turn_id, -1, comment="and again", session_id=sid).offer_person  # still the same two turns


@pytest.mark.parametrize(
    "message,expected",
    [("THIS IS RIDICULOUS WHERE IS MY MONEY", True), ("what the hell happened to my transfer", True), ("hello, where is my card?", False), ("ATM", False)],
)
def test_angry_words(message, expected):
    assert angry(message) is expected


def test_a_long_wait_offers_to_leave_a_message_kept_apart_from_everything_else(assistant, settings):
    desk = assistant.desk
    desk.store.put_agent("Sam", "x")
    desk.store.agent_seen("Sam")  # somebody is at the inbox: the handoff itself promises a reply
    sid = assistant.respond("talk to a human").session_id
    assert not any(kind == "offer_message" for kind, _, _ in people(assistant, sid))
    desk.check_wait(sid, now=datetime.now(timezone.utc) + timedelta(seconds=settings.handoff_timeout + 1))
    desk.check_wait(sid, now=datetime.now(timezone.utc) + timedelta(seconds=settings.handoff_timeout + 2))
    offers = [text for kind, _, text in people(assistant, sid) if kind == "offer_message"]
    assert len(offers) == 1 and "Leave a message" in offers[0]

    desk.leave_contact(sid, "ann@example.com", "please call me back about my card")
    assert desk.store.contacts()[0]["contact"] == "ann@example.com"
    everywhere = ""
    exported = io.StringIO()
    desk.store.export_csv(exported)
    for table in ("turns", "feedback", "session_events"):
        everywhere += json.dumps([list(r) for r in desk.store.db.execute(f"select * from {table}")])
    assert "ann@example.com" not in everywhere + exported.getvalue()
    assert desk.store.delete_contact(desk.store.contacts()[0]["id"]) and desk.store.contacts() == []
    with pytest.raises(InputError, match="email address or a phone number"):
        desk.leave_contact(sid, "   ", "hello")


def test_nobody_online_or_outside_hours_is_said_honestly(assistant, settings):
    text = assistant.handoff(assistant.respond("I lost my card").session_id)
    assert "No one from our support team is online" in text  # no agent has ever been at the inbox
    closed = open_assistant(replace(settings, handoff_hours="mon-fri 09:00-17:00 UTC", agent_away_minutes=0))
    hours = OfficeHours("mon-fri 09:00-17:00 UTC")
    saturday = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
    assert not hours.open_at(saturday) and hours.open_at(datetime(2026, 11, 27, 16, 59, tzinfo=timezone.utc))
    assert "not here right now" in closed.desk.unavailable(saturday)
    assert closed.desk.unavailable(datetime(2026, 11, 27, 10, tzinfo=timezone.utc)) == ""


class _Hook(http.server.BaseHTTPRequestHandler):
    release = threading.Event()
    bodies: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Hook.release.wait(30)  # hangs until the test lets it go
        _Hook.bodies.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_hanging_webhook_never_holds_up_the_customer(settings):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        assistant = open_assistant(replace(settings, handoff_webhook=url))
        reply = assistant.respond("can I speak to an agent")  # returns while the webhook still hangs
        assert reply.state == "waiting" and _Hook.bodies == []
        _Hook.release.set()
        for _ in range(100):
            if _Hook.bodies:
                break
            threading.Event().wait(0.1)
        assert _Hook.bodies[0]["session_id"] == reply.session_id and "waiting for a person" in _Hook.bodies[0]["text"]
    finally:
        server.shutdown()


def test_a_failing_webhook_is_retried_then_given_up(settings):
    from bot.handoff import Webhook

    hook = Webhook("http://127.0.0.1:9/nothing-listens-here", timeout_s=0.5, tries=2, backoff_s=0.01)
    hook.post({"text": "hello"})
    for _ in range(100):
        if hook.failed:
            break
        threading.Event().wait(0.05)
    assert hook.failed == 1 and hook.sent == 0


def test_in_the_simulation_every_handoff_is_answered_by_a_person_who_labels_it(settings):
    """benchmarks/feedback_loop.py --scenario agents: each handoff gets the true intent from an agent."""
    import random

    from benchmarks.feedback_loop import simulate_round

    assistant = open_assistant(with_thresholds(settings, answer=1.0, handoff=1.0))  # every question is handed off
    queries = [
        {"question": "I lost my card", "intent": "lost_or_stolen_card"},
        {"question": "when will my card arrive", "intent": "card_arrival"},
        {"question": "what is the exchange rate", "intent": "exchange_rate"},
    ]
    counts = simulate_round(assistant, queries, random.Random(0), "agents", 0.0, 0.0)
    assert counts["agent_labels"] == 3 and counts["handoffs_per_100_customers"] == 100.0
    labels = assistant.store.db.execute("select t.message, f.corrected_intent from feedback f join turns t on t.id = f.turn_id where f.source = 'agent'")
    assert sorted(labels) == sorted((q["question"], q["intent"]) for q in queries)


def test_in_the_simulation_a_customer_the_bot_failed_asks_for_a_person(settings):
    """--scenario agents: after a wrong answer the customer asks for a person, whose label goes on that question."""
    import random

    from benchmarks.feedback_loop import simulate_round

    assistant = open_assistant(with_thresholds(settings, answer=0.0, handoff=0.0))  # the bot always answers
    wrong = [{"question": "I lost my card", "intent": "exchange_rate"}]  # whatever it answers, the customer meant exchange rates
    counts = simulate_round(assistant, wrong, random.Random(0), "agents", 0.0, 0.0, ask_person=1.0)
    assert counts["answer"] == 1 and counts["asked_for_a_person"] == 1 and counts["handoffs_per_100_customers"] == 100.0
    labels = assistant.store.db.execute("select t.message, f.corrected_intent from feedback f join turns t on t.id = f.turn_id where f.source = 'agent'")
    assert list(labels) == [("I lost my card", "exchange_rate")]
    assert assistant.store.session_state(assistant.store.events()[0]["session_id"]) == "bot"  # resolved: the bot answers again
    never = simulate_round(assistant, wrong, random.Random(0), "agents", 0.0, 0.0, ask_person=0.0)
    assert never.get("asked_for_a_person", 0) == 0
