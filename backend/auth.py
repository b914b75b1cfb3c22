"""Who may use the API: the holder of the API key, or a browser paired with a one-time code.

The API key comes as the ``X-API-Key`` header, ``Authorization: Bearer``, or the ``parallax_api_key``
cookie (percent-encoded by the web UI: ``/``, ``+`` and ``=`` are not safe in cookies as typed).
A paired device (a headset, where typing a 32-character key is a chore) carries the
``parallax_session`` cookie instead; its token is stored only as a hash in ``device_pairings`` and
stops working the moment that pairing is revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from flask import Request

from backend.db import Database

API_KEY_COOKIE = "parallax_api_key"
SESSION_COOKIE = "parallax_session"
SESSION_MAX_AGE_S = 400 * 24 * 3600  # the longest lifetime browsers accept for a cookie
# Reachable without any credential: liveness, and the exchange of a pairing code for a session.
OPEN_API_PATHS = frozenset({"/api/health", "/api/pairing/claim"})

# 32 letters and digits that cannot be mistaken for one another (no 0/O, 1/I/L): 8 of them give
# 40 bits, plenty for a code that works once and for 10 minutes.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
CODE_TTL = timedelta(minutes=10)
LAST_SEEN_GRANULARITY = timedelta(minutes=5)  # don't write the row on every request

API_KEY_FILE = "api_key"


class Access:
    """What a request was authorised with."""

    OPEN = "open"  # no API key configured: everything is allowed (loopback only)
    API_KEY = "api_key"
    PAIRED = "paired"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def presented_api_key(request: Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    header = request.headers.get("X-API-Key")
    if header:
        return header
    # The web UI writes the cookie with encodeURIComponent; a raw key (curl -b) decodes to itself
    # unless it contains '%', which base64/hex keys never do.
    return unquote(request.cookies.get(API_KEY_COOKIE, ""))


def api_key_matches(given: str, key: str) -> bool:
    return hmac.compare_digest(given.encode(), key.encode())


def authorise(api_key: str | None, pairings: Pairings, request: Request) -> str | None:
    """The kind of access this request has (an ``Access`` value), or None when it has none."""
    if not api_key:
        return Access.OPEN
    if api_key_matches(presented_api_key(request), api_key):
        return Access.API_KEY
    token = request.cookies.get(SESSION_COOKIE)
    if token and pairings.session(token) is not None:
        return Access.PAIRED
    return None


def normalise_code(text: str) -> str:
    """What a person types ("abcd-efgh", "ABCD EFGH") as the stored form ("ABCDEFGH")."""
    return "".join(ch for ch in text.upper() if ch not in " -_")


def format_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


@dataclass(frozen=True)
class NewPairing:
    row: dict
    code: str  # shown once: only its hash is stored


class Pairings:
    """The ``device_pairings`` table: create a code, claim it once for a session, list, revoke."""

    COLUMNS = "id, label, code_expires_at, user_agent, created_at, claimed_at, last_seen_at, revoked_at"

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, label: str = "") -> NewPairing:
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        row = self.db.fetchone(
            f"""INSERT INTO device_pairings (id, label, code_hash, code_expires_at)
                VALUES (%s, %s, %s, now() + %s) RETURNING {self.COLUMNS}""",
            (uuid.uuid4(), label.strip()[:100], hash_secret(code), CODE_TTL),
        )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return NewPairing(row=row, code=code)

    def claim(self, code: str, user_agent: str = "") -> tuple[dict, str] | None:
        """Exchange a valid, unexpired, unused code for a session token; None when it is not one."""
        code = normalise_code(code)
        if len(code) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
            return None
        token = secrets.token_urlsafe(32)
        # One UPDATE: two browsers racing for the same code cannot both win.
        row = self.db.fetchone(
            f"""UPDATE device_pairings
                SET code_hash = NULL, token_hash = %s, claimed_at = now(), last_seen_at = now(),
                    user_agent = %s
                WHERE code_hash = %s AND code_expires_at > now() AND revoked_at IS NULL
                RETURNING {self.COLUMNS}""",
            (hash_secret(token), user_agent[:300], hash_secret(code)),
        )
        return (row, token) if row else None

    def session(self, token: str) -> dict | None:
        """The live pairing a session token belongs to (and note that it was seen), else None."""
        digest = hash_secret(token)
        row = self.db.fetchone(
            "SELECT id, last_seen_at FROM device_pairings WHERE token_hash = %s AND revoked_at IS NULL", (digest,)
        )
        if row and (row["last_seen_at"] is None or row["last_seen_at"] < datetime.now(UTC) - LAST_SEEN_GRANULARITY):
            self.db.execute("UPDATE device_pairings SET last_seen_at = now() WHERE id = %s", (row["id"],))
        return row

    def list(self) -> list[dict]:
        return self.db.fetchall(f"SELECT {self.COLUMNS} FROM device_pairings ORDER BY created_at DESC")

    def revoke(self, pairing_id: str) -> dict | None:
        """Revoke a pairing (an unclaimed code stops working too); None when there is no such pairing."""
        return self.db.fetchone(
            f"""UPDATE device_pairings SET revoked_at = coalesce(revoked_at, now()), code_hash = NULL
                WHERE id = %s RETURNING {self.COLUMNS}""",
            (pairing_id,),
        )


def pairing_state(row: dict) -> str:
    if row["revoked_at"]:
        return "revoked"
    if row["claimed_at"]:
        return "paired"
    if row["code_expires_at"] <= datetime.now(UTC):
        return "expired"
    return "waiting"


# ---------------------------------------------------------------- reachability and the key


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname: assume it resolves beyond this machine


def load_or_create_api_key(data_dir: Path) -> tuple[str, bool]:
    """The key stored in DATA_DIR/api_key, made (readable by the owner only) when missing.
    Returns (key, created)."""
    path = Path(data_dir) / API_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key, False
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)  # 32 characters of [A-Za-z0-9_-]
    # O_EXCL + 0600: never readable by others, not even between create and chmod.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    os.chmod(path, 0o600)
    return key, True
