"""Fluidics between emulated syringe pumps and the simulated plate.

The real pump driver (:class:`~instruments.pumps.SyringePump` → bytes on a pty →
:class:`~simulators.pump_emulator.PumpEmulator`) runs unchanged in a dry-run; this module is
the physics underneath it:

* :class:`SimulatedPositioner` implements the dispenser's
  :class:`~instruments.dispenser.PlatePositioner`: it remembers which well (or the waste
  trough) sits under the fixed nozzle, and refuses wells the plate does not have.
* :class:`FluidicsBridge` listens to the emulator's executed plunger moves
  (:meth:`PumpEmulator.add_move_listener`). A pickup through a valve port that carries a
  reagent line draws that line's stock into the pump's syringe; a dispense through the output
  port while the positioner holds a well puts that volume of the syringe's contents into the
  well of the :class:`~simulators.world.SimulatedLab`; a dispense over the waste trough (or
  with nothing positioned) is wasted; an initialisation empties the syringe back into its
  input line.

Volumes are what the plunger really travelled: increments × syringe µL / stroke increments,
so a well receives the pump's metered volume (a 1.234 µL request on a 100 µL / 3000-step
syringe delivers 37 increments = 1.2333 µL), and an overloaded move delivers the part it
travelled. Moves the bridge cannot explain (a pickup from the dispensing line, a dispense
into a reagent line, more liquid pushed out than was drawn) are recorded in
:attr:`FluidicsBridge.anomalies`.

The lab keeps its persistence semantics: a transfer into a well is the lab's own
``aspirate_into_tip`` + ``dispense_from_tip`` (each made durable before it returns) of the
syringe's contents, performed on the emulator's thread before the pump answers, so by the
time the driver sees the move acknowledged the plate already holds the liquid. The syringes'
contents live in memory, like the emulator's plunger positions: a new process powers up empty
pumps, which the driver initialises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from instruments.exceptions import LiquidHandlingError
from instruments.interfaces import Clock
from instruments.pumps.pump import valve_position
from simulators.pump_emulator import PlungerMove, PumpEmulator
from simulators.world import SimulatedLab, UnknownWellError

__all__ = ["FluidicsBridge", "ReagentLine", "SimulatedPositioner", "valve_position"]

log = logging.getLogger(__name__)

_EPS_INC = 1e-9
WASTE = ("waste", "")


@dataclass(frozen=True)
class ReagentLine:
    """What a reservoir line carries: the protocol's source name, the reagent, its stock."""

    source: str
    reagent: str
    stock_concentration_um: float


class SimulatedPositioner:
    """A plate stage under a fixed nozzle, for dry-runs.

    Args:
        lab: the simulated lab (well names are checked against its plate types).
        clock: advanced by ``seconds_per_move`` on every move (None: takes no time).
        seconds_per_move: simulated duration of one stage move (s).
    """

    def __init__(
        self, lab: SimulatedLab, clock: Clock | None = None, *, seconds_per_move: float = 0.0
    ) -> None:
        self.lab = lab
        self.clock = clock
        self.seconds_per_move = float(seconds_per_move)
        self.current: tuple[str, str] | None = None
        self.moves = 0

    def move_to_well(self, plate: str, well: str) -> None:
        """Put ``well`` of ``plate`` under the nozzle.

        Raises:
            LiquidHandlingError: the plate has no such well.
        """
        try:
            canonical = self.lab.canonical_well(plate, well)
        except UnknownWellError as exc:
            raise LiquidHandlingError(str(exc)) from exc
        self._move((plate, canonical))

    def move_to_waste(self) -> None:
        """Put the waste trough under the nozzle."""
        self._move(WASTE)

    def _move(self, target: tuple[str, str]) -> None:
        self.moves += 1
        if self.clock is not None and self.seconds_per_move > 0:
            self.clock.sleep(self.seconds_per_move)
        self.current = target

    @property
    def over_well(self) -> tuple[str, str] | None:
        """(plate, well) under the nozzle, or None over the waste or before any move."""
        return None if self.current in (None, WASTE) else self.current


@dataclass
class _Syringe:
    """A syringe's contents: increments of liquid per line (floats once mixed)."""

    parts: dict[ReagentLine, float] = field(default_factory=dict)

    @property
    def increments(self) -> float:
        return sum(self.parts.values())

    def add(self, line: ReagentLine, increments: float) -> None:
        self.parts[line] = self.parts.get(line, 0.0) + increments

    def take(self, increments: float) -> dict[ReagentLine, float]:
        """Remove ``increments`` (at most what is held), in proportion; return what left."""
        held = self.increments
        if held <= _EPS_INC:
            return {}
        if len(self.parts) == 1:
            ((line, amount),) = self.parts.items()
            moved = min(increments, amount)
            rest = amount - moved
            self.parts = {line: rest} if rest > _EPS_INC else {}
            return {line: moved}
        fraction = min(increments / held, 1.0)
        out = {line: amount * fraction for line, amount in self.parts.items()}
        self.parts = {
            line: amount - out[line]
            for line, amount in self.parts.items()
            if amount - out[line] > _EPS_INC
        }
        return out


_UNKNOWN = ReagentLine("<unknown line>", "", 0.0)


class FluidicsBridge:
    """Moves simulated liquid for every plunger move the pump emulator executes.

    Args:
        lab: the simulated lab whose wells receive what is dispensed.
        clock: gives the dose time of a well's first dispense.
        positioner: tells which well is under the nozzle.
        syringes_ul: pump address → fitted syringe volume (µL).
        lines: (pump address, valve port) → the line on that port.
        output_ports: pump address → valve port of its dispensing line (or one port for all).
    """

    def __init__(
        self,
        lab: SimulatedLab,
        clock: Clock,
        positioner: SimulatedPositioner,
        *,
        syringes_ul: Mapping[int, float],
        lines: Mapping[tuple[int, str | int], ReagentLine],
        output_ports: Mapping[int, str | int] | str | int = "output",
    ) -> None:
        self.lab = lab
        self.clock = clock
        self.positioner = positioner
        self.syringes_ul = {int(a): float(v) for a, v in syringes_ul.items()}
        self.lines = {(int(a), valve_position(p)): line for (a, p), line in lines.items()}
        if isinstance(output_ports, Mapping):
            self.output = {int(a): valve_position(p) for a, p in output_ports.items()}
        else:
            self.output = {a: valve_position(output_ports) for a in self.syringes_ul}
        for (address, valve), line in self.lines.items():
            if self.output.get(address) == valve:
                raise ValueError(f"pump {address}: port {valve} is both {line.source!r} and output")
        self._syringes: dict[int, _Syringe] = {a: _Syringe() for a in self.syringes_ul}
        self._strokes: dict[int, int] = {}
        self.delivered: list[dict[str, Any]] = []
        self.wasted_ul = 0.0
        self.returned_ul = 0.0
        self.anomalies: list[str] = []
        if lab.tip.volume_ul > 0:  # a transfer torn by a crash: that liquid never arrived
            lab.discard_tip()

    def attach(self, emulator: PumpEmulator) -> FluidicsBridge:
        """Listen to ``emulator``'s executed moves; returns self."""
        emulator.add_move_listener(self.on_move)
        return self

    def syringe_ul(self, address: int) -> float:
        """The liquid volume the bridge tracks in a pump's syringe (µL)."""
        stroke = self._strokes.get(address)
        increments = self._syringes[address].increments
        return increments * self.syringes_ul[address] / stroke if stroke else 0.0

    # -- the physics ------------------------------------------------------------------------

    def on_move(self, move: PlungerMove) -> None:
        """Apply one executed plunger move (called on the emulator's thread)."""
        address = move.address
        if address not in self._syringes:
            self.anomalies.append(f"pump {address} moved but has no configured syringe")
            return
        self._strokes[address] = move.increments_per_stroke
        syringe = self._syringes[address]
        ul_per_inc = self.syringes_ul[address] / move.increments_per_stroke
        if move.kind == "init":
            parts = syringe.take(float(move.increments))
            self.returned_ul += sum(parts.values()) * ul_per_inc
            return
        if move.kind == "pickup":
            line = self.lines.get((address, move.valve))
            if line is None:
                self.anomalies.append(
                    f"pump {address} aspirated {move.increments * ul_per_inc:.4g} µL through "
                    f"valve {move.valve!r}, which carries no reagent line"
                )
                line = _UNKNOWN
            syringe.add(line, float(move.increments))
            return
        self._push_out(address, move, syringe, ul_per_inc)

    def _push_out(
        self, address: int, move: PlungerMove, syringe: _Syringe, ul_per_inc: float
    ) -> None:
        held = syringe.increments
        if move.increments > held + 1e-6:
            self.anomalies.append(
                f"pump {address} pushed out {move.increments} increments but the bridge "
                f"tracked {held:g}"
            )
        parts = syringe.take(float(move.increments))
        volume_ul = sum(parts.values()) * ul_per_inc
        if move.valve != self.output.get(address):
            self.returned_ul += volume_ul
            self.anomalies.append(
                f"pump {address} dispensed {volume_ul:.4g} µL back through valve {move.valve!r}"
            )
            return
        target = self.positioner.over_well
        if target is None:
            self.wasted_ul += volume_ul
            return
        if volume_ul <= 0:
            return
        plate, well = target
        if self.lab.tip.volume_ul > 0:
            self.lab.discard_tip()
        for line, increments in parts.items():
            self.lab.aspirate_into_tip(
                line.source, line.reagent, line.stock_concentration_um, increments * ul_per_inc
            )
        self.lab.dispense_from_tip(plate, well, volume_ul, self.clock.now())
        self.delivered.append(
            {
                "pump": address,
                "plate": plate,
                "well": well,
                "volume_ul": volume_ul,
                "sources": sorted(line.source for line in parts),
                "partial": move.overloaded,
            }
        )
