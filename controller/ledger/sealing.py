"""The ledger key: a secret kept outside the database that seals every event with a keyed MAC.

Someone who can write the database but cannot read this file cannot rewrite an event and
recompute the chain after it: the MAC (HMAC-SHA256 over the event's position and hash) would
not match. The key lives in one file per machine (or per deployment):

- ``$CELLPILOT_LEDGER_KEY`` when set (a path), else
- ``$XDG_CONFIG_HOME/cellpilot/ledger.key`` (``~/.config/cellpilot/ledger.key``).

It is created on first use (32 random bytes, hex, mode 0600 in a 0700 folder). Every machine
that writes one shared ledger needs the same key (copy the file, keep it 0600); ``verify``
names the key of each event by its id (the first 16 hex digits of the key's SHA-256), so an
event sealed with a key you do not hold is reported as such, never as valid.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

KEY_ENV = "CELLPILOT_LEDGER_KEY"
EXTRA_KEYS_ENV = "CELLPILOT_LEDGER_KEYS"  # more key files verify may use (os.pathsep-separated)

_lock = threading.Lock()
_cache: dict[Path, LedgerKey] = {}


class LedgerKeyError(Exception):
    """The key file cannot be read or created (permissions, a malformed file)."""


@dataclass(frozen=True)
class LedgerKey:
    """A MAC key and its public id."""

    secret: bytes
    path: Path

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()[:16]

    def seal(self, seq: int, event_hash: str) -> str:
        """The MAC of the event at position ``seq`` (1-based) of its chain with ``event_hash``."""
        msg = f"cellpilot-event|{seq}|{event_hash}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def check(self, seq: int, event_hash: str, mac: str) -> bool:
        return hmac.compare_digest(self.seal(seq, event_hash), mac)


def key_path() -> Path:
    """Where this process keeps (or would create) the ledger key."""
    given = os.environ.get(KEY_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cellpilot" / "ledger.key"


def _read(path: Path) -> LedgerKey:
    try:
        text = path.read_text().strip()
        secret = bytes.fromhex(text)
    except OSError as e:
        raise LedgerKeyError(f"cannot read the ledger key {path}: {e}") from None
    except ValueError:
        raise LedgerKeyError(f"the ledger key {path} is not a hex string") from None
    if len(secret) < 16:
        raise LedgerKeyError(f"the ledger key {path} is too short ({len(secret)} bytes)")
    return LedgerKey(secret, path)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first: use theirs
    except OSError as e:
        raise LedgerKeyError(
            f"cannot create the ledger key {path}: {e} (set {KEY_ENV} to a writable path)"
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")


def load_key(create: bool = True) -> LedgerKey | None:
    """This machine's ledger key, created on first use (``create``); None if absent and not created."""
    path = key_path()
    with _lock:
        if path in _cache:
            return _cache[path]
        if not path.exists():
            if not create:
                return None
            _create(path)
        key = _read(path)
        _cache[path] = key
        return key


def ledger_key() -> LedgerKey:
    """This machine's ledger key, created on first use."""
    key = load_key(create=True)
    if key is None:  # pragma: no cover - load_key(create=True) creates or raises
        raise LedgerKeyError(f"no ledger key at {key_path()}")
    return key


def verification_keys(extra: list[Path] | None = None) -> dict[str, LedgerKey]:
    """Every key ``verify`` can check with: this machine's, ``$CELLPILOT_LEDGER_KEYS`` and ``extra``."""
    keys: dict[str, LedgerKey] = {}
    own = load_key(create=False)
    if own is not None:
        keys[own.key_id] = own
    paths = [Path(p) for p in os.environ.get(EXTRA_KEYS_ENV, "").split(os.pathsep) if p]
    for p in [*paths, *(extra or [])]:
        k = _read(Path(p).expanduser())
        keys[k.key_id] = k
    return keys
