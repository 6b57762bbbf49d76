"""Fixtures for the protocol tests."""

from __future__ import annotations

from typing import Any

import pytest

from planners.space import SearchSpace
from tests.protocols.protocol_testdata import base_settings, combo_space


@pytest.fixture
def settings() -> dict[str, Any]:
    return base_settings()


@pytest.fixture
def space() -> SearchSpace:
    return combo_space()
