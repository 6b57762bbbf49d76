"""Fluidics between emulated syringe pumps and the simulated plate.

The real pump driver (:class:`~instruments.pumps.SyringePump` → bytes on a pty →
:class:`~simulators.pump_emulator.PumpEmulator`) runs unchanged in a dry-run; this module is
the physics underneath it:

* :class:`SimulatedPositioner` implements the dispenser's
  :class:`~instruments.dispenser.PlatePositioner`: it remembers which well (or the waste
  trough) sits under the fixed nozzle, and refuses wells the plate does not have.
* :class:`FluidicsBridge` listens to executed plunger moves: the emulator's
  (:meth:`PumpEmulator.add_move_listener`), or, in a dry-run against someone else's emulator
  or a bench pump, the driver's confirmed ones (:meth:`SyringePump.add_move_listener`). A
  pickup through a valve port that carries a reagent line draws that line's stock into the
  pump's syringe. A dispense, and an initialisation (which homes the plunger), push the
  syringe's contents out through the valve port of the move: through the output port into the
  pump's dispensing line, whose far end (the nozzle) drips into the well the positioner holds
  under it, or into the waste trough; through a waste port to waste.
* The dispensing line holds ``output_line_ul`` of liquid (its dead volume, primed before the
  run with system liquid) and moves it as a plug flow: pushing V µL in at the valve pushes the
  oldest V µL out of the nozzle. So after a change of source the first ``output_line_ul`` to
  leave the nozzle is the previous source: the carry-over a flush to waste removes
  (:class:`~instruments.dispenser.PumpDispenser` flushes between sources). Plug flow is the
  optimistic case: real lines also disperse, which is why flush volumes are several line
  volumes.

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
contents live in memory, like the emulator's plunger positions (a new process powers up empty
pumps), unless ``persist_syringes`` is set: then, like the lines' contents and the stage's
position (which are physical and always outlive a process when a ``state_path`` is given),
they are written to ``state_path`` after every move, for pumps that outlive the process (an
external emulator or a bench pump).
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from instruments.exceptions import LiquidHandlingError
from instruments.interfaces import Clock
from instruments.pumps.moves import PlungerMove
from instruments.pumps.pump import valve_position
from simulators.pump_emulator import PumpEmulator
from simulators.world import SimulatedLab, UnknownWellError

__all__ = ["FluidicsBridge", "ReagentLine", "SimulatedPositioner", "valve_position"]

log = logging.getLogger(__name__)

_EPS_INC = 1e-9
_EPS_UL = 1e-9
WASTE = ("waste", "")


def _write_json(path: Path, data: Any) -> None:
    """Replace ``path`` atomically (a killed process leaves the old or the new file)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


@dataclass(frozen=True)
class ReagentLine:
    """What a reservoir line carries: the protocol's source name, the reagent, its stock."""

    source: str
    reagent: str
    stock_concentration_um: float


#: what fills a dispensing line before the first source reaches it (no reagent).
SYSTEM_LIQUID = ReagentLine("<system liquid>", "system liquid", 0.0)


class SimulatedPositioner:
    """A plate stage under a fixed nozzle, for dry-runs.

    Args:
        lab: the simulated lab (well names are checked against its plate types).
        clock: advanced by ``seconds_per_move`` on every move (None: takes no time).
        seconds_per_move: simulated duration of one stage move (s).
        state_path: where the stage's position is kept: a stage stays where it was when the
            controlling process dies, over the last well it served.
    """

    def __init__(
        self,
        lab: SimulatedLab,
        clock: Clock | None = None,
        *,
        seconds_per_move: float = 0.0,
        state_path: str | Path | None = None,
    ) -> None:
        self.lab = lab
        self.clock = clock
        self.seconds_per_move = float(seconds_per_move)
        self.state_path = Path(state_path) if state_path is not None else None
        self.current: tuple[str, str] | None = None
        self.moves = 0
        if self.state_path is not None and self.state_path.exists():
            saved = json.loads(self.state_path.read_text(encoding="utf-8"))["current"]
            self.current = tuple(saved) if saved else None  # type: ignore[assignment]

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
        if self.state_path is not None:
            _write_json(self.state_path, {"current": list(target)})

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


class _DispensingLine:
    """The tubing from a pump's output port to its nozzle, as a plug flow of segments.

    ``segments[0]`` is at the nozzle; each is µL per reagent line (mixtures stay mixed).
    """

    def __init__(self, volume_ul: float, segments: list[dict[ReagentLine, float]] | None = None):
        self.volume_ul = float(volume_ul)
        if segments is None:
            segments = [{SYSTEM_LIQUID: self.volume_ul}] if self.volume_ul > 0 else []
        self.segments: deque[dict[ReagentLine, float]] = deque(segments)

    def push(self, parts: dict[ReagentLine, float]) -> dict[ReagentLine, float]:
        """Push ``parts`` (µL per line) in at the valve; return what leaves the nozzle."""
        if self.volume_ul <= 0:
            return dict(parts)
        self.segments.append(dict(parts))
        need = sum(parts.values())
        out: dict[ReagentLine, float] = {}
        while need > _EPS_UL and self.segments:
            head = self.segments[0]
            held = sum(head.values())
            fraction = min(need / held, 1.0) if held > 0 else 1.0
            for line, amount in head.items():
                out[line] = out.get(line, 0.0) + amount * fraction
            if fraction >= 1.0:
                self.segments.popleft()
            else:
                self.segments[0] = {k: v * (1 - fraction) for k, v in head.items()}
            need -= held * fraction
        return {k: v for k, v in out.items() if v > _EPS_UL}

    @property
    def contents_ul(self) -> float:
        return sum(sum(s.values()) for s in self.segments)


_UNKNOWN = ReagentLine("<unknown line>", "", 0.0)


class FluidicsBridge:
    """Moves simulated liquid for every executed plunger move.

    Args:
        lab: the simulated lab whose wells receive what is dispensed.
        clock: gives the dose time of a well's first dispense.
        positioner: tells which well is under the nozzle.
        syringes_ul: pump address → fitted syringe volume (µL).
        lines: (pump address, valve port) → the line on that port.
        output_ports: pump address → valve port of its dispensing line (or one port for all).
        output_line_ul: the dead volume of each pump's dispensing line (µL; 0: none).
        waste_ports: pump address → valve port of a line to waste, if the pump has one.
        state_path: where the lines' (and with ``persist_syringes`` the syringes') contents
            are kept between processes.
        persist_syringes: keep the syringes' contents too (pumps that outlive the process).
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
        output_line_ul: float = 0.0,
        waste_ports: Mapping[int, str | int] | None = None,
        state_path: str | Path | None = None,
        persist_syringes: bool = False,
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
        self.waste = {int(a): valve_position(p) for a, p in (waste_ports or {}).items()}
        for (address, valve), line in self.lines.items():
            if valve in (self.output.get(address), self.waste.get(address)):
                raise ValueError(
                    f"pump {address}: port {valve} carries {line.source!r} and is the "
                    "output or waste port"
                )
        self._syringes: dict[int, _Syringe] = {a: _Syringe() for a in self.syringes_ul}
        self._tubes = {a: _DispensingLine(output_line_ul) for a in self.syringes_ul}
        self._strokes: dict[int, int] = {}
        self.state_path = Path(state_path) if state_path is not None else None
        self.persist_syringes = persist_syringes
        self.delivered: list[dict[str, Any]] = []
        self.wasted_ul = 0.0
        self.returned_ul = 0.0
        self.anomalies: list[str] = []
        self._load()
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

    def line_ul(self, address: int) -> float:
        """The liquid volume in a pump's dispensing line (its dead volume once primed)."""
        return self._tubes[address].contents_ul

    # -- the physics ------------------------------------------------------------------------

    def on_move(self, move: PlungerMove) -> None:
        """Apply one executed plunger move (called on the thread that reports it)."""
        address = move.address
        if address not in self._syringes:
            self.anomalies.append(f"pump {address} moved but has no configured syringe")
            return
        self._strokes[address] = move.increments_per_stroke
        syringe = self._syringes[address]
        ul_per_inc = self.syringes_ul[address] / move.increments_per_stroke
        if move.kind == "pickup":
            line = self.lines.get((address, move.valve))
            if line is None:
                self.anomalies.append(
                    f"pump {address} aspirated {move.increments * ul_per_inc:.4g} µL through "
                    f"valve {move.valve!r}, which carries no reagent line"
                )
                line = _UNKNOWN
            syringe.add(line, float(move.increments))
        else:
            self._push_out(address, move, syringe, ul_per_inc)
        self._save()

    def _push_out(
        self, address: int, move: PlungerMove, syringe: _Syringe, ul_per_inc: float
    ) -> None:
        """A dispense or an init: the syringe's contents leave through the move's valve port."""
        held = syringe.increments
        if move.kind != "init" and move.increments > held + 1e-6:
            self.anomalies.append(
                f"pump {address} pushed out {move.increments} increments but the bridge "
                f"tracked {held:g}"
            )
        parts = {k: v * ul_per_inc for k, v in syringe.take(float(move.increments)).items()}
        volume_ul = sum(parts.values())
        if move.valve == self.waste.get(address):
            self.wasted_ul += volume_ul
            return
        if move.valve != self.output.get(address):
            self.returned_ul += volume_ul
            if volume_ul > 0:
                self.anomalies.append(
                    f"pump {address} pushed {volume_ul:.4g} µL back through valve {move.valve!r}"
                )
            return
        self._deliver(address, self._tubes[address].push(parts), move.overloaded)

    def _deliver(self, address: int, out: dict[ReagentLine, float], partial: bool) -> None:
        """What left the nozzle: into the well under it, or the waste trough."""
        volume_ul = sum(out.values())
        target = self.positioner.over_well
        if target is None:
            self.wasted_ul += volume_ul
            return
        if volume_ul <= 0:
            return
        plate, well = target
        if self.lab.tip.volume_ul > 0:
            self.lab.discard_tip()
        for line, amount_ul in out.items():
            self.lab.aspirate_into_tip(
                line.source, line.reagent, line.stock_concentration_um, amount_ul
            )
        self.lab.dispense_from_tip(plate, well, volume_ul, self.clock.now())
        self.delivered.append(
            {
                "pump": address,
                "plate": plate,
                "well": well,
                "volume_ul": volume_ul,
                "sources": sorted(line.source for line in out),
                "partial": partial,
            }
        )

    # -- persistence -------------------------------------------------------------------------

    def _save(self) -> None:
        if self.state_path is None:
            return
        data: dict[str, Any] = {
            "lines": {a: [_encode(seg) for seg in t.segments] for a, t in self._tubes.items()}
        }
        if self.persist_syringes:
            data["syringes"] = {a: _encode(s.parts) for a, s in self._syringes.items()}
            data["strokes"] = self._strokes
        _write_json(self.state_path, data)

    def _load(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        data = json.loads(self.state_path.read_text(encoding="utf-8"))
        for address, segments in data.get("lines", {}).items():
            if int(address) in self._tubes:
                tube = self._tubes[int(address)]
                tube.segments = deque(_decode(seg) for seg in segments)
        if self.persist_syringes:
            for address, parts in data.get("syringes", {}).items():
                if int(address) in self._syringes:
                    self._syringes[int(address)].parts = _decode(parts)
            self._strokes.update({int(a): n for a, n in data.get("strokes", {}).items()})


def _encode(parts: Mapping[ReagentLine, float]) -> list[list[Any]]:
    return [[*asdict(line).values(), amount] for line, amount in parts.items()]


def _decode(rows: list[list[Any]]) -> dict[ReagentLine, float]:
    return {
        ReagentLine(source, reagent, float(conc)): float(n) for source, reagent, conc, n in rows
    }
