"""Every test process (and every CLI subprocess it starts) seals ledgers with a key in a temporary
folder, never with the key in the user's home."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def ledger_key(tmp_path_factory):
    """``CELLPILOT_LEDGER_KEY`` for the session (subprocesses inherit it)."""
    old = os.environ.get("CELLPILOT_LEDGER_KEY")
    path = tmp_path_factory.mktemp("ledger-key") / "ledger.key"
    os.environ["CELLPILOT_LEDGER_KEY"] = str(path)
    yield path
    if old is None:
        os.environ.pop("CELLPILOT_LEDGER_KEY", None)
    else:
        os.environ["CELLPILOT_LEDGER_KEY"] = old
