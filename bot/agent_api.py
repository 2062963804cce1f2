"""Agent REST routes under /api/v1/agent (HTTP Basic: an agent's or the admin's login), and the live streams.

Streams are server-sent events (FastAPI's own ``EventSourceResponse``, with its keep-alive pings). Each event
carries its database id; a client that reconnects with ``Last-Event-ID`` gets what it missed, read from the
store. A stream wakes when the in-process bus says something was appended, and looks again once a second
anyway, so a stream served by another worker process still delivers within about a second.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from bot.agents import AgentDirectory
from bot.assistant import Assistant
from bot.events import INBOX
from bot.handoff import MAX_AGENT_TEXT, HandoffDesk
from core.errors import CsbotError, UnknownTurn

FALLBACK_LOOK_S = 1.0  # how often a stream looks in the store without being woken
WAIT_CHECK_S = 5.0  # how often a waiting customer's stream checks the handoff timeout
SESSION_ID = r"^[A-Za-z0-9_-]+$"


async def event_stream(
    request: Request,
    desk: HandoffDesk,
    channel: str,
    fetch: Callable[[int], list[dict]],
    after: int,
    follow: bool,
    *,
    check_wait: str | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """Events after ``after`` from ``fetch``, then (``follow``) new ones as they are appended, until the client leaves."""
    # The reads run on the event loop itself: an indexed SQLite read takes well under a millisecond, while a
    # threadpool hop would queue behind chat requests waiting for the model (seconds under load).
    last, checked = after, 0.0
    while True:
        for event in fetch(last):
            last = event["id"]
            yield ServerSentEvent(data=event, event=event["event"], id=str(event["id"]))
        if not follow or await request.is_disconnected():
            return
        if check_wait and time.monotonic() - checked > WAIT_CHECK_S:
            checked = time.monotonic()
            desk.check_wait(check_wait)
        await desk.bus.wait(channel, FALLBACK_LOOK_S)


class TextRequest(BaseModel):
    text: str = Field(..., max_length=MAX_AGENT_TEXT)


class TransferRequest(BaseModel):
    to: str = Field(..., max_length=40)


class ResolveRequest(BaseModel):
    intent: str = Field("", max_length=100, description="The right intent for the turns that led to the handoff (a label the bot learns from)")
    answer: str = Field("", max_length=MAX_AGENT_TEXT, description="Optional: save this answer as a new ticket for that question")


_basic = HTTPBasic(auto_error=False)


def create_agent_router(assistant: Assistant, agents: AgentDirectory) -> APIRouter:
    """The inbox's routes: list, transcript, claim, reply, note, transfer, resolve, hand back, live events."""
    desk = assistant.desk

    def require_agent(credentials: HTTPBasicCredentials | None = Depends(_basic)) -> str:
        if credentials is None or not agents.login(credentials.username, credentials.password):
            raise HTTPException(401, "agent login required", headers={"WWW-Authenticate": "Basic"})
        agents.seen(credentials.username)
        return credentials.username

    router = APIRouter(prefix="/api/v1/agent", tags=["agent"])

    def guarded(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UnknownTurn as err:
            raise HTTPException(404, str(err)) from err
        except CsbotError as err:
            raise HTTPException(409, str(err)) from err

    session = Path(..., max_length=64, pattern=SESSION_ID)

    @router.get("/inbox", summary="Conversations waiting for a person or assigned to one, oldest wait first")
    def inbox(agent: str = Depends(require_agent)) -> list[dict]:
        return desk.inbox()

    @router.get("/conversations/{session_id}", summary="The whole transcript: bot turns (intent, confidence, sources, vote) and people's messages")
    def transcript(session_id: str = session, agent: str = Depends(require_agent)) -> dict:
        state, holder = desk.state(session_id)
        turns = desk.turns_to_label(session_id)
        return {"session_id": session_id, "state": state, "agent": holder, "items": desk.transcript(session_id), "to_label": [t["id"] for t in turns]}

    @router.post("/conversations/{session_id}/claim", summary="Assign to me")
    def claim(session_id: str = session, agent: str = Depends(require_agent)) -> dict:
        return {"event_id": guarded(desk.claim, session_id, agent)}

    @router.post("/conversations/{session_id}/reply", summary="Send the customer a message")
    def reply(body: TextRequest, session_id: str = session, agent: str = Depends(require_agent)) -> dict:
        return {"event_id": guarded(desk.reply, session_id, agent, body.text)}

    @router.post("/conversations/{session_id}/note", summary="An internal note the customer never sees")
    def note(body: TextRequest, session_id: str = session, agent: str = Depends(require_agent)) -> dict:
        return {"event_id": guarded(desk.note, session_id, agent, body.text)}

    @router.post("/conversations/{session_id}/transfer", summary="Give the conversation to another agent")
    def transfer(body: TransferRequest, session_id: str = session, agent: str = Depends(require_agent)) -> dict:
        return {"event_id": guarded(desk.transfer, session_id, agent, body.to, agents.names())}

    @router.post("/conversations/{session_id}/resolve", summary="Resolve with the right intent (the bot learns it); optionally save the answer")
    def resolve(body: ResolveRequest, session_id: str = session, agent: str = Depends(require_agent)) -> dict:
        known = set(assistant.kb.intents())
        return guarded(desk.resolve, session_id, agent, body.intent, known_intents=known, answer=body.answer)

    @router.post("/conversations/{session_id}/release", summary="Hand the conversation back to the bot")
    def release(session_id: str = session, agent: str = Depends(require_agent)) -> dict:
        return {"event_id": guarded(desk.release, session_id, agent)}

    @router.get("/contacts", summary="Messages and contact addresses left by customers no person could answer")
    def contacts(agent: str = Depends(require_agent)) -> list[dict]:
        return assistant.store.contacts()

    @router.delete("/contacts/{contact_id}", summary="Delete a contact address (after answering, or when asked to)")
    def delete_contact(contact_id: int, agent: str = Depends(require_agent)) -> dict:
        if not assistant.store.delete_contact(contact_id):
            raise HTTPException(404, f"there is no contact {contact_id}")
        return {"status": "deleted"}

    @router.get("/events", summary="Live: every conversation event for the inbox (server-sent events; Last-Event-ID)", response_class=EventSourceResponse)
    async def events(
        request: Request,
        after: int | None = Query(None, ge=0, description="Events after this id; default: only new ones"),
        follow: bool = Query(True),
        last_event_id: str | None = Header(None),
        agent: str = Depends(require_agent),
    ) -> AsyncIterable[ServerSentEvent]:
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
        if start is None:
            start = assistant.store.last_event_id()
        async for event in event_stream(request, desk, INBOX, lambda last: assistant.store.events(after=last), start, follow):
            yield event

    return router
