"""Settings: sensible defaults, overridden by ``CSBOT_*`` environment variables, then by CLI flags."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from core.errors import CsbotError

_DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def _parse_bool(raw: str) -> bool:
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


@dataclass(frozen=True)
class Settings:
    """Everything a deployment may want to change.

    Example:
        >>> Settings.from_env({"CSBOT_PORT": "8000"}).port
        8000
    """

    home: Path = Path("var")  # database, index and model versions live here
    database_url: str = ""  # postgresql://user:pass@host/db to share one database between replicas (empty: SQLite in home)
    model_dir: str = ""  # model versions, shared by replicas (e.g. an NFS mount; empty: home/models)
    model_check_s: float = 1.0  # a server looks at the serving pointer at most this often (a promotion reaches it within this)
    redis_url: str = ""  # redis://host:6379/0 to share the rate limit and live events between replicas (empty: in-process)
    host: str = "127.0.0.1"
    port: int = 7860
    default_tickets: Path = _DATA_DIR / "tickets.csv"
    eval_file: Path = _DATA_DIR / "eval.csv"
    # follow-ups written for training (earlier_intent,message,intent), which every fine-tuned model's follow-up reader
    # learns from; a team whose intents are not BANKING77's writes its own (data/README.md)
    followups_file: Path = _DATA_DIR / "followups_train.csv"
    # pairs made from the tickets for the first start's follow-up reader (0: none, the first start about 2 minutes
    # sooner, follow-ups then read by the plain mixture); `csbot train` has --followup-pairs
    first_reader_pairs: int = 6000
    answer_threshold: float = 0.5  # calibrated confidence needed to answer outright
    handoff_threshold: float = 0.2  # below this the question is out of scope: hand off to a person
    min_similarity: float = 0.45  # hand off when no ticket is this close (cosine): the question is about something else
    thresholds_from_model: bool = True  # use the thresholds the model chose on validation data (off when set above)
    max_message_chars: int = 2000  # longer messages are truncated, with a notice
    top_k: int = 20  # candidates retrieved before ranking
    num_sources: int = 3  # sources shown with an answer
    db_busy_timeout_s: float = 10.0  # a write waits this long for a locked database, then the customer gets a plain 503
    db_max_mb: float = 0.0  # a size quota for the database; beyond it writes fail like on a full disk (0 = none)
    db_pool_size: int = 20  # PostgreSQL: connections per process (PostgreSQL's max_connections must cover every replica's)
    max_batch: int = 32  # most messages one model pass serves (concurrent requests are batched)
    max_pending: int = 64  # chat requests in progress at once; more get 503 "busy, try again" instead of a pile-up
    rate_limit: int = 120  # REST requests per minute per client (429 above; 0 = off); bursts up to half of it
    trust_forwarded_for: bool = False  # behind a reverse proxy: the client is the first X-Forwarded-For address
    allowed_origins: str = "*"  # comma-separated sites that may embed the widget (CORS); empty: same origin only
    handoff_webhook: str = ""  # URL told about every conversation that starts waiting for a person (JSON with a Slack-style "text")
    handoff_timeout: float = 600.0  # seconds: a customer waiting longer than this is offered to leave a message
    handoff_hours: str = ""  # when people answer, e.g. "mon-fri 09:00-17:00 Europe/Berlin" (empty: always)
    agent_away_minutes: float = 15.0  # no agent at the inbox for this long: say so and offer to leave a message (0 = don't check)

    def __post_init__(self) -> None:
        if not 0.0 <= self.handoff_threshold <= self.answer_threshold <= 1.0:
            raise CsbotError(
                "expected 0 <= handoff_threshold <= answer_threshold <= 1, found "
                f"{self.handoff_threshold} and {self.answer_threshold}; set CSBOT_HANDOFF_THRESHOLD/CSBOT_ANSWER_THRESHOLD"
            )
        if self.max_batch < 1 or self.max_pending < 1 or self.rate_limit < 0:
            raise CsbotError("max_batch and max_pending must be at least 1 and rate_limit at least 0 (0 turns it off)")
        if self.first_reader_pairs < 0:
            raise CsbotError(f"first_reader_pairs must be at least 0 (0: no follow-up reader at first start), found {self.first_reader_pairs}")
        if self.top_k < 1 or self.num_sources < 1 or self.max_message_chars < 1:
            raise CsbotError("top_k, num_sources and max_message_chars must be at least 1")

    @property
    def db_path(self) -> Path:
        return self.home / "csbot.db"

    @property
    def database(self) -> str:
        """Where the store lives: the PostgreSQL URL when set, else the SQLite file in home."""
        return self.database_url or str(self.db_path)

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def models_dir(self) -> Path:
        return Path(self.model_dir) if self.model_dir else self.home / "models"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``CSBOT_<FIELD>`` variables, then apply non-None keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"CSBOT_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            kind = type(getattr(cls, f.name))
            try:
                values[f.name] = Path(raw) if kind in (Path, type(Path())) else _parse_bool(raw) if kind is bool else kind(raw)
            except ValueError as err:
                raise CsbotError(f"CSBOT_{f.name.upper()}={raw!r} is not a valid {kind.__name__}") from err
        explicit = {"answer_threshold", "handoff_threshold"} & (set(values) | {k for k, v in overrides.items() if v is not None})
        if explicit and "thresholds_from_model" not in values:
            values["thresholds_from_model"] = False  # a threshold set by hand wins over the model's
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)

    def to_dict(self) -> dict[str, Any]:
        """For cards and logs: paths as text, the database password hidden."""
        values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
        values["database_url"] = redact_url(self.database_url)
        return values


def redact_url(url: str) -> str:
    """A database or Redis URL without its password, for messages, cards and logs."""
    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", url)
