"""A person takes over: the conversation's states, what agents do, and what the customer is told.

States, stored as append-only conversation events (``FeedbackStore.append_event``):
``bot -> waiting -> assigned(agent) -> resolved -> bot``; an agent may also hand a conversation back to the
bot (``bot``) from ``waiting`` or ``assigned``, or transfer it to another agent (``assigned`` again). While
a conversation is ``waiting`` or ``assigned`` the bot says nothing on any surface; the customer's messages
are stored and reach the inbox (``customer`` events), and the agent's replies reach the customer
(``agent`` events). Internal notes (``note``) are never sent to the customer.

What a person answers teaches the bot: resolving records the right intent for the turns that led to the
handoff (a full label, like a reviewer's correction, source ``agent``), and an agent's answer can be saved
as a new ticket (source ``agent``), so the next customer with that question gets it from the bot.

Nobody is lost: every new waiting conversation is posted to ``CSBOT_HANDOFF_WEBHOOK`` (in the background,
with a timeout and retries), and outside business hours, when no agent has been at the inbox for a while,
or after ``CSBOT_HANDOFF_TIMEOUT`` seconds of waiting, the customer is told so and offered to leave a
message with a contact address (kept in its own table only).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from bot.events import INBOX, EventBus
from core.config import Settings
from core.errors import CsbotError, InputError
from core.store import FeedbackStore
from core.types import CHOSE_PREFIX, Feedback

log = logging.getLogger(__name__)

HANDOFF_REQUEST = re.compile(
    r"\b(talk|speak|chat|connect|transfer)\b.{0,30}\b(person|human|agent|someone|representative|operator|staff)\b"
    r"|^\s*(human|agent|operator|representative)\s*[.!?]*\s*$",
    re.IGNORECASE,
)
WAITING_TEXT = "I'm passing this conversation to a member of our support team. They will reply here as soon as they can."
MAX_AGENT_TEXT = 4000
CUSTOMER_KINDS = ("waiting", "assigned", "resolved", "bot", "agent", "offer_message")  # what the customer's stream shows
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class OfficeHours:
    """``"mon-fri 09:00-17:00 Europe/Berlin"`` (days and zone optional; empty = always open).

    Example:
        >>> OfficeHours("mon-fri 09:00-17:00 UTC").open_at(datetime(2026, 11, 24, 10, tzinfo=timezone.utc))
        True
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec.strip()
        self.days, self.start, self.end, self.zone = set(range(7)), (0, 0), (24, 0), ZoneInfo("UTC")
        if not self.spec:
            return
        parts = self.spec.lower().split()
        try:
            if parts and re.match(r"^[a-z]{3}(-[a-z]{3})?$", parts[0]):
                first, _, last = parts.pop(0).partition("-")
                a, b = DAYS.index(first), DAYS.index(last or first)
                self.days = {d % 7 for d in range(a, (b if b >= a else b + 7) + 1)}
            start, end = parts.pop(0).split("-")
            self.start, self.end = tuple(map(int, start.split(":"))), tuple(map(int, end.split(":")))
            if parts:
                self.zone = ZoneInfo(self.spec.split()[-1])
        except (ValueError, IndexError, KeyError) as err:
            raise CsbotError(f"CSBOT_HANDOFF_HOURS={spec!r} is not like 'mon-fri 09:00-17:00 Europe/Berlin'") from err

    def open_at(self, when: datetime) -> bool:
        local = when.astimezone(self.zone)
        return local.weekday() in self.days and self.start <= (local.hour, local.minute) < self.end

    def describe(self) -> str:
        return self.spec or "always"


class Webhook:
    """Posts each new waiting conversation to ``url`` from one background thread: never blocks a customer.

    A hanging or failing endpoint costs at most ``timeout_s`` per try and ``tries`` tries; a full queue drops
    the newest notice (the inbox still shows the conversation).
    """

    def __init__(self, url: str, *, timeout_s: float = 3.0, tries: int = 3, backoff_s: float = 1.0) -> None:
        self.url, self.timeout_s, self.tries, self.backoff_s = url, timeout_s, tries, backoff_s
        self._queue: queue.Queue[dict] = queue.Queue(maxsize=1000)
        self.sent = self.failed = 0
        if url:
            threading.Thread(target=self._run, name="csbot-webhook", daemon=True).start()

    def post(self, payload: dict) -> None:
        if self.url:
            try:
                self._queue.put_nowait(payload)
            except queue.Full:
                log.error("handoff webhook queue full; dropped a notice for %s", payload.get("session_id"))

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            body = json.dumps(payload).encode()
            for attempt in range(self.tries):
                try:
                    request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"}, method="POST")
                    with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 (the operator's URL)
                        response.read(1024)
                    self.sent += 1
                    break
                except Exception as err:  # any failure: retry, then log; the customer never waits for this
                    log.warning("handoff webhook try %d failed: %s", attempt + 1, err)
                    time.sleep(self.backoff_s * 2**attempt)
            else:
                self.failed += 1


class HandoffDesk:
    """Who answers a conversation, and everything people do in it. One per server, shared by every surface."""

    def __init__(self, settings: Settings, store: FeedbackStore, *, bus: EventBus | None = None, add_ticket: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus or EventBus()
        self.add_ticket = add_ticket  # KnowledgeBase.add: an agent's answer becomes a ticket
        self.hours = OfficeHours(settings.handoff_hours)
        self.webhook = Webhook(settings.handoff_webhook)

    # ---- the customer's side ----------------------------------------------------------------
    def state(self, session_id: str) -> tuple[str, str]:
        """(state, agent): ``bot``, ``waiting`` or ``assigned``."""
        state, agent, _ = self.store.conversation_state(session_id)
        return state, agent

    def request(self, session_id: str, reason: str, turn_id: str = "") -> str:
        """The conversation starts waiting for a person (asked for, unsure bot, or frustrated customer).

        Returns what to tell the customer: that a person will reply, or honestly why nobody may soon.
        """
        state, agent = self.state(session_id)
        if state != "bot":
            return self.waiting_text(state, agent)
        self.store.append_event(session_id, "waiting", data={"reason": reason, "turn_id": turn_id})
        self.bus.notify(session_id, INBOX)
        self.webhook.post(
            {
                "text": f"A customer is waiting for a person ({reason}). Open the inbox: /agent",
                "session_id": session_id,
                "reason": reason,
            }
        )
        unavailable = self.unavailable()
        if unavailable:
            self._offer_message(session_id, unavailable)
            return unavailable
        return WAITING_TEXT

    def waiting_text(self, state: str, agent: str) -> str:
        if state == "assigned":
            return f"{agent} from our support team has this conversation and will reply here."
        return "You're waiting for a member of our support team; they will reply here. The bot stays quiet until then."

    def unavailable(self, now: datetime | None = None) -> str:
        """Why nobody may answer soon ("" when somebody should): outside business hours, or no agent around."""
        now = now or datetime.now(timezone.utc)
        if not self.hours.open_at(now):
            return f"Our support team is not here right now (hours: {self.hours.describe()}). Leave a message and a way to reach you, and we'll reply."
        away = self.settings.agent_away_minutes
        if away > 0:
            seen = self.store.last_agent_seen()
            if seen is None or now - datetime.fromisoformat(seen) > timedelta(minutes=away):
                return "No one from our support team is online right now. Leave a message and a way to reach you, and we'll reply as soon as we can."
        return ""

    def check_wait(self, session_id: str, now: datetime | None = None) -> None:
        """A customer waiting longer than ``handoff_timeout`` is offered to leave a message (once per wait)."""
        state, _, since_id = self.store.conversation_state(session_id)
        if state != "waiting":
            return
        events = self.store.events(session_id=session_id, after=since_id - 1, kinds=("waiting", "offer_message"))
        if not events or any(e["event"] == "offer_message" for e in events):
            return
        waited = (now or datetime.now(timezone.utc)) - datetime.fromisoformat(events[0]["created_at"])
        if waited.total_seconds() > self.settings.handoff_timeout:
            minutes = max(1, round(self.settings.handoff_timeout / 60))
            self._offer_message(session_id, f"Sorry, no one has been free for over {minutes} minutes. Leave a message and a way to reach you, and we'll reply.")

    def _offer_message(self, session_id: str, text: str) -> None:
        self.store.append_event(session_id, "offer_message", text=text)
        self.bus.notify(session_id, INBOX)

    def customer_message(self, session_id: str, turn_id: str, text: str) -> None:
        """A message written while a person has the conversation: stored, and sent to the inbox."""
        self.store.append_event(session_id, "customer", author="customer", text=text, data={"turn_id": turn_id})
        self.bus.notify(session_id, INBOX)

    def leave_contact(self, session_id: str, contact: str, message: str) -> int:
        contact, message = contact.strip(), message.strip()
        if not contact or len(contact) > 200:
            raise InputError("Please leave an email address or a phone number (at most 200 characters).")
        if len(message) > MAX_AGENT_TEXT:
            raise InputError(f"The message can have at most {MAX_AGENT_TEXT} characters.")
        contact_id = self.store.add_contact(session_id, contact, message)
        self.store.append_event(session_id, "contact_left", data={"contact_id": contact_id})
        self.bus.notify(session_id, INBOX)
        return contact_id

    def customer_events(self, session_id: str, after: int = 0) -> list[dict]:
        """What the customer's chat shows of the people side: states, agents' replies, offers (never notes)."""
        return [self.public(e) for e in self.store.events(session_id=session_id, after=after, kinds=CUSTOMER_KINDS)]

    @staticmethod
    def public(event: dict) -> dict:
        """An event as the customer may see it (the reason and turn ids are internal)."""
        return {"id": event["id"], "event": event["event"], "author": event["author"] or "", "text": event["text"] or "", "at": event["created_at"]}

    # ---- the agents' side -------------------------------------------------------------------
    def inbox(self, now: datetime | None = None) -> list[dict]:
        """Waiting and assigned conversations, oldest wait first, with the wait in seconds."""
        now = now or datetime.now(timezone.utc)
        rows = self.store.open_conversations()
        for row in rows:
            row["waited_s"] = round((now - datetime.fromisoformat(row["waiting_since"] or row["since"])).total_seconds())
        return rows

    def transcript(self, session_id: str) -> list[dict]:
        """The whole conversation in order: the bot's turns (with intent, confidence, sources, vote) and the people side."""
        items = [{"kind": "turn", "at": t["created_at"], **t} for t in self.store.session_turns(session_id)]
        items += [{"kind": "event", "at": e["created_at"], **e} for e in self.store.events(session_id=session_id) if e["event"] != "customer"]
        # A customer message written to a person is a turn too (the bot stayed silent): shown once, as the turn.
        return sorted(items, key=lambda i: i["at"])

    def _require(self, session_id: str, agent: str, *, states: tuple[str, ...], own: bool = True) -> tuple[str, str]:
        state, holder = self.state(session_id)
        if state not in states:
            if state == "bot":
                raise InputError("The bot has this conversation; there is nothing to do here.")
            raise InputError(f"{holder} has this conversation." if state == "assigned" else "Claim the conversation first.")
        if own and state == "assigned" and holder != agent:
            raise InputError(f"{holder} has this conversation; ask them to transfer it to you.")
        return state, holder

    def _event(self, session_id: str, event: str, agent: str, text: str = "", data: dict | None = None) -> int:
        event_id = self.store.append_event(session_id, event, author=agent, text=text, data=data)
        self.bus.notify(session_id, INBOX)
        return event_id

    def claim(self, session_id: str, agent: str) -> int:
        self._require(session_id, agent, states=("waiting",))
        return self._event(session_id, "assigned", agent)

    def reply(self, session_id: str, agent: str, text: str) -> int:
        text = _agent_text(text)
        self._require(session_id, agent, states=("assigned",))
        return self._event(session_id, "agent", agent, text)

    def note(self, session_id: str, agent: str, text: str) -> int:
        """An internal note: in the transcript for agents, never sent to the customer."""
        return self._event(session_id, "note", agent, _agent_text(text))

    def transfer(self, session_id: str, agent: str, to: str, known_agents: list[str]) -> int:
        if to not in known_agents:
            raise InputError(f"There is no agent {to!r}.")
        self._require(session_id, agent, states=("assigned",))
        return self._event(session_id, "assigned", to, data={"from": agent})

    def release(self, session_id: str, agent: str) -> int:
        """Hand the conversation back to the bot without resolving it."""
        self._require(session_id, agent, states=("waiting", "assigned"))
        return self._event(session_id, "bot", agent)

    def turns_to_label(self, session_id: str) -> list[dict]:
        """The turns that led to this handoff: the customer's questions before it (not the request for a person,
        not a topic button), or, when they asked for a person straight away, their first message to the person."""
        turns = self.store.session_turns(session_id)
        bounds = self.store.events(session_id=session_id, kinds=("waiting", "resolved", "bot"))
        opened = next((e for e in reversed(bounds) if e["event"] == "waiting"), None)
        if opened is None:
            return []
        previous_end = max((e["created_at"] for e in bounds if e["event"] != "waiting" and e["id"] < opened["id"]), default="")
        trigger = opened["data"].get("turn_id", "")  # the turn that handed off (stored just after the event)
        before = [
            t
            for t in turns
            if previous_end < t["created_at"]
            and (t["created_at"] <= opened["created_at"] or t["id"] == trigger)
            and t["text"]
            and not HANDOFF_REQUEST.search(t["message"])
            and not t["message"].startswith(CHOSE_PREFIX)
        ]
        if before:
            return before[-1:]  # the question the customer was stuck on
        during = [t for t in turns if t["created_at"] > opened["created_at"] and not t["text"] and t["id"] != trigger]
        return during[:1]

    def resolve(self, session_id: str, agent: str, intent: str, *, known_intents: set[str], answer: str = "") -> dict:
        """Close the conversation: label the turns that led to it with ``intent`` and, when ``answer`` is given,
        save it as a ticket for that question. The bot answers the customer's next message again."""
        if intent and intent not in known_intents:
            raise InputError(f"Unknown intent {intent!r}.")
        self._require(session_id, agent, states=("assigned",))
        labelled, ticket_id = [], None
        for turn in self.turns_to_label(session_id) if intent else []:
            self.store.append_feedback(Feedback(turn["id"], 0, comment=f"resolved by {agent}", corrected_intent=intent, source="agent"))
            labelled.append(turn["id"])
        if answer.strip() and intent and labelled and self.add_ticket is not None:
            question = self.store.turn(labelled[0])["message"]
            ticket_id = self.add_ticket(question, _agent_text(answer), intent=intent, source="agent")
        self._event(session_id, "resolved", agent, data={"intent": intent, "labelled": labelled, "ticket_id": ticket_id})
        return {"labelled": labelled, "ticket_id": ticket_id}


def _agent_text(text: str) -> str:
    text = (text or "").replace("\x00", "").strip()
    if not text:
        raise InputError("Write something first: the message was empty.")
    if len(text) > MAX_AGENT_TEXT:
        raise InputError(f"A message can have at most {MAX_AGENT_TEXT} characters.")
    return text
