"""Console accounts: creating and deactivating users, passwords (argon2id), browser sessions, API tokens and
the failed-login counts that throttle guessing.

Synchronous functions over a connection (run them in a thread); who may see what is `hq.auth`'s business.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hq.clock import now_ms
from hq.models import api_tokens, department_heads, experts, login_failures, sessions, users
from hq.models.accounts import ROLES

MIN_PASSWORD_LENGTH = 10
USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-@")
LAST_SEEN_EVERY_MS = 60_000  # a session's last use is written at most once a minute

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the user does not exist, so that a missing user takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AccountError(ValueError):
    """A user, password or token is not acceptable; the message says which field and why."""


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not 2 <= len(name) <= 64 or not set(name) <= USERNAME_CHARS:
        raise AccountError(f"username {username!r}: 2-64 characters, letters, digits and . _ - @ only")
    return name


def check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    if username.lower() in password.lower():
        raise AccountError("password: must not contain the username")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---- users --------------------------------------------------------------------------------------
def create_user(conn: sa.Connection, username: str, role: str, *, display_name: str | None = None,
                password: str | None = None, clinic_id: str | None = None) -> int:
    name = check_username(username)
    if role not in ROLES:
        raise AccountError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if role == "clinic_staff" and not clinic_id:
        raise AccountError("clinic_id: clinic staff belong to a clinic; give its id")
    if role != "clinic_staff" and clinic_id:
        raise AccountError(f"clinic_id: only clinic staff belong to a clinic, not the role {role!r}")
    if password is not None:
        check_password(password, name)
    if conn.execute(sa.select(users.c.id).where(users.c.username == name)).first() is not None:
        raise AccountError(f"username {name!r} is taken")
    now = now_ms()
    result = conn.execute(users.insert().values(
        username=name, display_name=display_name or name, role=role, clinic_id=clinic_id, active=True,
        password_hash=hash_password(password) if password is not None else None, created_ms=now, updated_ms=now,
        password_changed_ms=now if password is not None else None))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def set_password(conn: sa.Connection, user_id: int, password: str) -> None:
    username = conn.execute(sa.select(users.c.username).where(users.c.id == user_id)).scalar_one()
    check_password(password, username)
    now = now_ms()
    conn.execute(users.update().where(users.c.id == user_id)
                 .values(password_hash=hash_password(password), password_changed_ms=now, updated_ms=now))
    # Every other session was opened with the old password.
    conn.execute(sessions.delete().where(sessions.c.user_id == user_id))


def deactivate_user(conn: sa.Connection, user_id: int) -> int:
    """The account can no longer log in; its sessions and API tokens end now. Returns sessions ended."""
    now = now_ms()
    conn.execute(users.update().where(users.c.id == user_id).values(active=False, deactivated_ms=now, updated_ms=now))
    ended = conn.execute(sessions.delete().where(sessions.c.user_id == user_id)).rowcount
    conn.execute(api_tokens.update().where(api_tokens.c.user_id == user_id, api_tokens.c.revoked_ms.is_(None))
                 .values(revoked_ms=now))
    return int(ended)


def user_by_name(conn: sa.Connection, username: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(users).where(users.c.username == username.strip().lower())).mappings().first()
    return None if row is None else dict(row)


def user_by_id(conn: sa.Connection, user_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).mappings().first()
    return None if row is None else dict(row)


def list_users(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(users).order_by(users.c.username)).mappings()]


@dataclass(frozen=True, slots=True)
class Identity:
    """What a session or token says about its user: the raw material of an `hq.auth.Actor`."""

    user_id: int
    username: str
    display_name: str
    role: str
    clinic_id: str | None
    expert_id: int | None
    department_ids: frozenset[int]
    session_id: str | None = None
    csrf_token: str | None = None


def identity(conn: sa.Connection, user: dict[str, Any], session_id: str | None = None,
             csrf_token: str | None = None) -> Identity:
    expert_id = conn.execute(sa.select(experts.c.id).where(experts.c.user_id == user["id"])).scalar()
    heads = conn.execute(sa.select(department_heads.c.department_id)
                         .where(department_heads.c.user_id == user["id"])).scalars().all()
    return Identity(user["id"], user["username"], user["display_name"], user["role"], user["clinic_id"],
                    None if expert_id is None else int(expert_id), frozenset(int(d) for d in heads),
                    session_id, csrf_token)


# ---- sessions -----------------------------------------------------------------------------------
def open_session(conn: sa.Connection, user_id: int, *, max_s: int, ip: str | None, user_agent: str | None
                 ) -> tuple[str, str]:
    """A new session; returns (cookie token, CSRF token). Only the token's digest is stored."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = now_ms()
    conn.execute(sessions.insert().values(id=token_digest(token), user_id=user_id, csrf_token=csrf, created_ms=now,
                                          last_seen_ms=now, expires_ms=now + max_s * 1000, ip=ip,
                                          user_agent=(user_agent or "")[:300]))
    return token, csrf


def session_identity(conn: sa.Connection, token: str, *, idle_s: int) -> Identity | None:
    """The identity of a live session (active user, not expired, used within `idle_s`), else None."""
    now = now_ms()
    row = conn.execute(
        sa.select(sessions.c.id.label("session_id"), sessions.c.csrf_token, sessions.c.last_seen_ms, users)
        .join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.id == token_digest(token), users.c.active.is_(True),
               sessions.c.expires_ms > now, sessions.c.last_seen_ms > now - idle_s * 1000)
    ).mappings().first()
    if row is None:
        return None
    if now - row["last_seen_ms"] > LAST_SEEN_EVERY_MS:
        conn.execute(sessions.update().where(sessions.c.id == row["session_id"]).values(last_seen_ms=now))
    user = {k: row[k] for k in ("id", "username", "display_name", "role", "clinic_id")}
    return identity(conn, user, row["session_id"], row["csrf_token"])


def close_session(conn: sa.Connection, token: str) -> None:
    conn.execute(sessions.delete().where(sessions.c.id == token_digest(token)))


def session_alive(conn: sa.Connection, session_id: str) -> bool:
    """For long-lived connections (WebSockets): the session still exists and its user is active."""
    return conn.execute(
        sa.select(sessions.c.id).join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.id == session_id, users.c.active.is_(True), sessions.c.expires_ms > now_ms())
    ).first() is not None


# ---- API tokens ---------------------------------------------------------------------------------
def create_api_token(conn: sa.Connection, user_id: int, name: str) -> str:
    token = "hqt_" + secrets.token_urlsafe(32)
    conn.execute(api_tokens.insert().values(user_id=user_id, name=name, token_hash=token_digest(token),
                                            created_ms=now_ms()))
    return token


def token_identity(conn: sa.Connection, token: str) -> Identity | None:
    row = conn.execute(
        sa.select(api_tokens.c.id.label("token_id"), api_tokens.c.last_used_ms, users)
        .join(users, users.c.id == api_tokens.c.user_id)
        .where(api_tokens.c.token_hash == token_digest(token), api_tokens.c.revoked_ms.is_(None),
               users.c.active.is_(True))
    ).mappings().first()
    if row is None:
        return None
    now = now_ms()
    if row["last_used_ms"] is None or now - row["last_used_ms"] > LAST_SEEN_EVERY_MS:
        conn.execute(api_tokens.update().where(api_tokens.c.id == row["token_id"]).values(last_used_ms=now))
    user = {k: row[k] for k in ("id", "username", "display_name", "role", "clinic_id")}
    return identity(conn, user)


# ---- throttling ---------------------------------------------------------------------------------
def recent_failures(conn: sa.Connection, *, username: str, ip: str, window_s: int) -> tuple[int, int]:
    """(failures for this username, failures from this address) within the window."""
    since = now_ms() - window_s * 1000
    by_user = conn.execute(sa.select(sa.func.count()).select_from(login_failures).where(
        login_failures.c.username == username, login_failures.c.at_ms > since)).scalar_one()
    by_ip = conn.execute(sa.select(sa.func.count()).select_from(login_failures).where(
        login_failures.c.ip == ip, login_failures.c.at_ms > since)).scalar_one()
    return int(by_user), int(by_ip)


def note_failure(conn: sa.Connection, *, username: str, ip: str, window_s: int) -> None:
    now = now_ms()
    conn.execute(login_failures.insert().values(username=username[:64], ip=ip[:64], at_ms=now))
    conn.execute(login_failures.delete().where(login_failures.c.at_ms < now - 2 * window_s * 1000))


def clear_failures(conn: sa.Connection, username: str) -> None:
    conn.execute(login_failures.delete().where(login_failures.c.username == username))
