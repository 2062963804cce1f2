"""The Assistant: the one object the UI, the REST API, the widget and the CLI call.

respond(message) = validate -> (handed off? stay silent) -> intent -> retrieve -> rank -> route -> record.
Routing: answer when the calibrated confidence is high, offer the top intents when it is middling,
hand off to a person when it is low (the question is probably outside what the bot knows).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from bot.batcher import MicroBatcher
from bot.conversation import CONTEXT_TURNS, Context, combine, context_bar, context_from_turns, looks_like_followup, window_start
from bot.handoff import HANDOFF_REQUEST, HandoffDesk
from bot.mood import OFFER_TEXT, frustrated
from core.config import Settings
from core.errors import InputError, ModelNotFound
from core.next_questions import FILE_NAME as NEXT_QUESTIONS_FILE
from core.next_questions import NextQuestions
from core.registry import ModelRegistry
from core.store import FeedbackStore
from core.types import CHOSE_PREFIX, Feedback, Reply, Source, Suggestion, VoteReceipt
from retrieval.index import set_search_threads
from retrieval.intent import IntentClassifier, IntentPrediction
from retrieval.knowledge_base import KnowledgeBase
from retrieval.query_map import query_vectors, search_with, vectors_kind
from retrieval.ranker import Candidate, Ranker

_LOADERS = {"intent": lambda path: IntentClassifier(path).warm_up(), "ranker": Ranker.load}

log = logging.getLogger(__name__)

OUT_OF_SCOPE_TEXT = "I'm not sure I can answer that correctly. Could you rephrase it, or would you like to talk to a person?"
UNSURE_AGAIN_TEXT = "I'm still not sure I can answer that correctly, so I'm passing this conversation to a member of our support team."
CLARIFY_TEXT = "I want to be sure I understand. Which of these is closest to your question?"
ALTERNATIVES_TEXT = "Sorry that didn't help. Did you mean one of these?"
MAX_ALTERNATIVES = 3
WIDER_SEARCH = 300  # tickets searched for a follow-up's read intent when none was retrieved (``_tickets_of``)
ALTERNATIVE_FLOOR = 0.01  # an intent the model gives less than 1% is noise on a button, not an alternative


def intent_title(intent: str) -> str:
    """'lost_or_stolen_card' -> 'Lost or stolen card' (the answers file may give better titles)."""
    text = intent.replace("_", " ").strip(" ?").lower()
    return text[:1].upper() + text[1:]


def _per_model(items: list[tuple], run: Callable[[IntentClassifier, list[tuple]], Sequence]) -> list:
    """Runs ``run`` once per classifier in a batch (a hot reload may put two versions in one) and puts each
    result back in its request's place."""
    groups: dict[int, tuple[IntentClassifier, list[int]]] = {}
    for i, item in enumerate(items):
        groups.setdefault(id(item[0]), (item[0], []))[1].append(i)
    out: list = [None] * len(items)
    for classifier, rows in groups.values():
        for i, result in zip(rows, run(classifier, [items[i] for i in rows])):
            out[i] = result
    return out


class Assistant:
    """Routes a customer's message to an answer, a clarifying question or a person, and records every turn.

    Serving follows the registry's CURRENT pointer: a newly promoted intent model is loaded on the next
    request, without a restart; requests already running finish on the model they started with.

    Example:
        >>> assistant = open_assistant(Settings.from_env())   # doctest: +SKIP
        >>> assistant.respond("I lost my card, what do I do?").action   # doctest: +SKIP
        'answer'
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: FeedbackStore,
        knowledge_base: KnowledgeBase,
        registry: ModelRegistry,
        ranker: Ranker | None = None,
        desk: HandoffDesk | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.kb = knowledge_base
        self.registry = registry
        self.ranker = ranker if ranker is not None else Ranker.baseline()  # until a learned ranker beats it
        self._models: dict[str, tuple[str, object]] = {}
        self._broken: dict[str, str] = {}  # kind -> a version that failed to load
        self._pointer: dict[str, tuple[float, str | None]] = {}  # kind -> (when read, the version it named)
        self._default_ranker = self.ranker
        self.desk = desk if desk is not None else HandoffDesk(settings, store, add_ticket=knowledge_base.add)
        self._reload_lock = threading.Lock()
        self._next_counts, self._next_mtime, self._next_checked = NextQuestions(), None, -1.0
        # Concurrent requests share the model passes (intent + retrieval encoder), then, on a second thread, the
        # intent head and the FAISS search: a batch is searched while the next one is encoded. Measured under load
        # on 2 cores, the single model thread was busy 94% of the time, 20% of it searching and fetching tickets.
        self._encode = MicroBatcher(self._encode_batch, max_batch=settings.max_batch, name="csbot-encoder")
        self._lookup = MicroBatcher(self._lookup_batch, max_batch=settings.max_batch, name="csbot-search")

    def warm_up(self) -> Assistant:
        self.kb.open()
        self.kb.encoder.warm_up()
        self.intent_model()
        self.ranking_model()
        return self

    # ---- model version handling ------------------------------------------------------------
    def _current(self, kind: str):
        """(version, model) serving for ``kind``; reloads when the registry's pointer moved.

        A version that fails to load is logged and skipped: the last good one keeps serving.
        """
        held = self._models.get(kind)
        now = time.monotonic()
        checked_at, wanted = self._pointer.get(kind, (float("-inf"), None))
        if kind not in self._pointer or now - checked_at >= self.settings.model_check_s:  # the pointer is read at most once a second
            wanted = self.registry.current_version(kind)
            self._pointer[kind] = (now, wanted)
        if held is not None and (wanted is None or held[0] == wanted or self._broken.get(kind) == wanted):
            return held  # unchanged, or the pointer names a version already found broken: no retry per request
        if wanted is None:
            if kind == "ranker":  # no learned ranker has beaten the baseline yet: serve the baseline
                return ("default", self._default_ranker)
            raise ModelNotFound(f"no {kind} model is serving yet; run `csbot train` (or `csbot serve` trains one)")
        with self._reload_lock:
            held = self._models.get(kind)
            if held is not None and held[0] == wanted:
                return held
            try:
                version, path = self.registry.current(kind)
                self._models[kind] = (version, _LOADERS[kind](path))
                log.info("serving %s model %s", kind, version)
            except Exception as err:  # a broken folder must not take serving down
                if held is None:
                    if kind == "ranker":
                        log.error("cannot load ranker %s (%s); using the default ranker", wanted, err)
                        return ("default", self._default_ranker)
                    raise ModelNotFound(f"the {kind} model {wanted} cannot be loaded: {err}") from err
                log.error("cannot load %s model %s (%s); still serving %s", kind, wanted, err, held[0])
                self._broken[kind] = wanted
                return held
            return self._models[kind]

    def intent_model(self) -> tuple[str, IntentClassifier]:
        return self._current("intent")

    def ranking_model(self) -> tuple[str, Ranker]:
        return self._current("ranker")

    @property
    def model_version(self) -> str:
        return self.intent_model()[0]

    # ---- the pipeline ----------------------------------------------------------------------
    def _clean(self, message: object) -> tuple[str, str]:
        if not isinstance(message, str):
            raise InputError("the message must be text")
        text = message.replace("\x00", "").strip()
        if not text:
            raise InputError("Please type a question first: the message was empty.")
        notice = ""
        limit = self.settings.max_message_chars
        if len(text) > limit:
            text = text[:limit]
            notice = f"Your message was longer than {limit} characters, so only the first {limit} were read."
        return text, notice

    def respond(self, message: str, session_id: str | None = None) -> Reply:
        """Answer one customer message. Raises InputError (with a plain sentence) for unusable input."""
        started = time.perf_counter()
        text, notice = self._clean(message)
        session_id = session_id or uuid.uuid4().hex
        version, classifier = self.intent_model()
        ranker_version, ranker = self.ranking_model()
        base = Reply(
            turn_id=uuid.uuid4().hex,
            session_id=session_id,
            action="handoff",
            text="",
            intent="",
            confidence=0.0,
            model_version=version,
            ranker_version=ranker_version,
            notice=notice,
        )
        state, agent = self.desk.state(session_id)
        if state != "bot":  # a person has the conversation: the bot stays silent, the message goes to the inbox
            reply = replace(base, state=state, agent=agent)
            self.store.append_turn(reply, text)
            self.desk.customer_message(session_id, reply.turn_id, text)
            return reply
        if HANDOFF_REQUEST.search(text):
            text_for_customer = self.desk.request(session_id, "asked for a person", base.turn_id)
            state, agent = self.desk.state(session_id)
            reply = replace(base, text=text_for_customer, state=state, agent=agent)
        else:
            thresholds = self.thresholds(classifier)
            prediction, retrieved, vector = self._understand((classifier, text))
            # The cheap test first: most messages stand alone and never cost the session read.
            below = context_bar(text, thresholds[0], classifier.reads_followups)
            context = self._context(session_id) if looks_like_followup(text, prediction, below) else None
            leans = context is not None and context.leans_on(text, classifier.reads_followups)
            read = self._with_context(classifier, context, text, prediction, vector, retrieved) if leans else None
            if read is not None:
                prediction, retrieved = read
                base = replace(base, context_turn_id=context.turn_id)
            ranked = ranker.rank(retrieved, dict(zip(prediction.labels, prediction.probabilities)))
            reply = self._route(base, prediction, ranked, thresholds)
            reply = self._after_route(reply, text, session_id)
        reply = replace(reply, latency_ms=round((time.perf_counter() - started) * 1000, 2))
        self.store.append_turn(reply, text)
        return reply

    def _after_route(self, reply: Reply, text: str, session_id: str) -> Reply:
        """Unsure twice in a row: a person takes over. A frustrated customer: offer one. An answer: next questions."""
        if reply.action == "handoff":
            previous = self.store.recent_turns(session_id, limit=1, since="")
            if previous and previous[0]["action"] == "handoff" and previous[0]["text"] == OUT_OF_SCOPE_TEXT:
                self.desk.request(session_id, "bot unsure", reply.turn_id)
                state, agent = self.desk.state(session_id)
                return replace(reply, text=UNSURE_AGAIN_TEXT, state=state, agent=agent)
            return replace(reply, offer_person=True)
        votes = self.store.recent_votes(session_id)
        # the same matter again right after a down-vote: the same intent, or the same words (which, read with a
        # context that now holds the down-voted turn, may be understood otherwise)
        same = bool(votes) and (votes[0]["intent"] == reply.intent or votes[0]["message"].strip().lower() == text.strip().lower())
        repeats = same and votes[0]["vote"] < 0 and votes[0]["latest"]
        why = frustrated(text, [v["vote"] for v in votes], repeats)
        if why:
            log.info("offering a person to session %s: %s", session_id, why)
            return replace(reply, offer_person=True, text=f"{reply.text}\n\n{OFFER_TEXT}")
        if reply.action == "answer":
            return replace(reply, next_questions=self.next_questions_for(reply.intent))
        return reply

    def _context(self, session_id: str) -> Context | None:
        return context_from_turns(self.store.recent_turns(session_id, limit=CONTEXT_TURNS, since=window_start()))

    def _with_context(
        self, classifier: IntentClassifier, context: Context, text: str, alone: IntentPrediction, alone_vector: np.ndarray, retrieved: list
    ) -> tuple[IntentPrediction, list] | None:
        """Read the message with its context (the model's follow-up reader when it has one, else the two readings'
        mixture); retrieve with both readings (the context names the topic). None when the reader is no surer
        than the message alone: the message then stands alone (a short question after an unrelated one, where
        reading it with the context cost single questions accuracy)."""
        together_text = context.text_with(text)
        together_vector, together_search = self._encode((classifier, together_text))  # its search vector: ``_tickets_of``
        together, retrieved_together = self._lookup((classifier, together_text, together_vector, together_search))
        seen = {t.id for t, _ in retrieved_together}
        merged = sorted(retrieved_together + [(t, s) for t, s in retrieved if t.id not in seen], key=lambda ts: -ts[1])
        if classifier.reads_followups:
            alone_vector, together_vector = alone_vector[None, :], together_vector[None, :]
            if not classifier.takes_reading(alone_vector, together_vector, alone):
                return None
            read = classifier.read_followups(alone_vector, together_vector)[0]  # calibrated: answer, clarify or hand off
        else:
            read = combine(alone, together)
        return read, merged + self._tickets_of(read.intent, together_search, merged)

    def _tickets_of(self, intent: str, search_vector: np.ndarray, retrieved: list) -> list:
        """When none of the ``retrieved`` tickets is of ``intent`` (what a follow-up was read as), the nearest of that
        intent's tickets from a wider search: the context settles the intent, and the words of a short follow-up
        ("it got declined again online") are often closer to another intent's tickets. Without them the reply
        answered with the nearest ticket of another intent (5 of the dev half's 277 follow-ups, 2026-12-07)."""
        if not intent or any(t.intent == intent for t, _ in retrieved):
            return []
        wider = self.kb.search(np.atleast_2d(search_vector), WIDER_SEARCH)[0]
        return [(t, s) for t, s in wider if t.intent == intent][: self.settings.top_k]

    def next_questions_for(self, intent: str) -> list[Suggestion]:
        """'Customers also asked' after an answer about ``intent``: counted from real sessions by ``csbot train``."""
        counts = self._next_questions()
        return [Suggestion(b, intent_title(b), round(share, 4)) for b, share in counts.suggest(intent)]

    def _next_questions(self) -> NextQuestions:
        """The counts file, re-read when ``csbot train`` rewrote it (checked at most once a second)."""
        now = time.monotonic()
        if now - self._next_checked >= 1.0:
            self._next_checked = now
            path = self.settings.models_dir / NEXT_QUESTIONS_FILE
            mtime = path.stat().st_mtime if path.exists() else None
            if mtime != self._next_mtime:
                self._next_mtime, self._next_counts = mtime, NextQuestions.load(self.settings.models_dir)
        return self._next_counts

    def understand(self, classifier: IntentClassifier, texts: list[str]) -> list[tuple[IntentPrediction, list]]:
        """Intent predictions and retrieved tickets for messages: the model read path of ``respond``, unbatched."""
        intent_vectors, retrieval_vectors = self._vectors(classifier, texts)
        return self._look_up(classifier, texts, intent_vectors, retrieval_vectors)

    def _understand(self, item: tuple[IntentClassifier, str]) -> tuple[IntentPrediction, list, np.ndarray]:
        """One message through the two batching stages (encoder, then head and search): its prediction, the
        retrieved tickets and its intent embedding (a follow-up's reader reads it again)."""
        classifier, text = item
        intent_vector, retrieval_vector = self._encode(item)
        prediction, retrieved = self._lookup((classifier, text, intent_vector, retrieval_vector))
        return prediction, retrieved, intent_vector

    def _vectors(self, classifier: IntentClassifier, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(intent embeddings, retrieval vectors): one encoder pass when the intent model is a head on the frozen
        packaged encoder (the quick model) or carries a map into the index's space (``retrieval.query_map``)."""
        intent_vectors = classifier.embed(texts)
        return intent_vectors, query_vectors(classifier, self.kb.encoder, texts, intent_vectors)

    def _look_up(
        self, classifier: IntentClassifier, texts: list[str], intent_vectors: np.ndarray, retrieval_vectors: np.ndarray
    ) -> list[tuple[IntentPrediction, list]]:
        query_map = classifier.query_map(self.kb.encoder.name)
        hits = search_with(self.kb, query_map, texts, retrieval_vectors, self.settings.top_k, self.settings.min_similarity)
        return list(zip(classifier.predict_from_embeddings(intent_vectors), hits))

    def _encode_batch(self, items: list[tuple[IntentClassifier, str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The encoder stage for the batched requests: one pass per model (``_vectors``)."""

        def encode(classifier: IntentClassifier, group: list[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
            intent_vectors, retrieval_vectors = self._vectors(classifier, [text for _, text in group])
            return list(zip(intent_vectors, retrieval_vectors))

        return _per_model(items, encode)

    def _lookup_batch(self, items: list[tuple[IntentClassifier, str, np.ndarray, np.ndarray]]) -> list[tuple[IntentPrediction, list]]:
        """The second stage: the intent head and one FAISS search for the batch, on one OpenMP thread (with
        ONNX Runtime's threads beside it, a second one mostly waited for a core)."""
        set_search_threads(1)
        return _per_model(
            items, lambda classifier, group: self._look_up(classifier, [g[1] for g in group], np.stack([g[2] for g in group]), np.stack([g[3] for g in group]))
        )

    def _sources(self, ranked: list[Candidate]) -> list[Source]:
        return [Source(c.ticket.id, round(c.score, 4), c.ticket.intent, c.ticket.question) for c in ranked[: self.settings.num_sources]]

    def thresholds(self, classifier: IntentClassifier) -> tuple[float, float]:
        """(answer, handoff): the serving model's own, chosen on its validation data, unless set by hand."""
        chosen = getattr(classifier.config, "thresholds", None) if self.settings.thresholds_from_model else None
        if chosen:
            return float(chosen["answer"]), float(chosen["handoff"])
        return self.settings.answer_threshold, self.settings.handoff_threshold

    def _route(self, base: Reply, prediction: IntentPrediction, ranked: list[Candidate], thresholds: tuple[float, float]) -> Reply:
        answer_threshold, handoff_threshold = thresholds
        confidence = round(prediction.confidence, 4)
        base = replace(base, intent=prediction.intent, confidence=confidence)
        # Out of scope: the classifier is unsure, or no ticket is about anything close (a kNN check that catches
        # questions the classifier confidently maps to the nearest banking intent, e.g. "who won the match").
        if not ranked or prediction.confidence < handoff_threshold or max(c.similarity for c in ranked) < self.settings.min_similarity:
            return replace(base, action="handoff", text=OUT_OF_SCOPE_TEXT, sources=self._sources(ranked))
        # A follow-up read with its context: answer with a ticket of the intent the reading settled on, when one was
        # retrieved. Narrowed only after the out-of-scope check, which asks whether anything retrieved is close: the
        # one ticket of the read intent among them may be less similar than that bar ("and what does it cost?" after
        # a transfer question: transfer_fee_charged at 0.44, the transfers around it at 0.71) without the
        # conversation being out of scope.
        if base.context_turn_id:
            ranked = [c for c in ranked if c.ticket.intent == prediction.intent] or ranked
        if prediction.confidence < answer_threshold:
            suggestions = [Suggestion(label, intent_title(label), round(p, 4)) for label, p in zip(prediction.labels[:3], prediction.probabilities[:3])]
            return replace(base, action="clarify", text=CLARIFY_TEXT, suggestions=suggestions, sources=self._sources(ranked))
        best = ranked[0]
        return replace(base, action="answer", text=best.ticket.answer, intent=best.ticket.intent or prediction.intent, sources=self._sources(ranked))

    def choose(self, turn_id: str, intent: str, session_id: str | None = None) -> Reply:
        """The customer picked a suggested intent: answer with it and record the choice as a full label."""
        turn = self.store.turn(turn_id, session_id)
        if turn is None:
            raise InputError("That suggestion belongs to a conversation I can't find. Please ask again.")
        ticket = self.store.first_ticket(intent)
        if ticket is None:
            raise InputError(f"I don't know the topic {intent!r}. Please pick one of the suggestions.")
        # Only a topic the bot offered on that turn may be picked: a clarification's suggestions, an answer's next
        # questions, and after a down-vote on an answer the alternatives ("Did you mean…") stored with the vote.
        # A pick is a label, so a script must not write any label it likes onto its turns.
        said = self.store.customer_feedback(turn_id)
        voted_down = said.vote < 0 and turn["action"] == "answer"
        next_questions = [s["intent"] for s in json.loads(turn.get("next_questions") or "[]")] if turn["action"] == "answer" else []
        suggestions = [s["intent"] for s in json.loads(turn.get("suggestions") or "[]")] if turn["action"] == "clarify" else []
        if intent not in suggestions + next_questions + (said.offered if voted_down else []):
            raise InputError("That topic wasn't one of the ones I offered there. Please pick one of the buttons.")
        # A next question after an answer: the answered message was not about it, so it labels nothing there;
        # the choice is stored on the new turn below (a label, and a step the session counts will see).
        # After a down-vote the pick is one of the alternatives: it labels the message, and the row keeps the
        # down-vote (and what was offered, so a second pick is judged the same way), so the suspect-feedback rule
        # still counts it (a poisoner's down-vote on a right answer followed by a wrong pick must not hide from it).
        next_question = intent in next_questions and not voted_down
        if not next_question:
            vote, offered = (-1, said.offered) if voted_down else (0, [])
            self.store.append_feedback(Feedback(turn_id, vote, corrected_intent=intent, source="customer", offered=offered))
        started = time.perf_counter()
        reply = Reply(
            turn_id=uuid.uuid4().hex,
            session_id=turn["session_id"],
            action="answer",
            text=ticket.answer,
            intent=intent,
            confidence=1.0,
            sources=[Source(ticket.id, 1.0, intent, ticket.question)],
            model_version=self.model_version,
        )
        reply = replace(reply, latency_ms=round((time.perf_counter() - started) * 1000, 2))
        self.store.append_turn(reply, CHOSE_PREFIX + intent_title(intent))
        if next_question:
            self.store.append_feedback(Feedback(reply.turn_id, 0, comment="next question", corrected_intent=intent, source="customer"))
        return reply

    def feedback(self, turn_id: str, vote: int, *, comment: str = "", session_id: str | None = None) -> VoteReceipt:
        """Record a customer's thumbs-up (+1) or thumbs-down (-1) on a turn.

        The receipt says whether to offer a person now (two down-votes in a row) and, after a down-vote on an
        answer, which other topics the message could be about (``alternatives``).
        """
        # A down-vote re-sent with a comment after the customer picked an alternative keeps the pick: the newest row
        # on a turn is the one training reads, and the comment is about the same wrong answer.
        picked = self.store.customer_feedback(turn_id).picked if vote < 0 else ""
        # The alternatives are worked out before the vote is stored, so that its row records what was offered.
        alternatives = self.alternatives(turn_id, session_id) if vote < 0 and session_id is not None else []
        offered = [s.intent for s in alternatives]
        row = self.store.append_feedback(Feedback(turn_id, vote, comment=comment, corrected_intent=picked, offered=offered), session_id=session_id)
        if vote >= 0 or session_id is None:
            return VoteReceipt(row)
        votes = [v["vote"] for v in self.store.recent_votes(session_id)]
        return VoteReceipt(row, frustrated("", votes, False) != "", alternatives)

    def alternatives(self, turn_id: str, session_id: str | None = None) -> list[Suggestion]:
        """ "Did you mean…" after a down-vote on an answer: the intents the message could mean next, as it was read
        (with its context when it was read with one), the answered one left out; none below ``ALTERNATIVE_FLOOR``,
        none for a topic button's turn (its message is the button's title), none while a person has the conversation,
        none for a turn of another session than ``session_id`` (its message is not theirs to have read back).
        """
        turn = self.store.turn(turn_id, session_id)
        if turn is None or turn["action"] != "answer" or turn["message"].startswith(CHOSE_PREFIX):
            return []
        if self.desk.state(turn["session_id"])[0] != "bot":
            return []
        classifier = self.intent_model()[1]
        prediction, _, vector = self._understand((classifier, turn["message"]))
        earlier = self.store.context_messages(turn_id) if turn.get("context_turn_id") else []
        if earlier:  # the reading respond made: the same two passes, combined the same way
            read = self._with_context(classifier, Context(earlier, turn["context_turn_id"]), turn["message"], prediction, vector, [])
            prediction = read[0] if read else prediction
        others = [(label, p) for label, p in zip(prediction.labels, prediction.probabilities) if label != turn["intent"] and p >= ALTERNATIVE_FLOOR]
        return [Suggestion(label, intent_title(label), round(p, 4)) for label, p in others[:MAX_ALTERNATIVES]]

    def handoff(self, session_id: str, reason: str = "asked for a person") -> str:
        """The customer asked for a person (a button): the conversation waits for one. Returns what to tell them."""
        return self.desk.request(session_id, reason)

    def health(self) -> dict:
        classifier = self.intent_model()[1]
        answer, handoff = self.thresholds(classifier)
        return {
            "status": "ok",
            "model_version": self.model_version,
            "tickets": self.kb.index.size,
            "thresholds": {"answer": answer, "handoff": handoff},
            "intent_runtime": classifier.runtime,  # onnxruntime or pytorch (CSBOT_ONNX)
            # the quick model's pass is also the retrieval pass; a fine-tuned one maps its own (or, without a map, leaves
            # retrieval its own encoder, which also runs for a message near the out-of-scope floor)
            "retrieval_runtime": classifier.runtime if classifier.shares_retrieval_encoder else self.kb.encoder.runtime,
            "retrieval_vectors": vectors_kind(classifier, self.kb.encoder.name),  # shared, mapped or encoded
        }
