"""Serving: the Assistant pipeline and the surfaces that call it (Gradio UI, REST API, widget, CLI)."""

from __future__ import annotations

from bot.assistant import Assistant

__all__ = ["Assistant"]
