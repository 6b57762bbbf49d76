"""Protocols by the name campaign files use: entry points of the group ``cellpilot.protocols``.

The built-in ``dose_response`` is an entry point of cellpilot itself; a lab's package adds its
own by declaring one. :func:`register_protocol` registers a class in code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from plugins import PluginRegistry
from protocols.base import PlateProtocol
from protocols.exceptions import DuplicateProtocolName, InvalidSettings, UnknownProtocol

GROUP = "cellpilot.protocols"
P = TypeVar("P", bound=type)

PROTOCOLS: PluginRegistry[type[Any]] = PluginRegistry(
    GROUP,
    duplicate=lambda msg: DuplicateProtocolName(f"a protocol named {msg}"),
    unknown=UnknownProtocol,
)


def register_protocol(name: str) -> Callable[[P], P]:
    """Class decorator: make a protocol available to campaign files under ``name``.

    The class needs a ``settings_model`` (a pydantic model) and ``__init__(self, settings)``.
    A duplicate name raises :class:`DuplicateProtocolName`.
    """

    def deco(cls: P) -> P:
        PROTOCOLS.register(name, cls)
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return deco


def protocol_class(name: str) -> type[Any]:
    """The registered class for ``name`` (e.g. to export ``settings_model.model_json_schema()``)."""
    return PROTOCOLS.get(name)


def registered_protocols() -> list[str]:
    """Names of every registered protocol, sorted."""
    return PROTOCOLS.names()


def get_protocol(name: str, settings: Mapping[str, Any] | BaseModel | None = None) -> PlateProtocol:
    """Build the protocol ``name`` from its settings (a dict from the campaign YAML, or a model).

    Raises:
        UnknownProtocol: nothing is registered under ``name``.
        InvalidSettings: the settings fail validation; the error names each offending field.
        ProtocolError: a subclass, when settings are valid but unrealisable (e.g. the positive
            control cannot be pipetted from its stocks).
    """
    cls = protocol_class(name)
    model: type[BaseModel] = cls.settings_model
    data: Any = settings.model_dump() if isinstance(settings, BaseModel) else dict(settings or {})
    try:
        validated = model.model_validate(data)
    except ValidationError as e:
        raise InvalidSettings(name, [dict(err) for err in e.errors(include_url=False)]) from None
    proto = cls(validated)
    return proto  # type: ignore[no-any-return]
