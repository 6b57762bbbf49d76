"""A :class:`~instruments.interfaces.LiquidHandler` built from syringe pumps.

Physical model (an assumption, stated so a lab can check it against its rig):

* Each reagent has its own line from a reservoir to one valve port of a pump
  (``reagents = {"drug_a": (pump_address, input_port)}``); several reagents may share a pump
  through a distribution valve. A reagent kept at several stock concentrations needs a line
  (a reservoir) per stock: key those lines by the protocol's *source* name instead, e.g.
  ``{"drug_a@100uM": (2, 1), "drug_a@10uM": (2, 2)}``. :meth:`PumpDispenser.aspirate` looks a
  line up by ``source`` first and by ``reagent`` second; with ``stocks`` (line key → µM) it
  refuses a step whose stock concentration differs from the line's.
* Each pump's output port feeds a primed dispensing line ending in a fixed nozzle; the line's
  dead volume is filled before the run, so every µL the plunger pushes reaches the well. The
  line (and the syringe) is shared by every source on that pump, so the first µL pushed after
  a change of source are the previous source's: with ``flush_ul`` the dispenser flushes that
  volume of the new source through the line to waste before its first dispense (and once per
  pump after a start, when the line's contents are unknown).
* A plate positioner moves the plate so the addressed well sits under the nozzle (or moves a
  waste trough under it). :class:`FixedNozzlePositioner` only records the targets, for rigs
  where positioning is done by another device or by hand; a motorised stage implements the
  same two-method protocol.
* An initialisation homes the plunger, pushing the syringe's leftover out (after a crash or a
  fault it may hold liquid): the waste trough is moved under the nozzle first, and pumps given
  a ``waste_port`` push it through that port instead. Discards go to the waste port too.
* Pumps cannot see wells, so :meth:`PumpDispenser.well_volume_ul` answers None and crash
  recovery quarantines uncertain wells. A fixed nozzle cannot pipette up and down, so
  :meth:`PumpDispenser.mix` refuses unless ``mix_policy="skip"``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from instruments.exceptions import LiquidHandlingError
from instruments.pumps.pump import SyringePump, ValvePort
from instruments.pumps.transport import PumpTransport

log = logging.getLogger(__name__)


@runtime_checkable
class PlatePositioner(Protocol):
    """Brings a well (or the waste trough) under the dispensing nozzle."""

    def move_to_well(self, plate: str, well: str) -> None: ...

    def move_to_waste(self) -> None: ...


@dataclass
class FixedNozzlePositioner:
    """Records positioning requests; for rigs where the plate is positioned externally."""

    history: list[tuple[str, str]] = field(default_factory=list)

    def move_to_well(self, plate: str, well: str) -> None:
        self.history.append((plate, well))

    def move_to_waste(self) -> None:
        self.history.append(("waste", ""))

    @property
    def current(self) -> tuple[str, str] | None:
        return self.history[-1] if self.history else None


class PumpDispenser:
    """Reagent lines on syringe-pump valves, dispensing through a fixed nozzle.

    Args:
        pumps: the pumps by driver address (1-15).
        reagents: line key (a source name such as "drug_a@100uM", or a reagent name) ->
            (pump address, valve port of its reservoir line).
        output_port: the valve port of the dispensing line (same on every pump).
        positioner: brings wells under the nozzle; defaults to a recording positioner.
        mix_policy: "refuse" (raise LiquidHandlingError) or "skip" (log and do nothing).
        stocks: optional line key -> stock concentration (µM) of its reservoir; an aspirate
            whose ``stock_concentration_um`` differs is refused before anything moves.
        flush_ul: volume of a new source flushed through the dispensing line to waste before
            its first dispense (µL; 0 disables flushing). Several line volumes: the line
            carries the previous source over otherwise.
        waste_port: a valve port whose line goes to waste (the same on every pump), used for
            discards; without it they go out of the nozzle over the waste trough.
    """

    def __init__(
        self,
        pumps: Mapping[int, SyringePump],
        reagents: Mapping[str, tuple[int, ValvePort]],
        *,
        output_port: ValvePort = "output",
        positioner: PlatePositioner | None = None,
        mix_policy: Literal["refuse", "skip"] = "refuse",
        stocks: Mapping[str, float] | None = None,
        flush_ul: float = 0.0,
        waste_port: ValvePort | None = None,
    ):
        for name, (address, _port) in reagents.items():
            if address not in pumps:
                raise ValueError(f"reagent {name!r} is on pump {address}, which is not configured")
        if not (math.isfinite(flush_ul) and flush_ul >= 0):
            raise ValueError(f"flush_ul must be a volume >= 0 µL, got {flush_ul}")
        self.pumps = dict(pumps)
        self.reagents = dict(reagents)
        self.output_port = output_port
        self.positioner: PlatePositioner = positioner or FixedNozzlePositioner()
        self.mix_policy = mix_policy
        self.stocks = dict(stocks or {})
        self.flush_ul = float(flush_ul)
        self.waste_port = waste_port
        self.flushes = 0
        self._active: int | None = None
        self._held: dict[int, tuple[str, float]] = {}
        self._primed: dict[int, str] = {}  # pump -> the line whose liquid fills its output line

    def initialize(self) -> None:
        """Initialise every pump (homes plungers and valves), the waste under the nozzle.

        Homing pushes what a syringe holds out (through the pumps' waste port if they have
        one, else through the nozzle), so the waste trough is brought under the nozzle first.
        """
        self.positioner.move_to_waste()
        for pump in self.pumps.values():
            pump.initialize()
        self._held.clear()
        self._primed.clear()
        self._active = None

    def aspirate(
        self, source: str, reagent: str, stock_concentration_um: float, volume_ul: float
    ) -> None:
        """Draw ``volume_ul`` from the line of ``source`` (else of ``reagent``) into its pump."""
        line = self.line_for(source, reagent)
        stock = self.stocks.get(line)
        if stock is not None and abs(stock - stock_concentration_um) > 1e-9 * max(stock, 1.0):
            raise LiquidHandlingError(
                f"line {line!r} holds {stock:g} µM but the step asks for "
                f"{stock_concentration_um:g} µM of {reagent!r} ({source!r})"
            )
        address, port = self.reagents[line]
        held = self._held.get(address)
        if held is not None and held[0] != line and held[1] > 0:
            raise LiquidHandlingError(
                f"pump {address} still holds {held[1]:g} µL of {held[0]!r}; discard it first"
            )
        pump = self.pumps[address]
        if self.flush_ul > 0 and self._primed.get(address) != line:
            self._flush(address, line, port)
        pump.aspirate(volume_ul, port=port)
        self._held[address] = (line, pump.position_ul)
        self._active = address
        log.debug(
            "aspirated %g µL %s (%s, %g µM)", volume_ul, reagent, source, stock_concentration_um
        )

    def _flush(self, address: int, line: str, port: ValvePort) -> None:
        """Prime pump ``address``'s output line with ``line``: ``flush_ul`` of it to waste."""
        pump = self.pumps[address]
        self.positioner.move_to_waste()
        held = pump.position_ul
        if held > 0:  # the same source (another is refused before): out with it
            pump.dispense(held, port=self.output_port)
        left = self.flush_ul
        while left >= pump.ul_per_increment / 2:
            volume = min(left, pump.syringe_volume_ul)
            pump.aspirate(volume, port=port)
            pump.dispense(pump.position_ul, port=self.output_port)
            left -= volume
        self._primed[address] = line
        self.flushes += 1
        log.debug("flushed %g µL of %s through pump %d's line", self.flush_ul, line, address)

    def line_for(self, source: str, reagent: str) -> str:
        """The key of the line that serves ``source`` (or, failing that, ``reagent``)."""
        for key in (source, reagent):
            if key in self.reagents:
                return key
        raise LiquidHandlingError(f"no reagent line configured for {source!r} ({reagent!r})")

    def dispense(self, plate: str, well: str, volume_ul: float) -> None:
        """Move ``well`` under the nozzle and push ``volume_ul`` from the active syringe."""
        address = self._active
        if address is None or address not in self._held:
            raise LiquidHandlingError("nothing aspirated to dispense")
        reagent, held = self._held[address]
        pump = self.pumps[address]
        if volume_ul > held + pump.ul_per_increment / 2:
            raise LiquidHandlingError(
                f"cannot dispense {volume_ul:g} µL into {plate}:{well}: "
                f"pump {address} holds {held:g} µL of {reagent!r}"
            )
        self.positioner.move_to_well(plate, well)
        pump.dispense(volume_ul, port=self.output_port)
        self._held[address] = (reagent, pump.position_ul)

    def mix(self, plate: str, well: str, volume_ul: float, cycles: int) -> None:
        """A fixed nozzle cannot mix a well: refuse, or skip when configured to."""
        if self.mix_policy == "skip":
            log.warning("mix of %s:%s skipped: a pump dispenser cannot mix", plate, well)
            return
        raise LiquidHandlingError(f"a fixed-nozzle pump dispenser cannot mix {plate}:{well}")

    def discard_tip(self) -> None:
        """Empty every syringe that holds liquid to waste (its waste port, or the trough)."""
        for address, pump in self.pumps.items():
            volume = pump.position_ul
            if volume > 0:
                if self.waste_port is not None:
                    pump.dispense(volume, port=self.waste_port)
                else:
                    self.positioner.move_to_waste()
                    pump.dispense(volume, port=self.output_port)
            self._held.pop(address, None)
        self._active = None

    def well_volume_ul(self, plate: str, well: str) -> float | None:
        """Always None: pumps cannot measure wells, so uncertain wells are quarantined."""
        return None

    def identify(self) -> dict[str, Any]:
        """Each pump's identity, the reagent lines and the dispensing model."""
        return {
            "kind": "pump_dispenser",
            "pumps": {address: pump.identify() for address, pump in self.pumps.items()},
            "reagents": {name: list(line) for name, line in self.reagents.items()},
            "output_port": self.output_port,
            "waste_port": self.waste_port,
            "flush_ul": self.flush_ul,
            "measures_wells": False,
        }

    def close(self) -> None:
        """Close every pump's port."""
        for pump in self.pumps.values():
            pump.close()


class BusDispenser(PumpDispenser):
    """A :class:`PumpDispenser` that owns its serial bus (and, in a dry-run, its rig).

    On :meth:`close` it appends what this process did (link counters, flushes, and the
    rig's emulator and fluidics counts) as one JSON line to ``stats_path``.

    Args:
        *args, **kwargs: as for :class:`PumpDispenser`.
        bus: the transport the pumps share (closed with the dispenser).
        rig: a dry-run rig with ``stats()`` and ``close()`` (``simulators.pump_rig``).
        stats_path: the JSON-lines file of run statistics (None: not written).
    """

    def __init__(
        self,
        *args: Any,
        bus: PumpTransport,
        rig: Any = None,
        stats_path: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.bus = bus
        self.rig = rig
        self.stats_path = stats_path
        self._started = time.monotonic()
        self.pump_s = 0.0  # wall time spent in aspirate/dispense calls
        self._closed = False

    @contextmanager
    def _timed(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.pump_s += time.monotonic() - started

    def aspirate(
        self, source: str, reagent: str, stock_concentration_um: float, volume_ul: float
    ) -> None:
        with self._timed():
            super().aspirate(source, reagent, stock_concentration_um, volume_ul)

    def dispense(self, plate: str, well: str, volume_ul: float) -> None:
        with self._timed():
            super().dispense(plate, well, volume_ul)

    def link_stats(self) -> dict[str, Any]:
        """Blocks, retries, timeouts and bad frames summed over the pumps' sessions."""
        keys = ("blocks", "retries", "timeouts", "bad_frames", "polls", "settled", "resent")
        return {k: sum(getattr(p.session.stats, k) for p in self.pumps.values()) for k in keys}

    def run_stats(self) -> dict[str, Any]:
        """What this process did: link statistics, flushes, emulator counters, fluidics."""
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "wall_s": time.monotonic() - self._started,
            "pump_s": self.pump_s,
            "link": self.link_stats(),
            "dispenser": {"flushes": self.flushes, "flush_ul": self.flush_ul},
        }
        if self.rig is not None:
            out.update(self.rig.stats())
        return out

    def close(self) -> None:
        """Record the run's statistics, close the bus, stop the built-in emulator."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.stats_path is not None:
                self.stats_path.parent.mkdir(parents=True, exist_ok=True)
                with self.stats_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(self.run_stats(), default=str) + "\n")
        finally:
            super().close()
            self.bus.close()
            if self.rig is not None:
                self.rig.close()
