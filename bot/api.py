"""REST API (FastAPI, described by OpenAPI at /openapi.json) with the Gradio chat mounted on the same server."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterable
from pathlib import Path as FilePath
from typing import Literal

import anyio.to_thread
from fastapi import FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from bot.admin import AdminService, admin_credentials, build_admin_ui, check_password, create_admin_router
from bot.agent_api import SESSION_ID, create_agent_router, event_stream
from bot.assistant import Assistant
from bot.handoff import MAX_AGENT_TEXT
from core.errors import CsbotError, InputError, UnknownTurn
from core.store import STORAGE_UNAVAILABLE

log = logging.getLogger(__name__)
WIDGET = FilePath(__file__).resolve().parent / "static" / "widget.js"
WIDGET_VERSION = "v1"  # bump when the widget's behaviour changes; old paths keep serving embedded sites
EXTRA_THREADS = 40  # threadpool threads beyond the chat requests in progress (anyio's default pool is 40 in all)
MAX_REQUEST_MESSAGE = 100_000  # longer bodies are refused outright; up to this, the Assistant truncates


class ChatRequest(BaseModel):
    message: str = Field(..., max_length=MAX_REQUEST_MESSAGE, description="What the customer typed")
    session_id: str | None = Field(None, max_length=64, pattern=r"^[A-Za-z0-9_-]*$")


class FeedbackRequest(BaseModel):
    turn_id: str = Field(..., max_length=64)
    vote: Literal["up", "down"]
    comment: str = Field("", max_length=2000)
    session_id: str = Field(..., max_length=64, description="The session the turn belongs to: customers vote only on their own turns")


class ChooseRequest(BaseModel):
    turn_id: str = Field(..., max_length=64)
    intent: str = Field(..., max_length=100)
    session_id: str = Field(..., max_length=64)


class SessionRequest(BaseModel):
    session_id: str = Field(..., max_length=64, pattern=SESSION_ID)


class ContactRequest(BaseModel):
    contact: str = Field(..., max_length=200, description="An email address or phone number; kept only in the contacts table")
    message: str = Field("", max_length=MAX_AGENT_TEXT)


BUSY = "The bot is busy right now; please try again in a few seconds."
RATE_LIMITED = "Too many requests from your address; please wait a moment and try again."


class RateLimiter:
    """Token bucket per client: ``per_minute`` requests a minute on average, bursts up to half of that."""

    def __init__(self, per_minute: int, max_clients: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(5.0, per_minute / 2)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill time)
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > self.max_clients:  # forget the idle (full) buckets; memory stays bounded
                full = [k for k, (t, seen) in self._buckets.items() if t + (now - seen) * self.rate >= self.capacity]
                for k in full[: len(self._buckets) // 2]:
                    del self._buckets[k]
            return allowed


class RateLimitMiddleware:
    """429 before any work for a client over its rate (REST routes only; the Gradio chat queues its own).

    Plain ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware wraps every request in a
    task group and memory streams, which cost more of the event loop than the chat route itself under load.
    """

    def __init__(self, app, limiter, trust_forwarded_for: bool) -> None:
        self.app, self.limiter, self.trust_forwarded_for = app, limiter, trust_forwarded_for

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            if not self.limiter.allow(client_address(Request(scope), self.trust_forwarded_for)):
                response = JSONResponse({"detail": RATE_LIMITED}, status_code=429, headers={"Retry-After": "5"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def client_address(request: Request, trust_forwarded_for: bool) -> str:
    if trust_forwarded_for and request.headers.get("x-forwarded-for"):
        return request.headers["x-forwarded-for"].split(",")[0].strip()
    return request.client.host if request.client else "unknown"


def _http_error(err: CsbotError) -> HTTPException:
    status = 404 if isinstance(err, UnknownTurn) else 400 if isinstance(err, InputError) else 503
    return HTTPException(status_code=status, detail=str(err))


def create_api(assistant: Assistant, admin: AdminService | None = None) -> FastAPI:
    """The REST routes under /api/v1. Every route calls the Assistant and nothing deeper."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # Sync routes run on a threadpool. Chat requests hold a thread while they wait for the model (at most
        # max_pending of them; more get 503), so the pool has room beyond them: a person's reply, a vote or a
        # handoff never queues behind the bot's traffic.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.max_pending + EXTRA_THREADS
        yield

    settings = assistant.settings
    app = FastAPI(
        lifespan=lifespan,
        title="csbot",
        version="0.1.0",
        description="A customer-service bot that answers from historical tickets and learns from votes.",
    )

    admin = admin or AdminService(assistant)
    desk = assistant.desk
    pending = threading.BoundedSemaphore(settings.max_pending)
    limiter = None
    if settings.rate_limit and settings.redis_url:  # one count for every replica
        from bot.redis_backplane import RedisRateLimiter

        limiter = RedisRateLimiter(settings.redis_url, settings.rate_limit)
    elif settings.rate_limit:
        limiter = RateLimiter(settings.rate_limit)

    if limiter:
        app.add_middleware(RateLimitMiddleware, limiter=limiter, trust_forwarded_for=settings.trust_forwarded_for)

    @app.exception_handler(sqlite3.Error)
    async def storage_error(request: Request, err: sqlite3.Error) -> JSONResponse:
        """A database error outside the store's writes (those raise StorageUnavailable): still a plain 503."""
        log.error("storage error on %s: %s", request.url.path, err)
        return JSONResponse({"detail": STORAGE_UNAVAILABLE}, status_code=503, headers={"Retry-After": "5"})

    @app.post(
        "/api/v1/chat",
        summary="Send a customer message, get the bot's Reply",
        responses={429: {"description": RATE_LIMITED}, 503: {"description": BUSY}},
    )
    def chat(request: ChatRequest) -> dict:
        if not pending.acquire(blocking=False):  # back-pressure: a clear answer instead of a growing queue
            raise HTTPException(status_code=503, detail=BUSY, headers={"Retry-After": "2"})
        try:
            return assistant.respond(request.message, request.session_id or None).to_dict()
        except CsbotError as err:
            raise _http_error(err) from err
        finally:
            pending.release()

    @app.post("/api/v1/feedback", summary="Thumbs up or down on a turn, with an optional comment; a down-vote on an answer returns alternatives to offer")
    def feedback(request: FeedbackRequest) -> dict:
        try:
            vote = 1 if request.vote == "up" else -1
            receipt = assistant.feedback(request.turn_id, vote, comment=request.comment, session_id=request.session_id)
        except CsbotError as err:
            raise _http_error(err) from err
        # alternatives: after a down-vote on an answer, topics to offer ("Did you mean…"); pick one with /choose
        return {"status": "recorded", **receipt.to_dict()}

    @app.post("/api/v1/choose", summary="The customer picked a suggested topic (a clarification) or a next question (customers also asked)")
    def choose(request: ChooseRequest) -> dict:
        try:
            return assistant.choose(request.turn_id, request.intent, request.session_id).to_dict()
        except CsbotError as err:
            raise _http_error(err) from err

    @app.post("/api/v1/handoff", summary="Hand the conversation to a person; the bot stays silent until it is handed back")
    def handoff(request: SessionRequest) -> dict:
        try:
            text = assistant.handoff(request.session_id)
        except CsbotError as err:
            raise _http_error(err) from err
        state, agent = desk.state(request.session_id)
        return {"status": "handed off", "session_id": request.session_id, "state": state, "agent": agent, "text": text}

    @app.get(
        "/api/v1/conversations/{session_id}/events",
        summary="Live: what people say in this conversation (server-sent events; reconnect with Last-Event-ID)",
        response_class=EventSourceResponse,
    )
    async def conversation_events(
        request: Request,
        session_id: str = Path(..., max_length=64, pattern=SESSION_ID),
        after: int = Query(0, ge=0, description="Send events after this id (the Last-Event-ID header wins)"),
        follow: bool = Query(True, description="Keep the stream open for new events (false: send what there is and end)"),
        last_event_id: str | None = Header(None),
    ) -> AsyncIterable[ServerSentEvent]:
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
        fetch = lambda last: desk.customer_events(session_id, last)  # noqa: E731
        async for event in event_stream(request, desk, session_id, fetch, start, follow, check_wait=session_id):
            yield event

    @app.post("/api/v1/conversations/{session_id}/contact", summary="Leave a message and a way to reach you when no person is free")
    def leave_contact(request: ContactRequest, session_id: str = Path(..., max_length=64, pattern=SESSION_ID)) -> dict:
        try:
            return {"status": "saved", "contact_id": desk.leave_contact(session_id, request.contact, request.message)}
        except CsbotError as err:
            raise _http_error(err) from err

    origins = [o.strip() for o in assistant.settings.allowed_origins.split(",") if o.strip()]
    if origins:
        # The widget runs on other sites; the API uses no cookies, so no credentials are allowed.
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"], allow_headers=["Content-Type", "Last-Event-ID"])

    app.include_router(create_admin_router(admin))
    app.include_router(create_agent_router(assistant, admin.agents))

    @app.get("/widget.js", summary="The embeddable chat widget (latest)", include_in_schema=False)
    @app.get(f"/widget/{WIDGET_VERSION}/widget.js", summary="The embeddable chat widget, pinned version", include_in_schema=False)
    def widget() -> FileResponse:
        return FileResponse(WIDGET, media_type="application/javascript; charset=utf-8", headers={"Cache-Control": "public, max-age=300"})

    @app.get("/api/v1/health", summary="Liveness, serving model version and index size")
    def health() -> dict:
        try:
            return assistant.health()
        except CsbotError as err:
            raise _http_error(err) from err

    return app


def create_app(assistant: Assistant) -> FastAPI:
    """REST API, the admin console at ``/admin`` (only with credentials set) and the Gradio chat at ``/``
    (mounted last so the API routes and the console take precedence)."""
    import gradio as gr

    from bot.inbox import build_inbox_ui
    from bot.ui import build_ui

    service = AdminService(assistant)  # one per server: the console and the admin API share it (one retrain at a time)
    app = create_api(assistant, service)
    inbox = build_inbox_ui(assistant, service.agents)
    app = gr.mount_gradio_app(app, inbox, path="/agent", auth=service.agents.login, auth_message="csbot agent inbox")
    if admin_credentials() is not None:
        app = gr.mount_gradio_app(app, build_admin_ui(service), path="/admin", auth=check_password, auth_message="csbot admin")
    else:

        @app.get("/admin", include_in_schema=False)
        def admin_disabled() -> PlainTextResponse:
            return PlainTextResponse("The admin console is disabled: set CSBOT_ADMIN_USER and CSBOT_ADMIN_PASSWORD.", status_code=403)

    return gr.mount_gradio_app(app, build_ui(assistant), path="/")
