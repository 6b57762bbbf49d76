"""Console accounts, web sessions (migration 0003), command-line tokens and login throttling (0004).

Passwords are stored as argon2id hashes (argon2-cffi); a web session is stored server-side
under the SHA-256 of its random cookie value, so a copy of the ledger cannot be replayed as a
login. Each session carries its own CSRF token.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from controller.ledger.models import utcnow


class Role(StrEnum):
    """What a console account may do: viewers look, operators decide and steer, admins also
    manage accounts."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return {"viewer": 0, "operator": 1, "admin": 2}[self.value]


class UserAccount(SQLModel, table=True):
    __tablename__ = "user_account"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    role: str = Field(default=Role.VIEWER.value, description="viewer | operator | admin")
    password_hash: str = Field(description="argon2id encoded hash")
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None


class WebSession(SQLModel, table=True):
    __tablename__ = "web_session"

    id: str = Field(primary_key=True, description="SHA-256 hex of the session cookie value")
    user_id: int = Field(foreign_key="user_account.id", index=True)
    csrf_token: str
    flash: str | None = Field(default=None, description="one-shot message for the next page")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class ApiToken(SQLModel, table=True):
    """A token for the command line on a shared ledger (``cellpilot users token NAME``); only its
    SHA-256 is stored (a token is 256 random bits, so a slow hash adds nothing)."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user_account.id", index=True)
    digest: str = Field(index=True, unique=True, description="SHA-256 hex of the token")
    label: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    last_used_at: datetime | None = None
    revoked: bool = False


class LoginThrottle(SQLModel, table=True):
    """Failed logins per user (by a digest of the name given) and per client address."""

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, description="user:<sha256 of the name> | addr:<address>")
    failures: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None
