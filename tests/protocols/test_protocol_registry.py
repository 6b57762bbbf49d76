"""The registry of protocols (protocols/base.py)."""

from __future__ import annotations

import pytest

from protocols import registered_protocols
from protocols.base import PlateProtocol, get_protocol, protocol_class, register_protocol
from protocols.dose_response import DoseResponse, DoseResponseSettings
from protocols.exceptions import DuplicateProtocolName, ProtocolError, UnknownProtocol
from tests.protocols.protocol_testdata import base_settings


def test_dose_response_is_registered() -> None:
    assert "dose_response" in registered_protocols()
    assert protocol_class("dose_response") is DoseResponse
    assert DoseResponse.name == "dose_response"


def test_get_protocol_from_dict_and_model() -> None:
    p = get_protocol("dose_response", base_settings())
    assert isinstance(p, PlateProtocol)
    model = DoseResponseSettings.model_validate(base_settings())
    assert get_protocol("dose_response", model).settings == model == p.settings


def test_duplicate_name_raises() -> None:
    with pytest.raises(DuplicateProtocolName, match="'dose_response' is already registered"):

        @register_protocol("dose_response")
        class Again(DoseResponse):
            pass


def test_unknown_protocol() -> None:
    with pytest.raises(UnknownProtocol, match="no protocol named 'pcr'") as e:
        get_protocol("pcr", {})
    assert "dose_response" in e.value.known
    assert isinstance(e.value, ProtocolError)


def test_settings_schema_is_reachable_by_name() -> None:
    schema = protocol_class("dose_response").settings_model.model_json_schema()
    assert schema["title"] == "DoseResponseSettings"
    assert {"doses", "stocks"} <= set(schema["required"])
