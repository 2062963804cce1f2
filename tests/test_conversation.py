"""Conversations: follow-ups read with their context, standalone questions alone, next questions learnt from sessions."""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from bot.assistant import WIDER_SEARCH
from bot.conversation import CONTEXT_WINDOW_S, Context, combine, context_bar, looks_like_followup
from core.config import Settings
from core.errors import InputError, UnknownTurn
from core.next_questions import MIN_COUNT, NextQuestions
from core.types import CHOSE_PREFIX, Feedback, Reply
from csbot.wiring import open_assistant
from retrieval.followup_reader import QUICK_OWN_BELOW, READ_BELOW, READER_FILE, FollowupReader
from retrieval.intent import IntentPrediction, with_context
from retrieval.query_map import query_vectors
from retrieval.ranker import Candidate
from tests.conftest import DATA, with_thresholds
from training.context_pairs import CONTEXTS_PER_FOLLOWUP, READER_DRAWS, READER_PAIRS, bundled_followups, fit_followup_reader, reader_pairs
from training.data import Example, split_tickets
from training.feedback import build_feedback_dataset
from training.retrain import audit_votes, followup_reader_draws, followup_reader_pairs, reader_limit, refresh_next_questions
from training.train_intent import IntentTrainConfig


def test_a_followup_is_read_with_the_turn_before_it(assistant):
    first = assistant.respond("I lost my card, what do I do?", "s1")
    follow = assistant.respond("is there a fee for a new one?", "s1")
    assert follow.context_turn_id == first.turn_id
    stored = assistant.store.turn(follow.turn_id)
    assert stored["context_turn_id"] == first.turn_id  # votes on it say whether context helps
    alone = assistant.respond("is there a fee for a new one?", "s2")  # a new session: nothing to lean on
    assert alone.context_turn_id == ""


def test_a_followup_is_answered_with_its_read_intent_even_when_that_ticket_is_less_similar(assistant):
    """The out-of-scope check asks whether anything retrieved is close; a follow-up read with its context is then
    answered with a ticket of the read intent, though that ticket alone is under the similarity bar ("and what
    does it cost?" after a transfer question: the one transfer_fee_charged ticket at 0.44, transfers at 0.71)."""
    fee, other = assistant.store.first_ticket("transfer_fee_charged"), assistant.store.first_ticket("receiving_money")
    bar = assistant.settings.min_similarity
    ranked = [Candidate(other, bar + 0.2, 0.1, 0.9), Candidate(fee, bar - 0.05, 0.8, 0.5)]
    prediction = IntentPrediction(["transfer_fee_charged", "receiving_money"], [0.8, 0.1])
    base = Reply(turn_id="t", session_id="s", action="handoff", text="", intent="", confidence=0.0, context_turn_id="earlier")
    reply = assistant._route(base, prediction, ranked, (0.5, 0.25))
    assert reply.action == "answer" and reply.intent == "transfer_fee_charged" and reply.text == fee.answer
    # nothing retrieved is close: out of scope, with or without a context
    far = [replace(c, similarity=bar - 0.1) for c in ranked]
    assert assistant._route(base, prediction, far, (0.5, 0.25)).action == "handoff"
    # a message read alone is answered with the best-ranked ticket, as before
    alone = assistant._route(replace(base, context_turn_id=""), prediction, ranked, (0.5, 0.25))
    assert alone.action == "answer" and alone.text == other.answer


def test_a_followup_read_as_an_intent_nothing_retrieved_has_gets_that_intents_nearest_tickets(assistant):
    """The context settles a follow-up's intent, but its few words may retrieve only other intents' tickets ("it got
    declined again online" after a virtual card: disposable-card tickets); the read intent's nearest tickets come
    from a wider search, so the reply answers with the intent it was read as."""
    _, classifier = assistant.intent_model()
    text = with_context(["My virtual card isn't working"], "it got declined again online")
    _, retrieved, vector = assistant._understand((classifier, text))
    near = {t.intent for t, _ in retrieved}
    search = query_vectors(classifier, assistant.kb.encoder, [text], vector[None, :])  # what respond searched with
    wider = assistant.kb.search(search, WIDER_SEARCH)[0]
    absent = next(t.intent for t, _ in wider if t.intent and t.intent not in near)
    found = assistant._tickets_of(absent, search[0], retrieved)
    assert found and {t.intent for t, _ in found} == {absent} and len(found) <= assistant.settings.top_k
    assert [t.id for t, _ in found] == [t.id for t, _ in wider if t.intent == absent][: len(found)]  # nearest first
    assert assistant._tickets_of(retrieved[0][0].intent, search[0], retrieved) == []  # one was retrieved


def test_a_labelled_followup_is_learnt_as_it_was_read(assistant):
    """A reviewer's label on a follow-up teaches the reading with its context, not the bare words."""
    first = assistant.respond("I want to send money to my friend abroad", "s1")
    follow = assistant.respond("is there a fee for a new one?", "s1")
    assert follow.context_turn_id == first.turn_id
    alone = assistant.respond("is there a fee for a new one?", "s2")
    for turn in (follow, alone):
        assistant.store.append_feedback(Feedback(turn.turn_id, 0, corrected_intent="transfer_fee_charged", source="reviewer"))
    rows = {r["turn_id"]: r for r in assistant.store.feedback_rows()}
    assert rows[follow.turn_id]["context"] == ["I want to send money to my friend abroad"] and rows[alone.turn_id]["context"] == []
    examples = build_feedback_dataset(list(rows.values()), {"transfer_fee_charged"}).examples
    earlier, message = "I want to send money to my friend abroad", "is there a fee for a new one?"
    assert {e.text for e in examples} == {with_context([earlier], message), message}
    # the follow-up reader gets the pair as it was read, from the store, not by splitting the text
    assert {e.followup for e in examples} == {((earlier,), message), None}
    pairs = followup_reader_pairs([Example("I lost my card", "lost_or_stolen_card")], examples, IntentTrainConfig(followup_pairs=1))
    assert ([earlier], message, "transfer_fee_charged") in pairs
    assert not any(m == message and not e for e, m, _ in pairs)  # the one read alone is no follow-up


def test_a_standalone_question_is_not_changed_by_context(assistant):
    assistant.respond("I lost my card, what do I do?", "s1")
    question = "How do I find out which fiat currencies your company supports for holding and exchange?"
    fresh = assistant.respond(question, "fresh")
    after = assistant.respond(question, "s1")
    assert not looks_like_followup(question, IntentPrediction([fresh.intent], [fresh.confidence]), assistant.thresholds(assistant.intent_model()[1])[0])
    assert after.context_turn_id == "" and (after.intent, after.confidence) == (fresh.intent, fresh.confidence)


def test_context_expires_after_the_window(assistant):
    first = assistant.respond("I lost my card, what do I do?", "s1")
    old = (datetime.now(timezone.utc) - timedelta(seconds=CONTEXT_WINDOW_S + 60)).isoformat(timespec="milliseconds")
    assistant.store.db.execute("update turns set created_at = ? where id = ?", [old, first.turn_id])
    assistant.store.db.conn.commit()
    assert assistant.respond("is there a fee for a new one?", "s1").context_turn_id == ""


def test_with_a_reader_a_short_followup_naming_a_generic_topic_is_read_with_context():
    """The topic rule turns "can i do it in the app?" away after a PIN question (the app is a topic of its own);
    a model with a follow-up reader reads any short message with its context, a long one still only by the rule."""
    pin = Context(["I want to change my PIN"], "t1")
    assert not pin.carries("can i do it in the app?")
    assert pin.leans_on("can i do it in the app?", reads_followups=True)
    assert not pin.leans_on("can i do it in the app?", reads_followups=False)
    assert not pin.leans_on("and how do I top up my account from the app with a card from another bank?", reads_followups=True)
    assert pin.leans_on("how long does it take to change it?", reads_followups=False)  # names nothing new


def test_combine_keeps_what_fits_both_readings():
    alone = IntentPrediction(["transfer_timing", "card_delivery_estimate", "pending_top_up"], [0.4, 0.45, 0.15])
    together = IntentPrediction(["transfer_into_account", "transfer_timing", "card_delivery_estimate"], [0.6, 0.35, 0.05])
    best = combine(alone, together)
    assert best.intent == "transfer_timing" and sum(best.probabilities) <= 1 + 1e-9  # the top of a distribution over all three
    unsure, sure = IntentPrediction(["a"], [0.4]), IntentPrediction(["a"], [0.9])
    assert looks_like_followup("and what does it cost?", unsure, 0.5) and looks_like_followup("help", unsure, 0.5)
    assert not looks_like_followup("and what does it cost?", sure, 0.5)  # answerable alone: answered alone
    assert not looks_like_followup("Which currencies can I hold in my account and exchange between?", unsure, 0.5)  # no cue
    lost_card, top_up = Context(["I lost my card, what do I do?"], "t1"), Context(["How do I top up?"], "t2")
    assert lost_card.carries("how long will the new card take?") and lost_card.carries("how long does it take?")
    assert not top_up.carries("and does it work for my virtual card?")  # a topic of its own: a new subject


def sessions_going(store, a: str, b: str, n: int, prefix: str) -> None:
    """``n`` sessions in which an answer about ``a`` was followed by one about ``b``."""
    for i in range(n):
        session = f"{prefix}-{i}"
        store.append_turn(Reply(f"{prefix}-{i}-a", session, "answer", "..", a, 0.9), "first question")
        store.append_turn(Reply(f"{prefix}-{i}-b", session, "answer", "..", b, 0.9), "next question")


def test_next_questions_come_from_session_counts_and_choosing_one_is_a_label(assistant, settings):
    question = "I lost my card, what do I do?"
    answered = assistant.respond(question, "probe")
    assert answered.action == "answer" and answered.next_questions == []  # no sessions counted yet: nothing offered
    a = answered.intent
    sessions_going(assistant.store, a, "card_delivery_estimate", MIN_COUNT + 2, "often")
    sessions_going(assistant.store, a, "order_physical_card", MIN_COUNT, "enough")
    sessions_going(assistant.store, a, "atm_support", MIN_COUNT - 1, "rare")  # too few sessions to offer
    assistant.store.append_feedback(Feedback("often-0-b", -1))  # a next question voted down does not count
    counts = refresh_next_questions(assistant.store, settings)
    assert counts.counts[a] == {"card_delivery_estimate": MIN_COUNT + 1, "order_physical_card": MIN_COUNT, "atm_support": MIN_COUNT - 1}
    assert NextQuestions.load(settings.models_dir).counts == counts.counts
    assistant._next_checked = -1.0  # the once-a-second check, without waiting a second
    reply = assistant.respond(question, "customer")
    assert [s.intent for s in reply.next_questions] == ["card_delivery_estimate", "order_physical_card"]
    chosen = assistant.choose(reply.turn_id, "card_delivery_estimate", "customer")
    assert chosen.action == "answer" and chosen.intent == "card_delivery_estimate"
    rows = assistant.store.db.execute("select turn_id, corrected_intent, comment from feedback where source = 'customer' and vote = 0").fetchall()
    assert rows == [(chosen.turn_id, "card_delivery_estimate", "next question")]  # a label on the new turn, not on the answer
    data = build_feedback_dataset(list(assistant.store.feedback_rows()), {"card_delivery_estimate", a})
    assert data.counts["topic_button_turns"] == 1 and not any(e.text.startswith(CHOSE_PREFIX) for e in data.examples)


def test_a_down_vote_offers_alternatives_and_picking_one_labels_the_message(assistant, settings):
    """After a down-vote on an answer: the other topics the message could be about; a pick is a label on that message,
    even when the picked topic is also one of the answer's "customers also asked"."""
    question = "I lost my card, what do I do?"
    answered = assistant.respond(question, "voter")
    assert answered.action == "answer"
    assert assistant.feedback(answered.turn_id, 1, session_id="voter").alternatives == []  # an up-vote offers nothing
    receipt = assistant.feedback(answered.turn_id, -1, session_id="voter")
    offered = [s.intent for s in receipt.alternatives]
    assert 1 <= len(offered) <= 3 and answered.intent not in offered and len(set(offered)) == len(offered)
    assert all(s.probability >= 0.01 for s in receipt.alternatives)
    pick = offered[0]
    NextQuestions({answered.intent: {pick: MIN_COUNT + 5}}).save(settings.models_dir)  # the pick is a next question too
    assistant._next_checked = -1.0
    again = assistant.respond(question, "voter2")
    assert pick in [s.intent for s in again.next_questions]
    assistant.feedback(again.turn_id, -1, session_id="voter2")
    chosen = assistant.choose(again.turn_id, pick, "voter2")
    assert chosen.action == "answer" and chosen.intent == pick
    label = assistant.store.db.execute("select turn_id, vote, corrected_intent from feedback where corrected_intent != ''").fetchall()
    assert label == [(again.turn_id, -1, pick)]  # on the answered message (not a next question on the new turn), the vote kept
    rows = [r for r in assistant.store.feedback_rows() if r["turn_id"] == again.turn_id]
    assert [e.label for e in build_feedback_dataset(rows, {pick, answered.intent}).examples] == [pick]
    assistant.feedback(again.turn_id, -1, comment="it was about something else", session_id="voter2")  # the widget's comment box
    latest = [r for r in assistant.store.feedback_rows() if r["turn_id"] == again.turn_id]
    assert [(r["vote"], r["corrected_intent"], r["comment"]) for r in latest] == [(-1, pick, "it was about something else")]  # pick kept
    # the suspect-feedback rule still counts the down-vote: a poisoner's wrong pick cannot hide it
    confident = [{**r, "confidence": 0.95} for r in rows]
    assert audit_votes(confident, None, None).down_votes == 1
    # a topic button's own answer: its "message" is the button's title, nothing to re-read
    assert assistant.feedback(chosen.turn_id, -1, session_id="voter2").alternatives == []


def test_alternatives_to_a_followup_come_from_its_reading_with_context(assistant):
    """A down-voted follow-up is re-read as respond read it: with the turn before it, not as bare words."""
    first = assistant.respond("I lost my card, what do I do?", "ctx")
    follow = assistant.respond("is there a fee for a new one?", "ctx")
    assert follow.context_turn_id == first.turn_id and follow.action == "clarify"
    answered = replace(follow, turn_id="ctx-answered", action="answer", intent=follow.suggestions[0].intent, suggestions=[])
    assistant.store.append_turn(answered, "is there a fee for a new one?")
    offered = [s.intent for s in assistant.alternatives("ctx-answered")]
    # the reading with context ranked these right after the intent now answered (as its clarification showed)
    assert offered[:2] == [s.intent for s in follow.suggestions[1:3]]
    alone = replace(answered, turn_id="alone-answered", session_id="ctx-alone", context_turn_id="")
    assistant.store.append_turn(alone, "is there a fee for a new one?")
    assert [s.intent for s in assistant.alternatives("alone-answered")] != offered  # the bare words read otherwise


def test_another_sessions_turn_offers_no_alternatives(assistant):
    """A down-vote names a turn id; a stranger holding someone else's id learns nothing of what that message meant."""
    answered = assistant.respond("I lost my card, what do I do?", "owner")
    assert assistant.alternatives(answered.turn_id, "owner") != []
    assert assistant.alternatives(answered.turn_id, "stranger") == []
    with pytest.raises(UnknownTurn):
        assistant.feedback(answered.turn_id, -1, session_id="stranger")
    assert assistant.store.customer_feedback(answered.turn_id) == (0, "", [])  # nothing written


def test_only_a_topic_the_bot_offered_can_be_picked(assistant, settings):
    """A pick is a label: a script must not write any label it likes onto its own turns."""
    answered = assistant.respond("I lost my card, what do I do?", "picker")
    labels = assistant.intent_model()[1].labels
    with pytest.raises(InputError, match="one of the ones I offered"):
        assistant.choose(answered.turn_id, "exchange_rate", "picker")  # not voted down: no alternatives yet
    receipt = assistant.feedback(answered.turn_id, -1, session_id="picker")
    offered = [s.intent for s in receipt.alternatives]
    never = next(i for i in labels if i not in offered and i != answered.intent and i not in [s.intent for s in answered.next_questions])
    stored = assistant.store.count("feedback")
    with pytest.raises(InputError, match="one of the ones I offered"):
        assistant.choose(answered.turn_id, never, "picker")
    assert assistant.store.count("feedback") == stored  # refused: nothing written
    assert assistant.choose(answered.turn_id, offered[0], "picker").intent == offered[0]
    assert assistant.choose(answered.turn_id, offered[-1], "picker").intent == offered[-1]  # a second pick from the same offer
    assert assistant.store.customer_feedback(answered.turn_id) == (-1, offered[-1], offered)
    unsure = open_assistant(with_thresholds(settings, answer=1.0, handoff=0.0))  # every reply a clarification
    clarified = unsure.respond("my card", "picker2")
    suggested = [s.intent for s in clarified.suggestions]
    with pytest.raises(InputError, match="one of the ones I offered"):
        unsure.choose(clarified.turn_id, next(i for i in labels if i not in suggested), "picker2")
    assert unsure.choose(clarified.turn_id, suggested[-1], "picker2").intent == suggested[-1]


def test_followups_made_from_tickets_leave_the_topic_to_the_earlier_message():
    import random

    from training.context_pairs import elide, make_pairs, mentions

    short, topic = elide("How long does a transfer take to arrive?", random.Random(0))
    assert (short, topic) == ("how long does it take to arrive?", "transfer")
    assert elide("Is there a fee for that?", random.Random(0)) == ("is there a fee for that?", "")  # the fee is what is asked
    questions = [
        ("How long does a transfer take to arrive?", "transfer_timing"),
        ("Why was my transfer declined?", "declined_transfer"),
        ("When will my card arrive?", "card_arrival"),
        ("I lost my card", "lost_or_stolen_card"),
        ("What exchange rate do you use?", "exchange_rate"),
    ]
    pairs = make_pairs(questions, seed=1, standalone_share=1.0, insist_share=0.4)
    elliptical = [p for p in pairs if p.kind == "elliptical"]
    own = dict((i, q) for q, i in questions)
    assert elliptical and all(p.message != own[p.intent].lower() and p.context != own[p.intent] for p in elliptical)
    for p in elliptical:  # the earlier message names the topic the follow-up left out
        assert mentions(p.context) & mentions(own[p.intent]) - mentions(p.message)
    assert {p.kind for p in pairs} == {"elliptical", "standalone", "insist"}
    assert all(p.message == q for p in pairs if p.kind == "standalone" for q, i in questions if i == p.intent)
    assert make_pairs(questions, seed=1) == make_pairs(questions, seed=1)  # deterministic


def test_fine_tuning_reads_the_followups_the_way_serving_does():
    from retrieval.intent import with_context
    from training.data import Example
    from training.retrain import context_examples
    from training.train_intent import IntentTrainConfig

    tickets = [Example("How long does a transfer take?", "transfer_timing"), Example("Why was my transfer declined?", "declined_transfer")]
    made = context_examples(tickets, IntentTrainConfig(context_pairs=True))
    assert made and all(e.text.count(" [SEP] ") == 1 for e in made)
    assert any(e.text == with_context(["Why was my transfer declined?"], "how long does it take?") for e in made)
    assert context_examples(tickets, IntentTrainConfig(quick=True, context_pairs=True)) == []  # a frozen encoder cannot learn them
    assert context_examples(tickets, IntentTrainConfig()) == []  # off by default (README: what it costs)


def test_the_followup_reader_is_trained_on_no_evaluation_followup_and_on_the_deployments_labels():
    """The bundled training follow-ups share no message with the evaluation conversations; the reader also learns
    the deployment's labelled follow-ups as they were read, and nothing from a down-vote."""
    with (DATA / "conversations.csv").open(newline="") as f:
        evaluation = {r["message"].strip().lower() for r in csv.DictReader(f)}
    bundled = bundled_followups()
    assert len(bundled) >= 200 and not {m.strip().lower() for _, m, _ in bundled} & evaluation
    questions = [("I lost my card", "lost_or_stolen_card"), ("my card was stolen yesterday", "lost_or_stolen_card"), ("how do I top up?", "top_up_limits")]
    lost, later = ("I lost my card",), "how long will a new one take?"
    labelled = Example(with_context(list(lost), later), "card_delivery_estimate", followup=(lost, later))
    down = Example(with_context(list(lost), "is it free?"), "order_physical_card", negative=True, followup=(lost, "is it free?"))
    pairs = followup_reader_pairs([Example(q, i) for q, i in questions], [labelled, down, Example("a plain question", "top_up_limits")], IntentTrainConfig())
    assert (["I lost my card"], "how long will a new one take?", "card_delivery_estimate") in pairs
    assert not any(m == "is it free?" or m == "a plain question" for _, m, _ in pairs)
    after_lost_card = [(e, m) for e, m, i in pairs if (i, m) in {(i2, m2) for e2, m2, i2 in bundled if e2 == "lost_or_stolen_card"} and e != ["I lost my card"]]
    assert after_lost_card and all(e[0] in ("I lost my card", "my card was stolen yesterday") for e, _ in after_lost_card)
    assert followup_reader_pairs([Example(q, i) for q, i in questions], [labelled], IntentTrainConfig(followup_pairs=0)) == []


def test_the_reader_learns_that_short_unseen_questions_keep_their_own_intent():
    """Short validation questions (the encoder never trained on them) are read after unrelated ticket questions
    and keep their own label; long ones are not read with context by serving, so not here either."""
    questions = [Example("I lost my card", "lost_or_stolen_card"), Example("how do I top up?", "top_up_limits")]
    val = [
        Example("is apple pay supported?", "apple_pay_or_google_pay"),
        Example("why is there a fee on the transfer that i made yesterday?", "transfer_fee_charged"),
    ]
    pairs = followup_reader_pairs(questions, [], IntentTrainConfig(followup_pairs=10), val=val)
    unseen = [(e, i) for e, m, i in pairs if m == "is apple pay supported?"]
    assert len(unseen) == CONTEXTS_PER_FOLLOWUP
    assert all(i == "apple_pay_or_google_pay" and e[0] in ("I lost my card", "how do I top up?") for e, i in unseen)
    assert not any(m.startswith("why is there a fee") for _, m, _ in pairs)
    assert followup_reader_pairs(questions, [], IntentTrainConfig(followup_pairs=0), val=val) == []


def test_a_reader_is_deterministic_and_a_damaged_one_is_ignored(tmp_path):
    rng = np.random.default_rng(0)
    alone, together = rng.normal(size=(60, 8)).astype(np.float32), rng.normal(size=(60, 8)).astype(np.float32)
    targets = (alone[:, 0] + together[:, 1] > 0).astype(int)  # the intent needs both readings
    first, again = FollowupReader.fit(alone, together, targets, 2, seed=3), FollowupReader.fit(alone, together, targets, 2, seed=3)
    assert np.array_equal(first.weights, again.weights)
    assert (first.probabilities(alone, together).argmax(1) == targets).mean() > 0.9
    # the mean of readers fitted on other draws averages their logits (the linear layer's weights)
    other = FollowupReader.fit(alone[:40], together[:40], targets[:40], 2, seed=4)
    logits = lambda r: np.hstack([alone, together]) @ r.weights + r.bias  # noqa: E731
    assert np.allclose(logits(FollowupReader.average([first, other])), (logits(first) + logits(other)) / 2, atol=1e-5)
    first.save(tmp_path)
    assert np.allclose(FollowupReader.load(tmp_path).probabilities(alone, together), first.probabilities(alone, together))
    (tmp_path / READER_FILE).write_bytes(b"not a reader")
    assert FollowupReader.load(tmp_path) is None


def test_the_nearest_labelled_pairs_vote_on_what_a_followup_asks(tmp_path):
    """A linear layer draws one boundary per intent; which of two neighbouring intents is meant can depend on both
    readings together, which the pairs nearest a follow-up know. The vote is saved with the reader."""
    rng = np.random.default_rng(1)
    alone, together = rng.normal(size=(300, 4)).astype(np.float32), rng.normal(size=(300, 4)).astype(np.float32)
    targets = ((alone[:, 0] > 0) ^ (together[:, 1] > 0)).astype(int)  # no line separates them
    layer = FollowupReader.fit(alone, together, targets, 2, seed=0)
    voting = layer.remembering(alone[:200], together[:200], targets[:200])
    held = slice(200, None)
    right = lambda reader: (reader.reading(alone[held], together[held]).argmax(1) == targets[held]).mean()  # noqa: E731
    assert right(voting) > right(layer) + 0.1
    # whether a reading is taken is decided on the layer as fitted, which the vote leaves alone
    assert np.array_equal(voting.probabilities(alone, together), layer.probabilities(alone, together))
    voting.save(tmp_path)
    loaded = FollowupReader.load(tmp_path)
    assert np.array_equal(loaded.memory_labels, targets[:200]) and np.allclose(loaded.reading(alone, together), voting.reading(alone, together), atol=1e-3)


def test_a_first_start_fits_a_quick_reader_that_keeps_a_question_its_own_words_still_name(tmp_path, small_tickets, small_followups):
    """A first start (``ensure_ready``) fits its quick model a follow-up reader on one draw of pairs, with the quick
    rule (``QUICK_OWN_BELOW``); ``first_reader_pairs=0`` fits none (the other tests' home, tests/conftest.py)."""
    from csbot.wiring import ensure_ready

    settings = Settings(home=tmp_path / "home", default_tickets=small_tickets, followups_file=small_followups, first_reader_pairs=200)
    ensure_ready(settings)
    assistant = open_assistant(settings)
    classifier = assistant.intent_model()[1]
    account = assistant.registry.card("intent", classifier.model_dir.name)["followup_reader"]
    assert account["fitted"] and account["draws"] == 1 and account["own_below"] == QUICK_OWN_BELOW
    assert classifier.reads_followups and FollowupReader.load(classifier.model_dir).own_below == pytest.approx(QUICK_OWN_BELOW)
    assistant.respond("I lost my card, what do I do?", "s1")
    assert assistant.respond("is there a fee for a new one?", "s1").context_turn_id  # a follow-up read with its context
    assistant.respond("I lost my card, what do I do?", "s2")
    standalone = "How do I top up my account with a bank transfer?"
    assert assistant.respond(standalone, "s2").intent == classifier.predict([standalone])[0].intent  # its own words


def test_a_model_with_a_reader_reads_more_followups_with_context(settings):
    """The tests' quick model has no reader (``first_reader_pairs=0``, tests/conftest.py); one fitted on its embeddings
    reads a short follow-up, sure enough alone to be answered alone under the plain mixture's bar (the answer
    threshold), with its context, and holds a long message to the answer threshold."""
    assistant = open_assistant(settings)
    classifier = assistant.intent_model()[1]
    version_dir = classifier.model_dir
    assert not classifier.reads_followups
    assert assistant.registry.card("intent", version_dir.name)["followup_reader"]["fitted"] is False
    tickets, _ = split_tickets(assistant.kb.labelled())
    questions = [(e.text, e.label) for e in tickets]
    written = bundled_followups(settings.followups_file)
    fitted = fit_followup_reader(version_dir, [reader_pairs(questions, limit=1000, followups=written)])  # one draw: averaging is tested above
    assert fitted["fitted"] and fitted["draws"] == 1 and fitted["pairs"] > 1000 + len(written)  # the written follow-ups beside the pairs made from tickets
    assistant = open_assistant(settings)
    classifier = assistant.intent_model()[1]
    assert classifier.reads_followups
    answer = assistant.thresholds(classifier)[0]
    assert context_bar("and what about abroad?", answer, True) == READ_BELOW > answer
    assert context_bar("I topped up with my card but it has not shown up in my balance", answer, True) == answer  # long
    assert context_bar("and what about abroad?", answer, False) == answer  # no reader
    first = "I lost my card, what do I do?"
    candidates = ["how long will the new one take?", "and what does it cost?", "is there a fee for a new one?", "how long does that take?",
                  "can i do it in the app?", "it still hasn't arrived", "what about abroad?", "and how do I get a new one?"]  # fmt: skip
    # a follow-up sure enough alone to be answered alone under the plain mixture's rule, not under the reader's
    followup = next(m for m, p in zip(candidates, classifier.predict(candidates)) if answer <= p.confidence < READ_BELOW)
    assistant.respond(first, "s1")
    read = assistant.respond(followup, "s1")
    alone_vector, together_vector = classifier.embed([followup, with_context([first], followup)])
    assert read.context_turn_id and read.intent == classifier.read_followups(alone_vector[None, :], together_vector[None, :])[0].intent
    # the reading routes the reply; whether it is taken at all is decided on the layer as fitted
    calibrated = classifier.read_followups(alone_vector[None, :], together_vector[None, :])[0]
    as_fitted = classifier.read_followups(alone_vector[None, :], together_vector[None, :], calibrated=False)[0]
    reader = FollowupReader.load(version_dir)  # calibrated: the layer with its nearest pairs' vote, softened; as fitted: the layer
    assert reader.memory is not None and len(reader.memory_labels) == fitted["voting_pairs"] == fitted["pairs"]
    assert np.isclose(calibrated.confidence, reader.reading(alone_vector[None, :], together_vector[None, :]).max(), atol=1e-4)
    assert np.isclose(as_fitted.confidence, reader.probabilities(alone_vector[None, :], together_vector[None, :]).max(), atol=1e-4)
    assert read.confidence == round(calibrated.confidence, 4)
    # a reader that gives the message's own intent at least ``own_below`` (a quick model's rule) leaves it alone too
    own = classifier.predict([followup])[0]
    own_share = reader.probabilities(alone_vector[None, :], together_vector[None, :])[0][classifier.labels.index(own.intent)]
    assert classifier.takes_reading(alone_vector[None, :], together_vector[None, :], own)
    replace(reader, own_below=max(float(own_share) - 1e-3, 0.0)).save(version_dir)  # margins: serving's own embedding pass
    assert FollowupReader.load(version_dir).own_below == pytest.approx(max(own_share - 1e-3, 0.0))
    strict = open_assistant(settings)
    strict.respond(first, "s4")
    assert strict.respond(followup, "s4").context_turn_id == ""
    replace(reader, own_below=float(own_share) + 1e-3).save(version_dir)
    lenient = open_assistant(settings)
    lenient.respond(first, "s5")
    assert lenient.respond(followup, "s5").context_turn_id
    # a reader no surer than the message alone (this one is sure of nothing) leaves the message to its own words
    hidden = alone_vector.shape[0]
    FollowupReader(np.zeros((2 * hidden, len(classifier.labels)), np.float32), np.zeros(len(classifier.labels), np.float32)).save(version_dir)
    unsure = open_assistant(settings)
    unsure.respond(first, "s3")
    left_alone = unsure.respond(followup, "s3")
    assert left_alone.context_turn_id == "" and left_alone.intent == classifier.predict([followup])[0].intent
    (version_dir / READER_FILE).unlink()  # the same model without its reader
    plain = open_assistant(settings)
    plain.respond(first, "s2")
    assert plain.respond(followup, "s2").context_turn_id == ""
    # a quick config gets no reader unless asked for (a first start and `csbot train --quick` ask: CSBOT_FIRST_READER_PAIRS);
    # `retrain` fits it on these draws, empty (one draw for a quick model)
    assert reader_limit(IntentTrainConfig(quick=True)) == 0 and reader_limit(IntentTrainConfig()) == READER_PAIRS
    quick_draws = followup_reader_draws(tickets, [], IntentTrainConfig(quick=True), followups=written)
    assert quick_draws == [[]] and fit_followup_reader(version_dir, quick_draws)["fitted"] is False
    assert not (version_dir / READER_FILE).exists()
    assert len(followup_reader_draws(tickets, [], IntentTrainConfig(), followups=written)) == READER_DRAWS
