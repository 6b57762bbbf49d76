"""Building a :class:`~instruments.pylabrobot_handler.PLRLiquidHandler` from settings.

Backends are named in campaign files (:data:`BACKENDS`: ``chatterbox``, ``star``,
``starlet``, ``vantage``, ``evo``, ``opentrons``) or given as ``"package.module:Class"``; each
has a natural deck and is marked as driving hardware (which requires a saved deck file).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pylabrobot.liquid_handling.backends import LiquidHandlerBackend

from instruments.exceptions import LiquidHandlingError
from instruments.pylabrobot_deck import make_deck
from instruments.pylabrobot_handler import PLRLiquidHandler

_BACKENDS_MODULE = "pylabrobot.liquid_handling.backends"
#: backend name in settings -> (module, class, default deck factory, talks to hardware)
BACKENDS: dict[str, tuple[str, str, str, bool]] = {
    "chatterbox": (_BACKENDS_MODULE, "LiquidHandlerChatterboxBackend", "STARLetDeck", False),
    "star": (_BACKENDS_MODULE, "STARBackend", "STARDeck", True),
    "starlet": (_BACKENDS_MODULE, "STARBackend", "STARLetDeck", True),
    "vantage": (_BACKENDS_MODULE, "VantageBackend", "VantageDeck", True),
    "evo": (_BACKENDS_MODULE, "EVOBackend", "EVO150Deck", True),
    "opentrons": (_BACKENDS_MODULE, "OpentronsOT2Backend", "OTDeck", True),
}


def make_backend(name: str, options: dict[str, Any] | None = None) -> LiquidHandlerBackend:
    """A PyLabRobot backend by settings name (see :data:`BACKENDS`) or ``"module:Class"``.

    Raises:
        LiquidHandlingError: an unknown name, or the backend rejects its options.
    """
    if name in BACKENDS:
        module, cls_name = BACKENDS[name][:2]
    elif ":" in name:
        module, cls_name = name.split(":", 1)
    else:
        raise LiquidHandlingError(
            f"unknown PyLabRobot backend {name!r}; known: {sorted(BACKENDS)} or 'module:Class'"
        )
    try:
        cls = getattr(importlib.import_module(module), cls_name)
        return cls(**(options or {}))
    except (ImportError, AttributeError, TypeError, RuntimeError) as exc:
        raise LiquidHandlingError(f"cannot create PyLabRobot backend {name!r}: {exc}") from exc


#: settings keys passed straight to :class:`PLRLiquidHandler`
HANDLER_SETTINGS = (
    "deck_file",
    "plate_type",
    "tip_rack_type",
    "tip_racks",
    "tip_rack_names",
    "plate_sites",
    "reservoirs",
    "reservoir_volume_ul",
    "reservoir_max_volume_ul",
    "seeded_volume_ul",
    "volume_tracking",
    "tip_policy",
    "refill_tips",
    "channel",
    "timeout_s",
)


def handler_from_settings(
    settings: dict[str, Any],
    *,
    backend: LiquidHandlerBackend | None = None,
    state_path: str | Path | None = None,
    defaults: dict[str, Any] | None = None,
) -> PLRLiquidHandler:
    """Build a :class:`PLRLiquidHandler` from campaign-file settings.

    Settings: ``backend`` (a :data:`BACKENDS` name or ``"module:Class"``; default
    ``chatterbox``), ``backend_options`` (keyword arguments of the backend class, e.g.
    ``{host: 10.0.0.5}`` for an OT-2), ``deck`` (deck factory name; the backend's natural deck
    by default) and the keyword arguments in :data:`HANDLER_SETTINGS`.

    Args:
        settings: the ``instruments.liquid_handler.settings`` mapping.
        backend: use this backend instead of the one named (a dry-run's simulated lab); the
            deck and layout settings still apply, and the auto layout is allowed.
        state_path: where tracked volumes persist.
        defaults: values for handler keys the settings leave out.

    Raises:
        LiquidHandlingError: an unknown key, backend or deck, or bad options.
    """
    settings = dict(settings)
    name = str(settings.pop("backend", "chatterbox"))
    options = dict(settings.pop("backend_options", None) or {})
    deck_name = settings.pop("deck", None)
    unknown = sorted(set(settings) - set(HANDLER_SETTINGS))
    if unknown:
        raise LiquidHandlingError(
            f"unknown pylabrobot setting(s) {unknown}; known: backend, backend_options, deck, "
            f"{', '.join(HANDLER_SETTINGS)}"
        )
    if name not in BACKENDS and ":" not in name:
        raise LiquidHandlingError(
            f"unknown PyLabRobot backend {name!r}; known: {sorted(BACKENDS)} or 'module:Class'"
        )
    hardware = backend is None and BACKENDS.get(name, ("", "", "", True))[3]
    if deck_name is None:
        deck_name = BACKENDS.get(name, ("", "", "STARLetDeck"))[2]
    kwargs = {**(defaults or {}), **settings}
    if backend is None:
        backend = make_backend(name, options)
    deck = None if kwargs.get("deck_file") else make_deck(str(deck_name))
    return PLRLiquidHandler(backend, deck, hardware=hardware, state_path=state_path, **kwargs)
