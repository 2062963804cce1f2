"""Model registry: numbered version folders with a JSON card, and a serving pointer that serving follows.

Training writes into a staging folder and publishes it by an atomic rename, so a crash never leaves a
half-written version that could be promoted. Promote and rollback only move the pointer. With a store (what
``csbot.wiring`` builds), the pointer lives in the database: one transaction per move, the same for every
replica. The ``CURRENT`` file and ``history.jsonl`` beside the versions are kept as a mirror (and are the
pointer itself for a registry without a store); an install from before the database pointer is adopted once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import InputError, ModelNotFound

if TYPE_CHECKING:
    from core.store import FeedbackStore

_VERSION = re.compile(r"^v\d{4,}$")


class ModelRegistry:
    """Versions of each model kind under ``root/<kind>/``.

    Example:
        >>> reg = ModelRegistry(tmp_path)                         # doctest: +SKIP
        >>> staging = reg.staging_dir("intent"); model.save_pretrained(staging)   # doctest: +SKIP
        >>> version = reg.publish("intent", staging, card={"metrics": {...}})      # doctest: +SKIP
        >>> reg.promote("intent", version)                        # doctest: +SKIP
    """

    def __init__(self, root: str | Path, *, store: FeedbackStore | None = None) -> None:
        self.root = Path(root)
        self.store = store

    def _kind_dir(self, kind: str) -> Path:
        if not re.fullmatch(r"[a-z_]+", kind):
            raise InputError(f"unknown model kind {kind!r}")
        return self.root / kind

    def staging_dir(self, kind: str) -> Path:
        path = self._kind_dir(kind) / f".staging-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def publish(self, kind: str, staging: Path, card: dict[str, Any]) -> str:
        """Give a fully written staging folder the next version number; returns the version."""
        card = {**card, "kind": kind, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        kind_dir = self._kind_dir(kind)
        while True:
            numbers = [int(p.name[1:]) for p in kind_dir.iterdir() if _VERSION.match(p.name)]
            version = f"v{max(numbers, default=0) + 1:04d}"
            card["version"] = version
            (staging / "card.json").write_text(json.dumps(card, indent=2, default=str))
            try:
                os.rename(staging, kind_dir / version)  # atomic; fails if another process took the number
                return version
            except OSError:
                if not (kind_dir / version).exists():
                    raise

    def versions(self, kind: str) -> list[dict[str, Any]]:
        """Cards of all published versions, oldest first, with ``serving`` marking the current one."""
        kind_dir = self._kind_dir(kind)
        if not kind_dir.exists():
            return []
        serving = self.current_version(kind)
        cards = []
        for path in sorted(p for p in kind_dir.iterdir() if _VERSION.match(p.name)):
            try:
                card = json.loads((path / "card.json").read_text())
            except (OSError, ValueError):
                card = {"version": path.name, "error": "card.json is missing or unreadable"}
            card["serving"] = path.name == serving
            cards.append(card)
        return cards

    def current_version(self, kind: str) -> str | None:
        if self.store is not None:
            return self.store.serving_version(kind) or self._adopt_file_pointer(kind)
        return self._file_version(kind)

    def _file_version(self, kind: str) -> str | None:
        try:
            version = (self._kind_dir(kind) / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return version or None

    def current(self, kind: str) -> tuple[str, Path]:
        """The serving version and its folder. Raises ModelNotFound when there is none."""
        version = self.current_version(kind)
        if version is None:
            raise ModelNotFound(f"no {kind} model is serving yet; run `csbot train` (or `csbot serve` trains one)")
        return version, self.path(kind, version)

    def path(self, kind: str, version: str) -> Path:
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise InputError(f"{version!r} is not a version name; expected something like v0003")
        path = self._kind_dir(kind) / version
        if not (path / "card.json").is_file():
            raise ModelNotFound(f"{kind} version {version} does not exist or is incomplete (no card.json in {path})")
        return path

    def card(self, kind: str, version: str) -> dict[str, Any]:
        return json.loads((self.path(kind, version) / "card.json").read_text())

    def promote(self, kind: str, version: str, *, reason: str = "promote") -> None:
        """Point serving at ``version`` (which must exist and hold a model)."""
        if self.card(kind, version).get("trained") is False:
            raise InputError(f"{kind} version {version} was refused before training: it holds no model to serve")
        if self.store is not None:
            self.store.move_serving(kind, [(version, reason)])
        kind_dir = self._kind_dir(kind)
        tmp = kind_dir / f".CURRENT-{uuid.uuid4().hex[:8]}"
        tmp.write_text(version + "\n")
        os.replace(tmp, kind_dir / "CURRENT")
        entry = {"version": version, "reason": reason, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        with (kind_dir / "history.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")

    def _history(self, kind: str) -> list[str]:
        """Every version the pointer was moved to, oldest first."""
        if self.store is not None:
            self.current_version(kind)  # adopts a file pointer first
            return [m["version"] for m in self.store.serving_moves(kind)]
        return [m["version"] for m in self._file_history(kind)]

    def _file_history(self, kind: str) -> list[dict[str, Any]]:
        history_file = self._kind_dir(kind) / "history.jsonl"
        return [json.loads(line) for line in history_file.read_text().splitlines()] if history_file.exists() else []

    def _adopt_file_pointer(self, kind: str) -> str | None:
        """An install from before the database pointer: copy its history and CURRENT into the store, once."""
        current = self._file_version(kind)
        if current is None:
            return None
        moves = [(m["version"], m.get("reason", "")) for m in self._file_history(kind)]
        if not moves or moves[-1][0] != current:
            moves.append((current, "adopted from the CURRENT file"))
        self.store.move_serving(kind, moves, only_if_unset=True)
        return self.store.serving_version(kind)

    def recent_versions(self, kind: str, n: int) -> list[str]:
        """The last ``n`` distinct versions that served (the serving one first): the chain the drift rule looks at."""
        served = [self.current_version(kind), *reversed(self._history(kind))]
        return list(dict.fromkeys(v for v in served if v))[:n]

    def rollback(self, kind: str) -> str:
        """Serve the version that served before the current one; returns it."""
        current = self.current_version(kind)
        history = self._history(kind)
        # Walk back past every entry of the current version to the one before it.
        earlier = [v for v in history if v != current]
        if not earlier:
            raise ModelNotFound(f"no earlier {kind} version to roll back to (serving {current})")
        previous = earlier[-1]
        self.promote(kind, previous, reason=f"rollback from {current}")
        return previous

    def clean_staging(self, kind: str) -> int:
        """Remove folders left by interrupted trainings; returns how many."""
        kind_dir = self._kind_dir(kind)
        stale = list(kind_dir.glob(".staging-*")) if kind_dir.exists() else []
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return len(stale)
