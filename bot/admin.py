"""The admin side: analytics, the review queue, model versions and retraining, behind a login.

Credentials come from ``CSBOT_ADMIN_USER`` and ``CSBOT_ADMIN_PASSWORD``; without them every admin route
answers 403 and the console is not mounted. Passwords are compared in constant time. Retraining runs
``csbot train --from-feedback`` as a separate process, so serving never imports training and keeps
answering while it runs.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

from bot.agents import AgentDirectory, admin_credentials, check_password
from bot.assistant import Assistant
from core.errors import CsbotError, InputError
from core.types import Feedback


class AdminService:
    """What the console and the admin API do; one place, so both surfaces behave the same."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.store = assistant.store
        self.registry = assistant.registry
        self.agents = AgentDirectory(assistant.store)
        self._retrain: subprocess.Popen | None = None
        self._retrain_log: Path | None = None
        self._lock = threading.Lock()

    # ---- analytics --------------------------------------------------------------------------
    def stats(self) -> dict:
        return {
            "turns": self.store.count("turns"),
            "votes": self.store.count("feedback"),
            "per_day": self.store.daily_activity(),
            "down_rate_per_intent": self.store.down_rate_per_intent(),
            "confidence": self.store.confidence_histogram(),
            "most_down_voted": self.store.most_down_voted(),
        }

    # ---- review -----------------------------------------------------------------------------
    def review_queue(self, limit: int = 50) -> list[dict]:
        """Down-voted and low-confidence turns that no reviewer has corrected yet, newest first."""
        return self.store.review_queue(below_confidence=self.assistant.settings.answer_threshold, limit=limit)

    def intents(self) -> list[str]:
        return self.assistant.kb.intents()

    def correct(self, turn_id: str, intent: str, comment: str = "") -> int:
        if intent not in set(self.intents()):
            raise InputError(f"unknown intent {intent!r}")
        return self.store.append_feedback(Feedback(turn_id, 0, comment=comment, corrected_intent=intent, source="reviewer"))

    # ---- models -----------------------------------------------------------------------------
    def models(self, kind: str = "intent") -> list[dict]:
        return self.registry.versions(kind)

    def learning_curve(self) -> list[dict]:
        """Every intent version: ticket-validation and live-slice accuracy, handoffs per 100 customers, the gate's decision.

        Accuracies come from each version's card (measured when it was a candidate); handoffs per 100 customers
        from the turns it served (sessions with at least one handoff per 100 sessions).
        """
        handoffs = self.store.handoffs_per_version()
        rows = []
        for card in self.registry.versions("intent"):
            metrics, gate = card.get("metrics") or {}, card.get("gate") or {}
            served = handoffs.get(card["version"])
            rows.append(
                {
                    "version": card["version"],
                    "serving": bool(card.get("serving")),
                    "created_at": card.get("created_at", ""),
                    "validation_accuracy": (metrics.get("validation") or {}).get("accuracy"),
                    "live_accuracy": (metrics.get("live") or {}).get("accuracy"),
                    "live_repeat_rate": (metrics.get("live") or {}).get("repeat_rate"),
                    "seed_accuracy": metrics.get("seed_accuracy"),
                    # The candidate's share of its weights when it is a mix with its parent (training.interpolate).
                    "candidate_weight": (card.get("interpolation") or {}).get("candidate_weight"),
                    "handoffs_per_100_customers": round(100 * served["handed_off"] / served["sessions"], 1) if served and served["sessions"] else None,
                    "decision": gate.get("decision", ""),
                    "rule": gate.get("rule", ""),
                    "reason": gate.get("reason", ""),
                }
            )
        return rows

    def promote(self, version: str, kind: str = "intent") -> str:
        self.registry.promote(kind, version, reason="promoted from the admin console")
        return version

    def rollback(self, kind: str = "intent") -> str:
        return self.registry.rollback(kind)

    def start_retrain(self, epochs: int = 1) -> dict:
        with self._lock:
            if self._retrain is not None and self._retrain.poll() is None:
                raise InputError("a retrain is already running")
            logs = self.assistant.settings.home / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            self._retrain_log = logs / f"retrain-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.log"
            cmd = [sys.executable, "-m", "csbot", "--home", str(self.assistant.settings.home), "train", "--from-feedback", "--epochs", str(epochs)]
            with self._retrain_log.open("w") as out:
                self._retrain = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parent.parent)
        return self.retrain_status()

    def retrain_status(self) -> dict:
        if self._retrain is None:
            return {"state": "idle", "log": ""}
        code = self._retrain.poll()
        text = self._retrain_log.read_text(errors="replace")[-4000:] if self._retrain_log else ""
        state = "running" if code is None else "finished" if code == 0 else f"failed (exit {code})"
        return {"state": state, "log": text}

    def export_csv(self) -> str:
        buf = io.StringIO()
        self.store.export_csv(buf)
        return buf.getvalue()


class CorrectionRequest(BaseModel):
    turn_id: str = Field(..., max_length=64)
    intent: str = Field(..., max_length=100)
    comment: str = Field("", max_length=2000)


class VersionRequest(BaseModel):
    version: str = Field(..., max_length=16)
    kind: Literal["intent", "ranker"] = "intent"


class RetrainRequest(BaseModel):
    epochs: int = Field(1, ge=1, le=20)


_basic = HTTPBasic(auto_error=False)


def require_admin(credentials: HTTPBasicCredentials | None = Depends(_basic)) -> str:
    if admin_credentials() is None:
        raise HTTPException(403, "admin is disabled: set CSBOT_ADMIN_USER and CSBOT_ADMIN_PASSWORD and restart")
    if credentials is None or not check_password(credentials.username, credentials.password):
        raise HTTPException(401, "admin login required", headers={"WWW-Authenticate": "Basic"})
    return credentials.username


def create_admin_router(service: AdminService) -> APIRouter:
    """Admin REST routes under /api/v1/admin, every one behind HTTP Basic auth."""
    router = APIRouter(prefix="/api/v1/admin", dependencies=[Depends(require_admin)], tags=["admin"])

    def guarded(fn, *args):
        try:
            return fn(*args)
        except CsbotError as err:
            raise HTTPException(400, str(err)) from err

    router.get("/stats", summary="Turns and votes over time, down-vote rate per intent, confidence, worst queries")(service.stats)
    router.get("/review", summary="Down-voted and low-confidence turns awaiting a reviewer")(lambda: service.review_queue())

    @router.post("/review", summary="Set the right intent of a turn (stored as reviewer feedback)")
    def review(request: CorrectionRequest) -> dict:
        return {"feedback_id": guarded(service.correct, request.turn_id, request.intent, request.comment)}

    @router.get("/models", summary="Model versions with their cards")
    def models(kind: Literal["intent", "ranker"] = "intent") -> list[dict]:
        return service.models(kind)

    router.get("/learning-curve", summary="Every intent version's validation and live-slice accuracy, handoffs, gate decision")(service.learning_curve)

    @router.post("/models/promote", summary="Serve a version")
    def promote(request: VersionRequest) -> dict:
        return {"serving": guarded(service.promote, request.version, request.kind)}

    @router.post("/models/rollback", summary="Serve the previous version")
    def rollback(kind: Literal["intent", "ranker"] = "intent") -> dict:
        return {"serving": guarded(service.rollback, kind)}

    @router.post("/retrain", summary="Start `csbot train --from-feedback` in the background")
    def retrain(request: RetrainRequest) -> dict:
        return guarded(service.start_retrain, request.epochs)

    router.get("/retrain", summary="State and log of the last retrain")(service.retrain_status)

    @router.get("/export", summary="All votes with their redacted turns, as CSV", response_class=PlainTextResponse)
    def export() -> str:
        return service.export_csv()

    return router


def build_admin_ui(service: AdminService):
    """The admin console (Gradio): analytics, review queue, models. Mounted behind Gradio's login."""
    import gradio as gr
    import pandas as pd

    from bot.inbox import review_picker

    def analytics():
        s = service.stats()
        per_day = pd.DataFrame(s["per_day"] or [{"day": "", "turns": 0, "votes": 0}])
        long = per_day.melt(id_vars="day", value_vars=["turns", "votes"], var_name="kind", value_name="count")
        per_intent = pd.DataFrame(s["down_rate_per_intent"] or [{"intent": "", "down_rate": 0.0}])
        # Every bucket, empty ones as 0: with one bucket alone the axis collapses and no bar is drawn.
        counts = {round(r["bucket"], 1): r["turns"] for r in s["confidence"]}
        conf = pd.DataFrame([{"bucket": f"{b / 10:.1f}", "turns": counts.get(round(b / 10, 1), 0)} for b in range(10)])
        worst = pd.DataFrame(s["most_down_voted"] or [], columns=["message", "intent", "down_votes"])
        summary = f"**{s['turns']}** turns, **{s['votes']}** feedback rows"
        return summary, long, per_intent, conf, worst

    def queue():
        rows = service.review_queue()
        frame = pd.DataFrame(
            [
                {
                    "time": r["created_at"][:19].replace("T", " "),
                    "customer wrote": r["message"],
                    "bot": r["action"],
                    "answered": (r["answer"] or "")[:120],
                    "intent": r["intent"],
                    "confidence": f"{100 * (r['confidence'] or 0):.0f}%",
                    "vote": {1: "up", -1: "down"}.get(r["vote"], ""),
                    "comment": r["comment"] or "",
                    "customer picked": r["customer_picked"] or "",  # a clarification or "Did you mean…" topic
                }
                for r in rows
            ],
            columns=["time", "customer wrote", "bot", "answered", "intent", "confidence", "vote", "comment", "customer picked"],
        )
        return frame, gr.update(choices=[r["turn_id"] for r in rows], value=None), rows

    def correct(turn_id, intent):
        if not turn_id or not intent:
            return "Choose a turn and the right intent first.", *queue()
        try:
            service.correct(turn_id, intent)
        except CsbotError as err:
            return str(err), *queue()
        return f"Saved: {intent}.", *queue()

    def models():
        curve = service.learning_curve()
        frame = pd.DataFrame(
            [
                {
                    "serving": "*" if r["serving"] else "",
                    "version": r["version"],
                    "created": r["created_at"],
                    "validation": percent(r["validation_accuracy"]),
                    "live slice": percent(r["live_accuracy"]),
                    "repeats down-voted": percent(r["live_repeat_rate"]),
                    "seed tickets": percent(r["seed_accuracy"]),
                    "weights": mix_text(r["candidate_weight"]),
                    "handoffs / 100 customers": "" if r["handoffs_per_100_customers"] is None else f"{r['handoffs_per_100_customers']:.1f}",
                    "gate": f"{r['decision']} ({r['rule']}): {r['reason']}" if r["decision"] else "",
                }
                for r in curve
            ],
            columns=[
                "serving",
                "version",
                "created",
                "validation",
                "live slice",
                "repeats down-voted",
                "seed tickets",
                "weights",
                "handoffs / 100 customers",
                "gate",
            ],
        )
        measures = (
            ("validation_accuracy", "ticket validation %", 100),
            ("live_accuracy", "live slice %", 100),
            ("handoffs_per_100_customers", "handoffs / 100 customers", 1),
        )
        points = pd.DataFrame(
            [
                {"version": r["version"], "measure": name, "value": round(scale * r[key], 1), "gate": r["decision"]}
                for r in curve
                for key, name, scale in measures
                if r[key] is not None
            ],
            columns=["version", "measure", "value", "gate"],
        )
        return frame, points, gr.update(choices=[r["version"] for r in curve], value=None)

    def percent(value):
        return "" if value is None else f"{100 * value:.1f}%"

    def mix_text(weight):
        """How a version's weights were made: the fine-tune alone, or its mix with the parent it continued from."""
        if weight is None:
            return ""
        return "fine-tuned" if weight == 1 else f"{weight:g} fine-tuned + {1 - weight:g} parent"

    def act(fn, *args):
        try:
            return f"Serving {fn(*args)}.", *models()
        except CsbotError as err:
            return str(err), *models()

    def retrain():
        try:
            service.start_retrain()
        except CsbotError as err:
            return str(err)
        return "Retrain started."

    def retrain_status():
        status = service.retrain_status()
        return f"**{status['state']}**", status["log"]

    with gr.Blocks(title="csbot admin", analytics_enabled=False) as ui:
        gr.Markdown("## csbot admin")
        with gr.Tab("Analytics"):
            summary = gr.Markdown()
            # Bars, not a line: one day of traffic is one point, which a line chart does not draw.
            over_time = gr.BarPlot(x="day", y="count", color="kind", title="Turns and votes per day (stacked)", x_label_angle=-30)
            down_rate = gr.BarPlot(
                x="intent", y="down_rate", title="Down-vote rate per intent", sort="-y", y_lim=[0, 1], x_label_angle=-60, height=420, y_title="down-vote rate"
            )
            confidence = gr.BarPlot(x="bucket", y="turns", title="Confidence of the bot's turns", x_title="confidence from")
            worst = gr.Dataframe(label="Most down-voted queries", interactive=False)
            refresh = gr.Button("Refresh")
            outs = [summary, over_time, down_rate, confidence, worst]
            refresh.click(analytics, None, outs)
            ui.load(analytics, None, outs)
        with gr.Tab("Review"):
            listed = gr.State([])
            table = gr.Dataframe(
                label="Down-voted and low-confidence turns (select one to see its conversation)", interactive=False, elem_id="review-table", wrap=True
            )
            context = gr.Chatbot(label="The conversation around it", height=300, elem_id="review-transcript")
            with gr.Row():
                turn = gr.Dropdown(label="Turn", choices=[], elem_id="review-turn")
                intent = gr.Dropdown(label="Right intent", choices=service.intents(), value=None, elem_id="review-intent")
                save = gr.Button("Save correction", variant="primary", elem_id="review-save")
            note = gr.Markdown(elem_id="review-status")
            save.click(correct, [turn, intent], [note, table, turn, listed])
            table.select(review_picker(service.assistant.desk), [listed], [turn, context])
            ui.load(queue, None, [table, turn, listed])
        with gr.Tab("Models"):
            curve_plot = gr.ScatterPlot(  # points: a single version is visible, which a line of one point is not
                x="version",
                y="value",
                color="measure",
                title="This deployment's learning curve (each version as a candidate; tooltip: the gate's decision)",
                tooltip=["version", "measure", "value", "gate"],
                y_lim=[0, 100],
                elem_id="learning-curve",
            )
            versions = gr.Dataframe(label="Intent model versions (* serving)", interactive=False, elem_id="model-versions")
            with gr.Row():
                version = gr.Dropdown(label="Version", choices=[])
                promote = gr.Button("Promote")
                rollback = gr.Button("Roll back")
            model_note = gr.Markdown()
            promote.click(lambda v: act(service.promote, v), [version], [model_note, versions, curve_plot, version])
            rollback.click(lambda: act(service.rollback), None, [model_note, versions, curve_plot, version])
            with gr.Row():
                start = gr.Button("Start a retrain from feedback", variant="primary")
                check = gr.Button("Refresh retrain status")
            state = gr.Markdown()
            log_box = gr.Textbox(label="Retrain log", lines=12, max_lines=12)
            start.click(retrain, None, [state])
            check.click(retrain_status, None, [state, log_box])
            gr.Timer(5).tick(retrain_status, None, [state, log_box])
            ui.load(models, None, [versions, curve_plot, version])
    return ui
