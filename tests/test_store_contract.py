"""The store's contract, run on both engines: a SQLite file and a real PostgreSQL server (``database_url``).

Every public method of ``FeedbackStore`` is exercised here with the same expectations on both, so a query
that only one engine understands fails a test instead of a customer.
"""

from __future__ import annotations

import io
import threading
from dataclasses import replace

import pytest

from core.errors import InputError, UnknownTurn
from core.store import FeedbackStore
from core.types import Feedback, Reply


def reply(turn_id: str, session: str = "s1", *, intent: str = "card_arrival", action: str = "answer", confidence: float = 0.9) -> Reply:
    return Reply(turn_id=turn_id, session_id=session, action=action, text="an answer", intent=intent, confidence=confidence, model_version="v0001")


@pytest.fixture
def store(database_url) -> FeedbackStore:
    store = FeedbackStore(database_url)
    yield store
    store.close()


def test_turns_and_votes_are_redacted_and_survive_reopening(store, database_url):
    store.append_turn(reply("t1"), "my email is ann@example.com")
    row = store.append_feedback(Feedback("t1", -1, comment="call me on +44 20 7946 0958"))
    reopened = FeedbackStore(database_url)
    assert reopened.turn("t1")["message"] == "my email is [EMAIL]"
    assert "rowid" not in reopened.turn("t1")
    assert [(r["vote"], r["comment"]) for r in reopened.feedback_rows()] == [(-1, "call me on [PHONE]")]
    assert isinstance(row, int) and reopened.count("feedback") == 1
    reopened.close()


def test_a_vote_needs_a_known_turn_in_its_session(store):
    store.append_turn(reply("t1"), "hello")
    with pytest.raises(UnknownTurn):
        store.append_feedback(Feedback("nope", 1))
    with pytest.raises(UnknownTurn):
        store.append_feedback(Feedback("t1", 1), session_id="someone-else")
    with pytest.raises(InputError):
        store.append_feedback(Feedback("t1", 5))
    with pytest.raises(InputError):
        store.count("sqlite_master")
    assert store.count("feedback") == 0


def test_a_replayed_vote_is_stored_once_and_a_new_one_supersedes(store):
    store.append_turn(reply("t1"), "where is my card")
    first = store.append_feedback(Feedback("t1", 1))
    assert store.append_feedback(Feedback("t1", 1)) == first
    store.append_feedback(Feedback("t1", -1, comment="wrong"))
    assert store.count("feedback") == 2
    assert [r["vote"] for r in store.feedback_rows()] == [-1]
    assert list(store.feedback_rows(cutoff="2000-01-01T00:00:00")) == []


def test_what_the_customer_said_about_a_turn_and_what_they_were_offered(store):
    store.append_turn(reply("t1"), "where is my card")
    assert store.customer_feedback("t1") == (0, "", [])
    store.append_feedback(Feedback("t1", -1, offered=["card_delivery_estimate", "lost_or_stolen_card"]))
    assert store.customer_feedback("t1") == (-1, "", ["card_delivery_estimate", "lost_or_stolen_card"])
    store.append_feedback(Feedback("t1", -1, corrected_intent="card_delivery_estimate", offered=["card_delivery_estimate", "lost_or_stolen_card"]))
    assert store.customer_feedback("t1") == (-1, "card_delivery_estimate", ["card_delivery_estimate", "lost_or_stolen_card"])
    store.append_feedback(Feedback("t1", 0, corrected_intent="card_arrival", source="reviewer"))  # not the customer's
    assert store.customer_feedback("t1").picked == "card_delivery_estimate"
    store.append_feedback(Feedback("t1", 1))  # changed their mind: nothing offered stands
    assert store.customer_feedback("t1") == (1, "", [])


def test_a_followups_context_is_read_back_as_serving_read_it(store):
    """Up to two earlier questions of the same session (a handoff is not one), oldest first; other sessions never."""
    store.append_turn(reply("q1"), "my transfer is late")
    store.append_turn(reply("other", session="s2"), "unrelated")
    store.append_turn(reply("h1", action="handoff"), "")
    store.append_turn(reply("q2", action="clarify"), "to my friend abroad")
    store.append_turn(replace(reply("f1"), context_turn_id="q2"), "how long does it take?")
    store.append_feedback(Feedback("f1", 0, corrected_intent="transfer_timing", source="reviewer"))
    assert store.context_messages("f1") == ["my transfer is late", "to my friend abroad"]
    assert store.context_messages("q1") == [] and store.context_messages("nope") == []
    assert [r["context"] for r in store.feedback_rows()] == [["my transfer is late", "to my friend abroad"]]


def test_identical_votes_sent_at_the_same_moment_store_one_row(store):
    """Read-then-write in one transaction: eight threads send the same vote at once."""
    store.append_turn(reply("t1"), "where is my card")
    barrier, ids = threading.Barrier(8), []

    def vote():
        barrier.wait()
        ids.append(store.append_feedback(Feedback("t1", -1, comment="same")))

    threads = [threading.Thread(target=vote) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and store.count("feedback") == 1


def test_conversation_events_states_and_the_open_list(store):
    assert store.session_state("s1") == "bot" and store.last_event_id() == 0
    store.append_turn(reply("t1"), "my card never came")
    waiting = store.append_event("s1", "waiting", data={"reason": "asked for a person"})
    store.append_event("s1", "customer", author="customer", text="hello? mail me at ann@example.com")
    assert store.session_state("s1") == "waiting"
    (row,) = store.open_conversations()
    assert (row["session_id"], row["state"], row["intent"], row["unread"]) == ("s1", "waiting", "card_arrival", 1)
    assigned = store.append_event("s1", "assigned", author="Sam")
    assert store.conversation_state("s1") == ("assigned", "Sam", assigned) and assigned > waiting
    assert store.open_conversations()[0]["waiting_since"] is not None
    assert [e["text"] for e in store.events(session_id="s1", kinds=("customer",))] == ["hello? mail me at [EMAIL]"]
    assert [e["event"] for e in store.events(after=waiting)] == ["customer", "assigned"]
    assert store.events(session_id="s1")[0]["data"] == {"reason": "asked for a person"}
    store.append_event("s1", "resolved", author="Sam")
    assert store.session_state("s1") == "bot" and store.open_conversations() == []
    with pytest.raises(InputError):
        store.append_event("s1", "handoff")


def test_transcripts_recent_turns_and_votes(store):
    for i in range(3):
        store.append_turn(reply(f"t{i}"), f"question {i}")
    store.append_feedback(Feedback("t0", 1))
    store.append_feedback(Feedback("t1", -1, comment="no"))
    store.append_feedback(Feedback("t1", 0, corrected_intent="lost_or_stolen_card", source="agent"))
    turns = store.session_turns("s1")
    assert [t["id"] for t in turns] == ["t0", "t1", "t2"]
    assert (turns[1]["vote"], turns[1]["comment"], turns[1]["label"]) == (-1, "no", "lost_or_stolen_card")
    assert [t["id"] for t in store.recent_turns("s1", limit=2, since="2000-01-01")] == ["t2", "t1"]
    votes = store.recent_votes("s1")
    assert [(v["turn_id"], v["vote"]) for v in votes] == [("t1", -1), ("t0", 1)]
    assert not any(v["latest"] for v in votes)


def test_agents_and_contacts(store):
    store.put_agent("Sam", "hash1")
    store.put_agent("Sam", "hash2")  # a new password replaces the old one
    assert store.agent("Sam")["password_hash"] == "hash2" and store.agent("Nobody") is None
    assert store.last_agent_seen() is None
    store.agent_seen("Sam")
    assert [a["name"] for a in store.agents()] == ["Sam"] and store.last_agent_seen() is not None
    assert store.delete_agent("Sam") and not store.delete_agent("Sam")
    contact = store.add_contact("s1", "ann@example.com", "call me at +44 20 7946 0958")
    assert [(c["contact"], c["message"]) for c in store.contacts()] == [("ann@example.com", "call me at [PHONE]")]
    assert store.delete_contact(contact) and store.contacts() == []


def test_tickets(store):
    records = [
        {"external_id": "", "question": f"q{i}", "answer": f"a{i}", "intent": "card_arrival" if i % 2 else "", "created_at": "x", "source": "t"}
        for i in range(5)
    ]
    records = [{**r, "question_key": r["question"]} for r in records]
    added = store.insert_tickets(records)
    assert len(added) == 5 and store.insert_tickets(records) == []  # identical tickets are stored once
    assert store.ticket_ids() == added and store.ticket_ids(labelled=True) == added[1::2]
    assert store.ticket_ids(from_id=added[3]) == added[3:]
    assert [t.question for t in store.tickets([added[2], 999999, added[0]]).values()] == ["q2", "q0"]
    assert store.ticket_intents() == ["card_arrival"]
    assert store.first_ticket("card_arrival").question == "q1" and store.first_ticket("nothing") is None
    assert store.delete_ticket(added[0]) and not store.delete_ticket(added[0])
    assert store.count("tickets") == 4
    more = store.insert_tickets([{**records[0], "question_key": "new"}])
    assert more[0] > added[-1]


def test_tickets_with_explicit_ids_keep_later_ids_unique(store):
    store.insert_tickets([{"id": 50, "question": "q", "answer": "a", "intent": "", "created_at": "", "source": "", "external_id": "", "question_key": "k50"}])
    (later,) = store.insert_tickets([{"question": "q2", "answer": "a", "intent": "", "created_at": "", "source": "", "external_id": "", "question_key": "k51"}])
    assert later > 50


def test_analytics_review_queue_and_export(store):
    store.append_turn(reply("t1", confidence=0.95), "Where is my card?")
    store.append_turn(reply("t2", intent="exchange_rate", confidence=0.3), "rates?")
    store.append_turn(reply("t3", "s2", action="handoff", intent="", confidence=0.0), "a person please")
    store.append_feedback(Feedback("t1", -1, comment="wrong"))
    store.append_feedback(Feedback("t1", -1, comment="still wrong"))
    store.append_feedback(Feedback("t2", 1))
    (day,) = store.daily_activity()
    assert (day["turns"], day["votes"]) == (3, 2)  # each voted turn once: a down-vote re-sent with a comment is one vote
    rates = {r["intent"]: (r["down"], r["votes"], r["down_rate"]) for r in store.down_rate_per_intent()}
    assert rates == {"card_arrival": (1, 1, 1.0), "exchange_rate": (0, 1, 0.0)}
    assert {r["bucket"]: r["turns"] for r in store.confidence_histogram()} == {0.3: 1, 0.9: 1}
    assert store.most_down_voted() == [{"message": "Where is my card?", "intent": "card_arrival", "down_votes": 1}]
    store.append_feedback(Feedback("t2", -1, corrected_intent="exchange_via_app"))  # changed mind, then picked an alternative
    rates = {r["intent"]: (r["down"], r["votes"]) for r in store.down_rate_per_intent()}
    assert rates == {"card_arrival": (1, 1), "exchange_rate": (1, 1)} and store.daily_activity()[0]["votes"] == 2
    queue = {r["turn_id"]: r for r in store.review_queue(below_confidence=0.5)}
    assert set(queue) == {"t1", "t2"} and queue["t1"]["comment"] == "wrong / still wrong" and queue["t2"]["confidence"] == 0.3
    assert (queue["t1"]["customer_picked"], queue["t2"]["customer_picked"]) == (None, "exchange_via_app")  # shown to the reviewer
    store.append_feedback(Feedback("t1", 0, corrected_intent="lost_or_stolen_card", source="reviewer"))
    assert [r["turn_id"] for r in store.review_queue(below_confidence=0.5)] == ["t2"]
    assert store.handoffs_per_version()["v0001"] == {"model_version": "v0001", "sessions": 2, "handed_off": 1}
    out = io.StringIO()
    store.export_csv(out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("id,created_at,turn_id,session_id,message") and len(lines) == 6


def test_intent_transitions_count_next_questions_within_the_window(store):
    store.append_turn(reply("a1", "s1", intent="card_arrival"), "where is my card")
    store.append_turn(reply("a2", "s1", intent="activate_my_card"), "how do I activate it")
    store.append_turn(reply("b1", "s2", intent="card_arrival"), "card?")
    store.append_turn(reply("b2", "s2", intent="activate_my_card"), "activate?")
    store.append_feedback(Feedback("b2", -1))  # a wrong answer is not what was asked
    assert store.intent_transitions(within_s=600) == [("card_arrival", "activate_my_card", 1)]
    assert store.intent_transitions(within_s=-1) == []
