"""A cellpilot :class:`~instruments.interfaces.LiquidHandler` on any PyLabRobot liquid handler.

:class:`PLRLiquidHandler` speaks the lab's language (sources such as ``"drug_a@100uM"``, plate
barcodes, wells such as ``"B03"``, µL) and drives ``pylabrobot.liquid_handling.LiquidHandler``
(the frontend) over whichever backend the settings name: Hamilton STAR/STARlet or Vantage,
Tecan EVO, Opentrons OT-2, PyLabRobot's chatterbox, or
:class:`simulators.plr_backend.SimulatedLabBackend` in a dry-run. Resources are mapped by
:class:`~instruments.pylabrobot_deck.DeckLayout`; tracked volumes survive a crash through
:class:`~instruments.pylabrobot_state.VolumeJournal`;
:func:`instruments.pylabrobot_settings.handler_from_settings` builds one from campaign settings.

PyLabRobot is asyncio: its coroutines run on a dedicated event-loop thread and this class is
synchronous. PyLabRobot's errors (``TooLittleLiquidError``, ``TooLittleVolumeError``,
``NoTipError``, a firmware error, a USB failure, a command without answer within
``timeout_s``, ...) are raised as :class:`~instruments.exceptions.LiquidHandlingError` with
their message; exceptions of cellpilot's own packages (a clock's ``Interrupted``) pass through.

Volume tracking (``set_volume_tracking``) is a process-wide switch in PyLabRobot; with
``volume_tracking=True`` this class turns it on. ``well_volume_ul`` then reports PyLabRobot's
belief of a well's volume (seeded volume plus what was dispensed), and None for a well whose
last operation was interrupted (so crash recovery quarantines it rather than dispense twice).
It is a belief, not a measurement: a plate changed by hand is not seen.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pylabrobot.liquid_handling import LiquidHandler as PLRFrontend
from pylabrobot.liquid_handling.backends import LiquidHandlerBackend
from pylabrobot.resources import Deck, Well
from pylabrobot.resources.errors import (
    ResourceNotFoundError,
    TooLittleLiquidError,
    TooLittleVolumeError,
)
from pylabrobot.resources.volume_tracker import set_volume_tracking

from instruments.exceptions import InstrumentError, LiquidHandlingError
from instruments.pylabrobot_deck import DeckLayout, make_deck
from instruments.pylabrobot_state import VolumeJournal

log = logging.getLogger(__name__)

TIP_POLICIES = ("per_aspirate", "per_source")
_EPS_UL = 1e-6


class _LoopThread:
    """An asyncio event loop on a daemon thread; :meth:`run` waits for one coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="pylabrobot-loop", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float | None) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class PLRLiquidHandler:
    """One channel of a PyLabRobot liquid handler moving stocks into plate wells.

    Args:
        backend: a PyLabRobot backend (see :func:`instruments.pylabrobot_settings.make_backend`).
        deck: the deck; a fresh ``STARLetDeck`` when None. With ``deck_file`` it is loaded.
        deck_file: a PyLabRobot deck JSON (``deck.save(...)``) holding tip racks, reservoirs
            and plate sites; without it resources are auto-placed (simulation only).
        hardware: the backend drives a real robot; then a ``deck_file`` is required.
        plate_type: PyLabRobot plate factory for plates (``cor_96_wellplate_360uL_Fb``).
        tip_rack_type: tip-rack factory for the auto layout.
        tip_racks: racks in the auto layout.
        tip_rack_names: racks of a deck file to use (all when None).
        plate_sites: auto layout: how many plate positions; deck file: holder names.
        reservoirs: source name -> deck resource (``"trough_1"`` or ``"res_plate:A1"``).
        reservoir_volume_ul: volume (µL) a reservoir holds when it first appears.
        reservoir_max_volume_ul: capacity (µL) of an auto-layout trough.
        seeded_volume_ul: volume (µL) already in each well of a new plate (cells + medium).
        volume_tracking: turn on PyLabRobot's volume tracking (process-wide) and answer
            ``well_volume_ul``; False answers None.
        state_path: JSON-lines file where tracked volumes and the tip cursor persist.
        tip_policy: ``per_aspirate`` (a fresh tip for every aspirate) or ``per_source``
            (keep the tip while the source does not change).
        refill_tips: when the racks are empty, refill them (simulation) instead of raising.
        channel: the channel to pipette with.
        timeout_s: longest wait for one PyLabRobot command (s).
    """

    def __init__(
        self,
        backend: LiquidHandlerBackend,
        deck: Deck | None = None,
        *,
        deck_file: str | Path | None = None,
        hardware: bool = False,
        plate_type: str = "cor_96_wellplate_360uL_Fb",
        tip_rack_type: str = "hamilton_96_tiprack_300uL_filter",
        tip_racks: int = 4,
        tip_rack_names: list[str] | None = None,
        plate_sites: int | list[str] = 2,
        reservoirs: dict[str, str] | None = None,
        reservoir_volume_ul: float = 50_000.0,
        reservoir_max_volume_ul: float = 50_000.0,
        seeded_volume_ul: float = 0.0,
        volume_tracking: bool = True,
        state_path: str | Path | None = None,
        tip_policy: str = "per_aspirate",
        refill_tips: bool | None = None,
        channel: int = 0,
        timeout_s: float = 600.0,
    ) -> None:
        if tip_policy not in TIP_POLICIES:
            raise LiquidHandlingError(
                f"tip_policy must be one of {TIP_POLICIES}, not {tip_policy!r}"
            )
        if hardware and deck_file is None:
            raise LiquidHandlingError(
                "a hardware backend needs settings.deck_file (a PyLabRobot deck JSON); the auto "
                "layout's coordinates are invented"
            )
        if deck_file is not None:
            deck = Deck.load_from_json_file(str(deck_file))
        self.backend = backend
        self.deck = deck if deck is not None else make_deck("STARLetDeck")
        self.volume_tracking = volume_tracking
        if volume_tracking:
            set_volume_tracking(True)
        self.seeded_volume_ul = float(seeded_volume_ul)
        self.reservoir_volume_ul = float(reservoir_volume_ul)
        self.journal = VolumeJournal(state_path)
        self.layout = DeckLayout(
            self.deck,
            auto=deck_file is None,
            plate_type=plate_type,
            tip_rack_type=tip_rack_type,
            tip_racks=tip_racks,
            tip_rack_names=tip_rack_names,
            plate_sites=plate_sites,
            reservoirs=reservoirs,
            reservoir_max_volume_ul=reservoir_max_volume_ul,
            initial_volume=self._initial_volume,
        )
        self.tip_policy = tip_policy
        self.refill_tips = (not hardware) if refill_tips is None else refill_tips
        self.channel = channel
        self.timeout_s = timeout_s
        self._last_source: str | None = None
        self._n_spots = len(self.layout.tip_spots)
        if self.journal.tips_used >= self._n_spots:
            log.warning("tip racks were empty when the run stopped; assuming they were replaced")
            self.journal.set_tips_used(0)
        self.lh = PLRFrontend(backend=backend, deck=self.deck)
        self._loop = _LoopThread()
        try:
            self._run(self.lh.setup(), "setup")
        except BaseException:
            self._loop.close()
            raise

    # ----------------------------------------------------------------------------- helpers

    def _initial_volume(self, name: str, kind: str) -> float:
        known = self.journal.volume_ul(name)
        if known is not None:
            return known
        return self.seeded_volume_ul if kind == "well" else self.reservoir_volume_ul

    def _run(self, coro: Coroutine[Any, Any, Any], what: str) -> Any:
        """Run one PyLabRobot coroutine; its errors become :class:`LiquidHandlingError`."""
        try:
            return self._loop.run(coro, self.timeout_s)
        except InstrumentError:
            raise
        except (TooLittleLiquidError, TooLittleVolumeError) as exc:
            raise LiquidHandlingError(f"{what}: {exc}") from exc
        except TimeoutError as exc:
            raise LiquidHandlingError(f"{what}: no answer within {self.timeout_s:g} s") from exc
        except Exception as exc:
            if _device_error(exc):
                raise LiquidHandlingError(f"{what}: {type(exc).__name__}: {exc}") from exc
            raise

    def _moving(
        self, names: list[str], coro: Coroutine[Any, Any, Any], what: str, containers: list[Any]
    ) -> None:
        """Run an operation that moves liquid, journaling intent before and volumes after."""
        self.journal.intend(names)
        try:
            self._run(coro, what)
        except LiquidHandlingError as exc:
            if isinstance(exc.__cause__, (TooLittleLiquidError, TooLittleVolumeError)):
                # refused by PyLabRobot's checks before the backend moved anything; they can
                # leave the other side of the transfer pending (source debited, tip refused)
                trackers = [c.tracker for c in containers]
                if self.has_tip:
                    trackers.append(self._tracker.get_tip().tracker)
                for tracker in trackers:
                    if not tracker.is_disabled:
                        tracker.rollback()
                self.journal.record(self._volumes(containers))
            raise
        self.journal.record(self._volumes(containers))

    @staticmethod
    def _volumes(containers: list[Any]) -> dict[str, float]:
        return {c.name: float(c.tracker.get_used_volume()) for c in containers}

    def _check_volume(self, volume_ul: float, what: str) -> None:
        if not volume_ul == volume_ul or volume_ul <= 0:
            raise LiquidHandlingError(f"{what}: volume must be positive (got {volume_ul} µL)")

    @property
    def _tracker(self) -> Any:
        return self.lh.head[self.channel]

    @property
    def has_tip(self) -> bool:
        """Whether the channel has a tip mounted."""
        return bool(self._tracker.has_tip)

    def tip_volume_ul(self) -> float:
        """Liquid in the mounted tip (µL; 0 without a tip)."""
        return float(self._tracker.get_tip().tracker.get_used_volume()) if self.has_tip else 0.0

    def _pick_up_tip(self) -> None:
        if self.journal.tips_used >= self._n_spots:
            if not self.refill_tips:
                raise LiquidHandlingError(
                    f"out of tips: all {self._n_spots} tips are used; replace the tip racks and "
                    "resume"
                )
            self.layout.refill_tips()
            self.journal.set_tips_used(0)
        spot = self.layout.tip_spots[self.journal.tips_used]
        self.journal.set_tips_used(self.journal.tips_used + 1)  # a failed pickup skips the spot
        self._run(self.lh.pick_up_tips([spot], use_channels=[self.channel]), "pick up tip")

    def _ensure_tip(self, source: str | None) -> None:
        if self.has_tip:
            empty = self.tip_volume_ul() <= _EPS_UL
            fresh = self.tip_policy == "per_aspirate" or source != self._last_source
            if source is None or not empty or not fresh:
                return
            self.discard_tip()
        self._pick_up_tip()

    # -------------------------------------------------------------------------- operations

    def aspirate(
        self, source: str, reagent: str, stock_concentration_um: float, volume_ul: float
    ) -> None:
        """Draw ``volume_ul`` from reservoir ``source`` into the tip (a fresh one per policy).

        Raises:
            LiquidHandlingError: bad volume, too little in the reservoir, no room in the tip,
                out of tips, or a device fault.
        """
        what = f"aspirate {volume_ul:g} µL from {source!r}"
        self._check_volume(volume_ul, what)
        if stock_concentration_um < 0:
            raise LiquidHandlingError(
                f"{what}: negative stock concentration {stock_concentration_um}"
            )
        container = self.layout.reservoir(source)
        describe = getattr(self.backend, "describe_reservoir", None)
        if describe is not None:  # e.g. the simulated lab learns what the trough holds
            describe(container.name, reagent, float(stock_concentration_um), source)
        self._ensure_tip(source)
        self._last_source = source
        coro = self.lh.aspirate([container], [float(volume_ul)], use_channels=[self.channel])
        self._moving([container.name], coro, what, [container])

    def dispense(self, plate: str, well: str, volume_ul: float) -> None:
        """Dispense ``volume_ul`` of what the tip holds into ``well`` of ``plate``.

        Raises:
            LiquidHandlingError: unknown well, no tip, more than the tip holds, overflow, or a
                device fault.
        """
        what = f"dispense {volume_ul:g} µL into {plate}:{well}"
        self._check_volume(volume_ul, what)
        target = self.layout.well(plate, well)
        if not self.has_tip:
            raise LiquidHandlingError(f"{what}: no tip mounted (aspirate first)")
        coro = self.lh.dispense([target], [float(volume_ul)], use_channels=[self.channel])
        self._moving([target.name], coro, what, [target])

    def mix(self, plate: str, well: str, volume_ul: float, cycles: int) -> None:
        """Pipette ``volume_ul`` up and down ``cycles`` times in ``well`` (with the current tip).

        Raises:
            LiquidHandlingError: unknown well, bad cycles, too little in the well, or a fault.
        """
        what = f"mix {volume_ul:g} µL in {plate}:{well}"
        self._check_volume(volume_ul, what)
        if cycles < 1:
            raise LiquidHandlingError(f"{what}: cycles must be >= 1 (got {cycles})")
        target = self.layout.well(plate, well)
        self._ensure_tip(None)
        for _ in range(cycles):
            coro = self.lh.aspirate([target], [float(volume_ul)], use_channels=[self.channel])
            self._moving([target.name], coro, what, [target])
            coro = self.lh.dispense([target], [float(volume_ul)], use_channels=[self.channel])
            self._moving([target.name], coro, what, [target])

    def discard_tip(self) -> None:
        """Drop the mounted tip and whatever it holds in the trash (nothing mounted: no-op).

        A deck without a trash area (e.g. ``EVO150Deck``) gets the tip back in its rack spot,
        which is never picked from again until the racks are refilled.
        """
        if not self.has_tip:
            return
        try:
            self.deck.get_trash_area()
        except ResourceNotFoundError:
            coro = self.lh.return_tips(use_channels=[self.channel], allow_nonzero_volume=True)
        else:
            coro = self.lh.discard_tips(use_channels=[self.channel], allow_nonzero_volume=True)
        self._run(coro, "discard tip")

    def well_volume_ul(self, plate: str, well: str) -> float | None:
        """PyLabRobot's tracked volume of a well (µL); None without volume tracking or for a
        well whose last operation was interrupted.

        Raises:
            LiquidHandlingError: unknown well.
        """
        target: Well = self.layout.well(plate, well)
        if not self.volume_tracking or target.tracker.is_disabled:
            return None
        if self.journal.is_uncertain(target.name):
            return None
        return float(target.tracker.get_used_volume())

    def identify(self) -> dict[str, Any]:
        """Backend, deck, firmware (when the backend can report it) and state."""
        info: dict[str, Any] = {
            "model": f"PyLabRobot {type(self.backend).__name__}",
            "backend": type(self.backend).__name__,
            "deck": type(self.deck).__name__ if type(self.deck) is not Deck else self.deck.name,
            "deck_name": self.deck.name,
            "pylabrobot": _plr_version(),
            "ready": bool(self.lh.setup_finished),
            "simulated": bool(getattr(self.backend, "simulated", False)),
            "channels": self.backend.num_channels,
            "channel": self.channel,
            "volume_tracking": self.volume_tracking,
            "tip_policy": self.tip_policy,
            "tips_used": self.journal.tips_used,
            "tips_total": self._n_spots,
            "tip_mounted": self.has_tip,
        }
        request = getattr(self.backend, "request_firmware_version", None)
        if request is not None and self.lh.setup_finished:
            try:
                info["firmware"] = str(self._run(request(), "request firmware version"))
            except Exception as exc:  # identification must not fail on an optional query
                info["firmware_error"] = str(exc)
        elif hasattr(self.backend, "firmware_version"):
            info["firmware"] = str(self.backend.firmware_version)
        return info

    def close(self) -> None:
        """Stop the backend and the event-loop thread (idempotent)."""
        if self._loop.thread.is_alive():
            try:
                if self.lh.setup_finished:
                    self._run(self.lh.stop(), "stop")
            finally:
                self._loop.close()

    def __enter__(self) -> PLRLiquidHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: top-level packages whose exceptions are cellpilot's own control flow (a clock's
#: ``Interrupted`` raised inside a simulated backend's wait) and pass through unchanged
_OWN_PACKAGES = ("controller", "simulators", "protocols", "planners", "analyzers", "tests")


def _device_error(exc: BaseException) -> bool:
    """Whether an exception is a device or library fault (PyLabRobot's errors, a firmware
    error, a USB or serial failure) rather than cellpilot's own control flow."""
    return type(exc).__module__.split(".")[0] not in _OWN_PACKAGES


def _plr_version() -> str:
    try:
        from pylabrobot import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"
