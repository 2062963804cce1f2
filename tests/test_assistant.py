from __future__ import annotations

import sqlite3

import pytest

from core.errors import InputError, UnknownTurn
from csbot.wiring import open_assistant, retrain
from tests.conftest import with_thresholds
from training.train_intent import IntentTrainConfig


def rows(settings, sql):
    return sqlite3.connect(settings.db_path).execute(sql).fetchall()


def test_lost_card_is_answered_with_sources(assistant, settings):
    reply = assistant.respond("I lost my card, what do I do?")
    assert reply.action == "answer"
    assert reply.intent == "lost_or_stolen_card"
    assert reply.text.startswith("If your card is lost or stolen, freeze it")
    assert reply.sources and reply.sources[0].intent == "lost_or_stolen_card"
    assert reply.model_version == "v0001" and reply.latency_ms > 0
    assert rows(settings, "select id, action from turns") == [(reply.turn_id, "answer")]


def test_low_confidence_clarifies_with_top_three(settings):
    assistant = open_assistant(with_thresholds(settings, answer=1.0, handoff=0.0))
    reply = assistant.respond("my card")
    assert reply.action == "clarify" and len(reply.suggestions) == 3
    chosen = reply.suggestions[1].intent
    answer = assistant.choose(reply.turn_id, chosen, reply.session_id)
    assert answer.action == "answer" and answer.intent == chosen
    assert rows(settings, "select corrected_intent, source from feedback") == [(chosen, "customer")]


def test_very_low_confidence_offers_a_person(settings):
    assistant = open_assistant(with_thresholds(settings, answer=1.0, handoff=1.0))
    reply = assistant.respond("what's the weather in Paris")
    assert reply.action == "handoff" and "talk to a person" in reply.text


def test_serving_uses_the_thresholds_the_model_chose_on_validation(assistant, settings):
    classifier = assistant.intent_model()[1]
    chosen = classifier.config.thresholds
    assert 0 < chosen["handoff"] <= chosen["answer"] < 1
    assert assistant.thresholds(classifier) == (chosen["answer"], chosen["handoff"])
    assert assistant.health()["thresholds"] == {"answer": chosen["answer"], "handoff": chosen["handoff"]}
    assert assistant.health()["retrieval_vectors"] == "shared"  # the quick model's pass is the retrieval pass
    by_hand = open_assistant(with_thresholds(settings, answer=0.7, handoff=0.1))
    assert by_hand.thresholds(classifier) == (0.7, 0.1)  # a threshold set by hand (CSBOT_*_THRESHOLD) wins


@pytest.mark.parametrize("question", ["what's the weather in Paris", "tell me a joke", "who won the football match yesterday"])
def test_far_from_every_intent_gets_no_confident_banking_answer(assistant, question):
    reply = assistant.respond(question)
    assert reply.action in ("handoff", "clarify"), (reply.action, reply.intent, reply.confidence)


def test_asking_for_a_person_silences_the_bot_until_handed_back(assistant, settings):
    first = assistant.respond("Can I talk to a human please?")
    assert first.action == "handoff" and first.state == "waiting"
    later = assistant.respond("I lost my card", first.session_id)
    assert later.text == "" and later.state == "waiting"  # the bot says nothing; the message goes to the inbox
    assert [e["text"] for e in assistant.desk.store.events(session_id=first.session_id, kinds=("customer",))] == ["I lost my card"]
    assistant.desk.claim(first.session_id, "Sam")
    assert assistant.respond("hello?", first.session_id).agent == "Sam"
    assistant.desk.release(first.session_id, "Sam")
    assert assistant.respond("I lost my card", first.session_id).action == "answer"


@pytest.mark.parametrize("message", ["", "   \n\t ", None, 42])
def test_empty_or_non_text_messages_are_refused_plainly(assistant, settings, message):
    with pytest.raises(InputError, match="question|text"):
        assistant.respond(message)
    assert rows(settings, "select count(*) from turns") == [(0,)]


def test_huge_message_is_truncated_with_a_notice(assistant, settings):
    reply = assistant.respond("I lost my card " * 7000)  # ~105,000 characters
    assert "only the first 2000" in reply.notice
    stored = rows(settings, "select length(message) from turns")[0][0]
    assert stored == 2000


def test_votes_are_stored_in_the_sqlite_file(assistant, settings):
    reply = assistant.respond("I lost my card, what do I do?")
    assistant.feedback(reply.turn_id, -1, comment="not helpful, mail me at a@b.com", session_id=reply.session_id)
    assert rows(settings, "select turn_id, vote, comment from feedback") == [(reply.turn_id, -1, "not helpful, mail me at [EMAIL]")]
    with pytest.raises(UnknownTurn):
        assistant.feedback(reply.turn_id, 1, session_id="another-session")
    with pytest.raises(UnknownTurn):
        assistant.feedback("no-such-turn", 1)


def test_serving_follows_a_promoted_version_without_restart(assistant, settings):
    assert assistant.respond("I lost my card").model_version == "v0001"
    result = retrain(settings, IntentTrainConfig(quick=True, followup_pairs=0))
    assert result.promoted
    assert assistant.respond("I lost my card").model_version == result.version
    assistant.registry.rollback("intent")  # the pointer in the database, as `csbot models rollback` moves it
    assert assistant.respond("I lost my card").model_version == "v0001"


def test_a_broken_model_folder_keeps_the_last_good_version(assistant, settings):
    assistant.respond("hello")
    registry = assistant.registry
    staging = registry.staging_dir("intent")
    (staging / "config.json").write_text("{not json")
    broken = registry.publish("intent", staging, {"note": "corrupt"})
    registry.promote("intent", broken)
    reply = assistant.respond("I lost my card")
    assert reply.model_version == "v0001" and reply.action == "answer"
