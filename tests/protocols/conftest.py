"""Fixtures for the protocol tests."""

from __future__ import annotations

from typing import Any

import pytest
from tests.protocols.protocol_testdata import base_settings, combo_space

from planners.space import SearchSpace


@pytest.fixture
def settings() -> dict[str, Any]:
    return base_settings()


@pytest.fixture
def space() -> SearchSpace:
    return combo_space()
