"""The composition root: the one place that builds the store, the knowledge base, the registry and the
assistant from the settings.

Why a module of its own, above ``bot`` and ``training``: the server (``bot``) and the trainer
(``training``) never import each other; both get their parts from here, built with every setting (the
busy timeout, the size quota) applied the same way, so a new backend (another database) is one change here.
Training is imported lazily, so a serving process never loads the trainer.

Example:
    >>> from csbot.wiring import open_assistant          # doctest: +SKIP
    >>> open_assistant(Settings.from_env()).respond("I lost my card").text   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config import Settings
from core.registry import ModelRegistry
from core.store import FeedbackStore
from retrieval.encoder import Encoder
from retrieval.knowledge_base import KnowledgeBase
from retrieval.query_map import ensure_query_map

if TYPE_CHECKING:
    from bot.assistant import Assistant
    from training.retrain import RetrainResult
    from training.train_intent import IntentTrainConfig


@dataclass(frozen=True)
class Parts:
    """What one install is made of: the settings, the store, the knowledge base (over the store) and the registry."""

    settings: Settings
    store: FeedbackStore
    kb: KnowledgeBase
    registry: ModelRegistry


def open_store(settings: Settings) -> FeedbackStore:
    return FeedbackStore(settings.database, busy_timeout_s=settings.db_busy_timeout_s, max_size_mb=settings.db_max_mb, pool_size=settings.db_pool_size)


def open_registry(settings: Settings, store: FeedbackStore | None = None) -> ModelRegistry:
    """Model folders under the settings' model folder; the serving pointer in the database (every replica reads it)."""
    return ModelRegistry(settings.models_dir, store=store or open_store(settings))


def open_parts(settings: Settings) -> Parts:
    store = open_store(settings)
    kb = KnowledgeBase(store, index_dir=settings.index_dir, encoder=Encoder(), check_s=settings.model_check_s)
    return Parts(settings, store, kb, open_registry(settings, store))


def open_assistant(settings: Settings, parts: Parts | None = None) -> Assistant:
    """The one pipeline object the Gradio UI, the REST API, the widget and the CLI all call."""
    from bot.assistant import Assistant

    parts = parts or open_parts(settings)
    desk = None
    if settings.redis_url:  # live events reach the streams of every replica
        from bot.handoff import HandoffDesk
        from bot.redis_backplane import RedisEventBus

        desk = HandoffDesk(settings, parts.store, bus=RedisEventBus(settings.redis_url), add_ticket=parts.kb.add)
    return Assistant(settings, store=parts.store, knowledge_base=parts.kb, registry=parts.registry, desk=desk)


def is_ready(parts: Parts) -> bool:
    """Tickets are loaded and an intent model serves: nothing to do before serving (no training import needed)."""
    return parts.kb.count() > 0 and parts.registry.current_version("intent") is not None


def ensure_ready(settings: Settings, *, on_step: Callable[[str], None] | None = None) -> Parts:
    """First start: the bundled tickets, the index and the quick model (``training.retrain.ensure_ready``); later
    starts: the serving fine-tuned version's retrieval map, if it has none yet."""
    parts = open_parts(settings)
    steps = {"on_step": on_step} if on_step else {}
    if not is_ready(parts):
        from training.retrain import ensure_ready as prepare

        prepare(settings, kb=parts.kb, registry=parts.registry, **steps)
    ensure_query_map(parts.kb, parts.registry, **steps)  # a fine-tuned version from before query maps: one pass too
    return parts


def retrain(settings: Settings, cfg: IntentTrainConfig | None = None, **kwargs: Any) -> RetrainResult:
    """``csbot train``: ``training.retrain.retrain`` on the install the settings describe."""
    from training.retrain import retrain as run
    from training.train_intent import IntentTrainConfig

    parts = open_parts(settings)
    return run(settings, cfg or IntentTrainConfig(), kb=parts.kb, registry=parts.registry, **kwargs)


def app_from_env():
    """App factory for ``csbot serve --workers N``: each worker process builds its own Assistant from CSBOT_*."""
    import gc

    from bot.api import create_app

    app = create_app(open_assistant(Settings.from_env()).warm_up())
    gc.freeze()  # the models and start-up objects never die: keep them out of every garbage collection
    return app
