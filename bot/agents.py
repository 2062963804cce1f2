"""Who may log in: the admin (``CSBOT_ADMIN_USER``/``CSBOT_ADMIN_PASSWORD``) and named support agents.

Agents live in the database (``csbot agents add NAME``), so adding one needs no restart and every worker
sees it. Passwords are hashed with scrypt (``hashlib.scrypt``, a standard memory-hard KDF in Python's
standard library, no new dependency), with a random salt per agent, and checked in constant time. The
admin (``CSBOT_ADMIN_USER``) may use the inbox too.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import threading
import time

from core.errors import InputError
from core.store import FeedbackStore

SCRYPT = {"n": 2**14, "r": 8, "p": 1}  # OWASP's minimum for scrypt; about 50 ms a check
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 ._-]{0,39}$")
MIN_PASSWORD = 8
SEEN_EVERY_S = 30.0  # write an agent's "last seen" at most this often


def admin_credentials() -> tuple[str, str] | None:
    user, password = os.environ.get("CSBOT_ADMIN_USER", ""), os.environ.get("CSBOT_ADMIN_PASSWORD", "")
    return (user, password) if user and password else None


def check_password(user: str, password: str) -> bool:
    """The admin's login. Both parts compared in full, in constant time: timing tells neither which was wrong nor how much."""
    creds = admin_credentials()
    if creds is None:
        return False
    ok_user = secrets.compare_digest(user.encode(), creds[0].encode())
    ok_password = secrets.compare_digest(password.encode(), creds[1].encode())
    return ok_user and ok_password


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=len(expected), **SCRYPT)
    except ValueError:
        return False
    return kind == "scrypt" and secrets.compare_digest(actual, expected)


class AgentDirectory:
    """Who may answer customers: add, remove, list, check a login, and when each was last seen."""

    def __init__(self, store: FeedbackStore) -> None:
        self.store = store
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, str], str] = {}  # (name, sha256 of the password) -> the hash it matched

    def add(self, name: str, password: str) -> None:
        if not NAME.match(name):
            raise InputError("an agent's name starts with a letter and has at most 40 letters, digits, spaces, dots, dashes or underscores")
        if len(password) < MIN_PASSWORD:
            raise InputError(f"the password must have at least {MIN_PASSWORD} characters")
        self.store.put_agent(name, hash_password(password))

    def remove(self, name: str) -> None:
        if not self.store.delete_agent(name):
            raise InputError(f"there is no agent {name!r}")

    def list(self) -> list[dict]:
        return self.store.agents()

    def names(self) -> list[str]:
        """Everyone a conversation can be transferred to: the agents, and the admin when one is set."""
        admin = admin_credentials()
        return [a["name"] for a in self.store.agents()] + ([admin[0]] if admin else [])

    def login(self, name: str, password: str) -> bool:
        """An agent's or the admin's login (the inbox accepts both)."""
        return check_password(name, password) or self.check(name, password)

    def check(self, name: str, password: str) -> bool:
        """The login is an agent's. Successful checks are remembered (by a hash of the password), so the
        inbox's polling does not pay scrypt every second; a changed or removed agent fails at once."""
        row = self.store.agent(name)
        if row is None:
            verify_password(password, hash_password("x" * MIN_PASSWORD))  # same work for unknown names: no timing hint
            return False
        key = (name, hashlib.sha256(password.encode()).hexdigest())
        if self._verified.get(key) == row["password_hash"]:
            return True
        if verify_password(password, row["password_hash"]):
            self._verified[key] = row["password_hash"]
            return True
        return False

    def seen(self, name: str) -> None:
        """Note that ``name`` is at the inbox (an agent online is what 'someone will answer' rests on)."""
        now = time.monotonic()
        with self._lock:
            if now - self._seen.get(name, -SEEN_EVERY_S) < SEEN_EVERY_S:
                return
            self._seen[name] = now
        self.store.agent_seen(name)
