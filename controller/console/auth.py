"""Console accounts, sessions, CSRF tokens and command-line tokens, kept in the ledger
(``controller.ledger.accounts``).

- passwords: argon2id through argon2-cffi (hashes are re-computed when its parameters change);
  at most two hashes at once per process, and failed logins throttled per user and per address
  (:mod:`controller.console.throttle`);
- audit: account changes (who made whom what), logins (success and failure, with the client
  address), lock-outs, logouts and tokens are events of the ledger-wide chain (``campaign_id``
  NULL), with the acting person as actor;
- command-line tokens: 256 random bits, stored as their SHA-256, for decisions from the CLI on a
  shared ledger (``cellpilot users token NAME``);
- sessions: a random 256-bit cookie value, stored server-side as its SHA-256, expiring after
  :data:`SESSION_TTL`; the cookie is HttpOnly and SameSite=Lax;
- CSRF: one random token per session, required in every state-changing form (``csrf_token``)
  or header (``X-CSRF-Token``) and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine
from sqlmodel import Session, col, delete, select

from controller.console import throttle
from controller.ledger.accounts import ApiToken, Role, UserAccount, WebSession
from controller.ledger.models import utcnow
from controller.loop.events import EventKind, append_event

SESSION_TTL = timedelta(hours=12)
_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password")


class AccountError(Exception):
    """An account cannot be created or changed (duplicate name, unknown role, empty password)."""


class LoginRefused(AccountError):
    """A login refused before its password was checked: too many failures, or too busy."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _audit(s: Session, kind: EventKind, actor: str, payload: dict) -> None:
    """An account event on the ledger-wide chain, committed with the change it records."""
    append_event(s, None, kind, payload, actor=actor)


def _hash(password: str) -> str:
    with throttle.hashing_slot():
        return _hasher.hash(password)


@dataclass(frozen=True)
class CurrentUser:
    """The logged-in user of one request, with the session's CSRF token."""

    name: str
    role: Role
    csrf_token: str
    session_id: str

    def can(self, role: Role) -> bool:
        return self.role.rank >= role.rank


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _as_utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}; choose viewer, operator or admin") from None


def add_user(
    db: Engine, name: str, password: str, role: str = "viewer", *, actor: str = "system"
) -> UserAccount:
    """Create an account; raise :class:`AccountError` when the name is taken. ``actor`` is who
    creates it (an admin's name, or the OS user of ``cellpilot users add``)."""
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise AccountError("a user name is 1-64 printable characters")
    if len(password) < 8:
        raise AccountError("a password needs at least 8 characters")
    r = parse_role(role)
    with Session(db) as s:
        if s.exec(select(UserAccount).where(UserAccount.name == name)).first():
            raise AccountError(f"user {name!r} exists")
        user = UserAccount(name=name, role=r.value, password_hash=_hash(password))
        s.add(user)
        _audit(s, EventKind.ACCOUNT_CREATED, actor, {"name": name, "role": r.value})
        s.commit()
        s.refresh(user)
        return user


def set_password(db: Engine, name: str, password: str, *, actor: str = "system") -> None:
    """Set a new password and end the user's sessions."""
    if len(password) < 8:
        raise AccountError("a password needs at least 8 characters")
    with Session(db) as s:
        user = _user(s, name)
        user.password_hash = _hash(password)
        s.add(user)
        s.exec(delete(WebSession).where(col(WebSession.user_id) == user.id))
        _audit(s, EventKind.ACCOUNT_PASSWORD_CHANGED, actor, {"name": name})
        s.commit()


def set_role(db: Engine, name: str, role: str, *, actor: str = "system") -> None:
    new = parse_role(role).value
    with Session(db) as s:
        user = _user(s, name)
        old, user.role = user.role, new
        s.add(user)
        _audit(s, EventKind.ACCOUNT_ROLE_CHANGED, actor, {"name": name, "old": old, "new": new})
        s.commit()


def remove_user(db: Engine, name: str, *, actor: str = "system") -> None:
    """Delete an account, its sessions and tokens (its name stays in the audit trail)."""
    with Session(db) as s:
        user = _user(s, name)
        s.exec(delete(WebSession).where(col(WebSession.user_id) == user.id))
        s.exec(delete(ApiToken).where(col(ApiToken.user_id) == user.id))
        _audit(s, EventKind.ACCOUNT_REMOVED, actor, {"name": name, "role": user.role})
        s.delete(user)
        s.commit()


def _user(s: Session, name: str) -> UserAccount:
    user = s.exec(select(UserAccount).where(UserAccount.name == name)).first()
    if user is None:
        raise AccountError(f"no user {name!r}")
    return user


def list_users(db: Engine) -> list[dict]:
    with Session(db) as s:
        return [
            {
                "name": u.name,
                "role": u.role,
                "disabled": u.disabled,
                "created_at": u.created_at,
                "last_login_at": u.last_login_at,
            }
            for u in s.exec(select(UserAccount).order_by(col(UserAccount.name)))
        ]


def authenticate(
    db: Engine, name: str, password: str, *, address: str = "unknown", channel: str = "console"
) -> UserAccount | None:
    """The account when ``password`` is right (and the account enabled), else None; every
    attempt is an event (``login_succeeded`` / ``login_failed``) naming the client ``address``.

    Raises:
        LoginRefused: the user or the address is locked out after repeated failures (nothing
            is hashed), or every hashing slot stayed busy.
    """
    name = name.strip()
    keys = throttle.keys(name, address)
    wait = throttle.locked_for(db, keys)
    if wait:
        raise LoginRefused(f"too many failed logins; try again in {_duration(wait)}", wait)
    with Session(db) as s:
        user = s.exec(select(UserAccount).where(UserAccount.name == name)).first()
        try:
            with throttle.hashing_slot():
                _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
            ok = user is not None and not user.disabled
        except (VerificationError, InvalidHashError):
            ok = False
        except throttle.Busy as e:
            raise LoginRefused(str(e), 5) from None
        where = {"address": address, "channel": channel}
        if not ok:
            _failed(db, s, user, keys, where)
            return None
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hash(password)
        user.last_login_at = utcnow()
        s.add(user)
        _audit(s, EventKind.LOGIN_SUCCEEDED, user.name, {"name": user.name, **where})
        s.commit()
        s.refresh(user)
    throttle.clear(db, keys)
    return user


def _failed(db: Engine, s: Session, user: UserAccount | None, keys: list[str], where: dict) -> None:
    # An unknown name is not recorded: it may be a password typed into the name field.
    known = user.name if user else None
    locked = throttle.record_failure(db, keys)
    _audit(
        s,
        EventKind.LOGIN_FAILED,
        known or "unknown",
        {"name": known, "known_user": user is not None, **where},
    )
    for key, secs in locked.items():
        scope = "user" if key.startswith("user:") else "address"
        _audit(
            s,
            EventKind.LOGIN_LOCKED,
            known or "unknown",
            {"name": known, "scope": scope, "locked_s": secs, **where},
        )
    s.commit()


def _duration(seconds: int) -> str:
    return f"{seconds} s" if seconds < 120 else f"{round(seconds / 60)} min"


def create_token(db: Engine, name: str, *, label: str | None = None, actor: str = "system") -> str:
    """A new command-line token for ``name``; returned once, stored as its SHA-256."""
    token = "cpt_" + secrets.token_urlsafe(32)
    with Session(db) as s:
        user = _user(s, name)
        row = ApiToken(user_id=user.id, digest=_digest(token), label=label)
        s.add(row)
        s.flush()
        _audit(
            s, EventKind.TOKEN_CREATED, actor, {"name": name, "token_id": row.id, "label": label}
        )
        s.commit()
    return token


def revoke_tokens(db: Engine, name: str, *, actor: str = "system") -> int:
    """Revoke every token of ``name``; how many were active."""
    with Session(db) as s:
        user = _user(s, name)
        rows = s.exec(
            select(ApiToken).where(ApiToken.user_id == user.id, col(ApiToken.revoked).is_(False))
        ).all()
        for row in rows:
            row.revoked = True
            s.add(row)
        _audit(s, EventKind.TOKEN_REVOKED, actor, {"name": name, "tokens": [r.id for r in rows]})
        s.commit()
        return len(rows)


def token_user(db: Engine, token: str) -> UserAccount | None:
    """The enabled account a valid, unrevoked token belongs to, else None."""
    with Session(db) as s:
        row = s.exec(
            select(ApiToken, UserAccount)
            .join(UserAccount, UserAccount.id == ApiToken.user_id)
            .where(ApiToken.digest == _digest(token.strip()))
        ).first()
        if row is None or row[0].revoked or row[1].disabled:
            return None
        tok, user = row
        tok.last_used_at = utcnow()
        s.add(tok)
        s.commit()
        s.refresh(user)
        return user


def create_session(db: Engine, user_id: int) -> str:
    """Start a session; return the cookie value (only its digest is stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with Session(db) as s:
        s.exec(delete(WebSession).where(col(WebSession.expires_at) < now))
        s.add(
            WebSession(
                id=_digest(token),
                user_id=user_id,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                expires_at=now + SESSION_TTL,
            )
        )
        s.commit()
    return token


def load_session(db: Engine, token: str | None) -> CurrentUser | None:
    """The user of a session cookie, or None when it is missing, unknown or expired."""
    if not token:
        return None
    with Session(db) as s:
        row = s.exec(
            select(WebSession, UserAccount)
            .join(UserAccount, UserAccount.id == WebSession.user_id)
            .where(WebSession.id == _digest(token))
        ).first()
        if row is None:
            return None
        sess, user = row
        if _as_utc(sess.expires_at) < utcnow() or user.disabled:
            return None
        return CurrentUser(
            name=user.name, role=Role(user.role), csrf_token=sess.csrf_token, session_id=sess.id
        )


def end_session(db: Engine, token: str | None, *, address: str = "unknown") -> None:
    """Log out: delete the session (a ``logout`` event names the user and the address)."""
    if not token:
        return
    with Session(db) as s:
        row = s.exec(
            select(WebSession, UserAccount)
            .join(UserAccount, UserAccount.id == WebSession.user_id)
            .where(WebSession.id == _digest(token))
        ).first()
        s.exec(delete(WebSession).where(col(WebSession.id) == _digest(token)))
        if row is not None:
            _audit(s, EventKind.LOGOUT, row[1].name, {"name": row[1].name, "address": address})
        s.commit()


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def set_flash(db: Engine, session_id: str, message: str | None, **extra: Any) -> None:
    """A one-shot message for the session's next page (``extra``: e.g. a refused edit's error
    and values, shown next to its form after the redirect)."""
    with Session(db) as s:
        sess = s.get(WebSession, session_id)
        if sess is not None:
            sess.flash = json.dumps({"message": message, **extra}, default=str) if message else None
            s.add(sess)
            s.commit()


def pop_flash(db: Engine, session_id: str) -> dict[str, Any] | None:
    """The session's one-shot message (``{"message": ..., **extra}``), cleared."""
    with Session(db) as s:
        sess = s.get(WebSession, session_id)
        if sess is None or not sess.flash:
            return None
        raw, sess.flash = sess.flash, None
        s.add(sess)
        s.commit()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        data = None
    return data if isinstance(data, dict) and "message" in data else {"message": raw}
