"""What serving and training must agree on: types, settings, errors, the store and the model registry.

Imports nothing else of ours, so ``core <- retrieval <- {bot, training}`` holds.
"""

from __future__ import annotations

from core.config import Settings
from core.errors import CsbotError, IngestError, InputError, ModelNotFound, UnknownTurn
from core.registry import ModelRegistry
from core.store import FeedbackStore
from core.types import Feedback, Reply, Source, Ticket

__all__ = [
    "CsbotError",
    "Feedback",
    "FeedbackStore",
    "IngestError",
    "InputError",
    "ModelNotFound",
    "ModelRegistry",
    "Reply",
    "Settings",
    "Source",
    "Ticket",
    "UnknownTurn",
]
