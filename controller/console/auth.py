"""Console accounts, sessions and CSRF tokens, kept in the ledger (``controller.ledger.accounts``).

- passwords: argon2id through argon2-cffi (hashes are re-computed when its parameters change);
- sessions: a random 256-bit cookie value, stored server-side as its SHA-256, expiring after
  :data:`SESSION_TTL`; the cookie is HttpOnly and SameSite=Lax;
- CSRF: one random token per session, required in every state-changing form (``csrf_token``)
  or header (``X-CSRF-Token``) and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine
from sqlmodel import Session, col, delete, select

from controller.ledger.accounts import Role, UserAccount, WebSession
from controller.ledger.models import utcnow

SESSION_TTL = timedelta(hours=12)
_hasher = PasswordHasher()
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not a password")


class AccountError(Exception):
    """An account cannot be created or changed (duplicate name, unknown role, empty password)."""


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


def add_user(db: Engine, name: str, password: str, role: str = "viewer") -> UserAccount:
    """Create an account; raise :class:`AccountError` when the name is taken."""
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise AccountError("a user name is 1-64 printable characters")
    if len(password) < 8:
        raise AccountError("a password needs at least 8 characters")
    r = parse_role(role)
    with Session(db) as s:
        if s.exec(select(UserAccount).where(UserAccount.name == name)).first():
            raise AccountError(f"user {name!r} exists")
        user = UserAccount(name=name, role=r.value, password_hash=_hasher.hash(password))
        s.add(user)
        s.commit()
        s.refresh(user)
        return user


def set_password(db: Engine, name: str, password: str) -> None:
    if len(password) < 8:
        raise AccountError("a password needs at least 8 characters")
    with Session(db) as s:
        user = _user(s, name)
        user.password_hash = _hasher.hash(password)
        s.add(user)
        s.exec(delete(WebSession).where(col(WebSession.user_id) == user.id))
        s.commit()


def set_role(db: Engine, name: str, role: str) -> None:
    with Session(db) as s:
        user = _user(s, name)
        user.role = parse_role(role).value
        s.add(user)
        s.commit()


def remove_user(db: Engine, name: str) -> None:
    """Delete an account and end its sessions (its name stays in the audit trail)."""
    with Session(db) as s:
        user = _user(s, name)
        s.exec(delete(WebSession).where(col(WebSession.user_id) == user.id))
        s.delete(user)
        s.commit()


def _user(s: Session, name: str) -> UserAccount:
    user = s.exec(select(UserAccount).where(UserAccount.name == name)).first()
    if user is None:
        raise AccountError(f"no user {name!r}")
    return user


def list_users(db: Engine) -> list[dict]:
    with Session(db) as s:
        return [{"name": u.name, "role": u.role, "disabled": u.disabled, "created_at": u.created_at,
                 "last_login_at": u.last_login_at}
                for u in s.exec(select(UserAccount).order_by(col(UserAccount.name)))]


def authenticate(db: Engine, name: str, password: str) -> UserAccount | None:
    """The account when ``password`` is right (and the account enabled), else None."""
    with Session(db) as s:
        user = s.exec(select(UserAccount).where(UserAccount.name == name.strip())).first()
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        user.last_login_at = utcnow()
        s.add(user)
        s.commit()
        s.refresh(user)
        return user


def create_session(db: Engine, user_id: int) -> str:
    """Start a session; return the cookie value (only its digest is stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    with Session(db) as s:
        s.exec(delete(WebSession).where(col(WebSession.expires_at) < now))
        s.add(WebSession(id=_digest(token), user_id=user_id, csrf_token=secrets.token_urlsafe(32),
                         created_at=now, expires_at=now + SESSION_TTL))
        s.commit()
    return token


def load_session(db: Engine, token: str | None) -> CurrentUser | None:
    """The user of a session cookie, or None when it is missing, unknown or expired."""
    if not token:
        return None
    with Session(db) as s:
        row = s.exec(select(WebSession, UserAccount).join(UserAccount, UserAccount.id == WebSession.user_id)
                     .where(WebSession.id == _digest(token))).first()
        if row is None:
            return None
        sess, user = row
        if _as_utc(sess.expires_at) < utcnow() or user.disabled:
            return None
        return CurrentUser(name=user.name, role=Role(user.role), csrf_token=sess.csrf_token, session_id=sess.id)


def end_session(db: Engine, token: str | None) -> None:
    if token:
        with Session(db) as s:
            s.exec(delete(WebSession).where(col(WebSession.id) == _digest(token)))
            s.commit()


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def set_flash(db: Engine, session_id: str, message: str | None) -> None:
    with Session(db) as s:
        sess = s.get(WebSession, session_id)
        if sess is not None:
            sess.flash = message
            s.add(sess)
            s.commit()


def pop_flash(db: Engine, session_id: str) -> str | None:
    with Session(db) as s:
        sess = s.get(WebSession, session_id)
        if sess is None or not sess.flash:
            return None
        msg, sess.flash = sess.flash, None
        s.add(sess)
        s.commit()
        return msg
