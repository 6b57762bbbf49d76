"""Credentials never leave the process that needs them: ledger URLs are masked wherever they are
shown or stored (events, the stored campaign file, logs, ``status``, the report, the console,
``serve``'s banner, error messages).

:func:`mask_url` masks one URL with SQLAlchemy's own renderer; :func:`mask_secrets` walks a
JSON-like value and masks the password of every ``scheme://user:password@host`` URL inside
any string (so an old payload holding a URL in free text is cleaned too).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MASK = "***"

# scheme://user:password@ — as SQLAlchemy parses URLs, the password runs to the first '@'
# (a literal '@' in a password is written %40).
_CREDENTIALS = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<pw>[^@\s]*)@")


def mask_url(url: str | None) -> str | None:
    """``url`` with its password replaced by ``***`` (user, host, port and database kept)."""
    if url is None:
        return None
    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return mask_text(url)
    if u.password is None:
        return url
    return u.render_as_string(hide_password=True)


def mask_text(text: str) -> str:
    """Every ``scheme://user:password@`` inside ``text`` with the password masked."""
    if "://" not in text or "@" not in text:
        return text
    return _CREDENTIALS.sub(lambda m: m["head"] + MASK + "@", text)


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON-like ``value`` with every credential inside its strings masked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    return value


def has_secret(value: Any) -> bool:
    """True when :func:`mask_secrets` would change ``value``."""
    return mask_secrets(value) != value
