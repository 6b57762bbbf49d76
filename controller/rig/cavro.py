"""Liquid handling on Cavro XCalibur / XLP 6000 and Hamilton PSD syringe pumps (driver ``cavro``).

Campaign file::

    instruments:
      liquid_handler:
        driver: cavro
        settings:
          port: /dev/ttyUSB0          # any pyserial URL (socket://host:port, rfc2217://...)
          protocol: oem               # oem (checksummed; retries are safe) or dt
          baudrate: 9600
          pumps:                      # driver address -> model, fitted syringe, valve ports
            1: {model: xcalibur, syringe_ul: 500}
            2: {model: xlp6000, syringe_ul: 100, valve_ports: 6}
          lines:                      # protocol source (or reagent) -> [pump, valve port]
            medium: [1, 1]
            staurosporine: [1, 2]
            "drug_a@1000uM": [2, 1]
            "drug_a@100uM": [2, 2]
          output_port: 6              # the dispensing line's port (same on every pump)
          mix_policy: refuse          # refuse | skip (a fixed nozzle cannot mix)
          positioner: {seconds_per_move: 2.0}
          emulator: {drop_reply: 0.05, garble_reply: 0.05}   # dry-runs only

**Sources and lines.** The protocol's Aspirate steps name a *source*: the ``dose_response``
protocol writes ``"<reagent>@<stock:g>uM"`` for stocks (``drug_a@100uM``) and the bare vehicle
name (``medium``) for top-ups. Each source is a reservoir, so it needs a line: an entry of
``lines`` keyed by the source. A reagent with a single stock may instead be keyed by the
reagent name (``staurosporine``), which serves every source of that reagent. A line's reagent
and stock concentration are read from its key (``name@<conc>uM``; a bare name is the vehicle
at 0 µM or the reagent's only stock) or given explicitly
(``{pump: 2, port: 3, reagent: drug_a, stock_um: 100}``). Before anything moves, every
source the protocol can ask for must have a line with the right reagent and stock; at run
time the dispenser refuses an aspirate whose stock differs from its line's.

**Mixing.** A fixed nozzle cannot pipette up and down. With ``mix_policy: refuse`` (the
default) a protocol that mixes (``dose_response``'s ``mix_cycles`` > 0, its default is 3) is
refused when the instruments are built: set ``protocol.settings.mix_cycles: 0`` for pump rigs
(recommended: the dispense jet mixes), or ``mix_policy: skip`` to journal the Mix steps as done
while doing nothing (a warning is logged per well).

**Crash recovery.** Pumps cannot see wells, so ``well_volume_ul`` answers None and the engine
quarantines a well whose dispense was interrupted (a fault or a kill between ``started`` and
``done``); its experiment is re-queued. A pump fault (overload, timeout, lost link) is a typed
:class:`~instruments.pumps.PumpError`, an ``InstrumentError``: the campaign pauses (exit 3)
and the same command resumes it. Every pump is initialised (homed) when the instruments are
built, i.e. at each start or resume.

**Dry-runs.** With ``--dry-run`` the real driver stack runs against a
:class:`~simulators.pump_emulator.PumpEmulator` on a pseudo-terminal (``port`` is ignored),
wired to the run's simulated lab by :mod:`simulators.fluidics`, so the virtual cells receive
what the plungers metered. ``emulator`` settings: ``time_scale`` (default 0.0005),
``transport`` (pty | tcp), ``drop_reply`` / ``garble_reply`` probabilities and ``seed``, and
one-shot faults ``overload_after_moves`` / ``valve_overload_after_moves`` /
``stuck_after_moves`` (N successful plunger moves, then the fault; optionally on
``fault_pump``). The campaign file's settings are part of its identity (a changed file cannot
resume a campaign), so a fault meant for one run only comes from the environment variable
``CELLPILOT_PUMP_EMULATOR`` (JSON, merged over ``emulator``). Each process appends its link
and move counts to ``<data_dir>/pump_runs.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.rig.registry import (
    BuildContext,
    InstrumentConfigError,
    driver,
)
from controller.rig.simulated import simulated_lab
from controller.spec import format_validation_error
from instruments.dispenser import FixedNozzlePositioner, PlatePositioner, PumpDispenser
from instruments.exceptions import InstrumentError
from instruments.pumps import MODELS, SyringePump, open_transport
from instruments.pumps.pump import valve_position
from instruments.pumps.transport import PumpTransport

log = logging.getLogger(__name__)

EMULATOR_ENV = "CELLPILOT_PUMP_EMULATOR"
_SOURCE_RE = re.compile(r"^(?P<reagent>.+)@(?P<conc>[0-9.]+(?:[eE][+-]?[0-9]+)?)uM$")


class CavroConfigError(InstrumentConfigError, InstrumentError):
    """The ``cavro`` driver's settings are wrong (the CLI reports it; nothing moved)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PumpSettings(_Model):
    model: str = Field(default="xcalibur", description="xcalibur | xlp6000 | psd4 | psd6")
    syringe_ul: float = Field(gt=0, description="fitted syringe volume, µL")
    valve_ports: int = Field(default=6, ge=2, le=12, description="distribution valve ports")


class LineSettings(_Model):
    pump: int = Field(ge=1, le=16, description="driver address of the pump")
    port: int | str = Field(description="valve port of the reservoir line (1..n or 'input')")
    reagent: str | None = Field(default=None, description="default: from the key")
    stock_um: float | None = Field(default=None, ge=0, description="default: from the key")


class PositionerSettings(_Model):
    kind: Literal["fixed"] = Field(
        default="fixed", description="fixed: the plate is positioned externally (recorded)"
    )
    seconds_per_move: float = Field(
        default=2.0, ge=0, description="simulated time per stage move (dry-runs)"
    )


class EmulatorSettings(_Model):
    time_scale: float = Field(default=0.0005, gt=0, le=1, description="x real move times")
    transport: Literal["pty", "tcp"] = "pty"
    drop_reply: float = Field(default=0.0, ge=0, le=0.5)
    garble_reply: float = Field(default=0.0, ge=0, le=0.5)
    seed: int = 0
    overload_after_moves: int | None = Field(default=None, ge=0)
    valve_overload_after_moves: int | None = Field(default=None, ge=0)
    stuck_after_moves: int | None = Field(default=None, ge=0)
    fault_pump: int | None = Field(default=None, description="pump the faults hit; None: any")


class CavroSettings(_Model):
    port: str | None = Field(default=None, description="serial URL; required off dry-runs")
    protocol: Literal["oem", "dt"] = "oem"
    baudrate: Literal[9600, 38400] = 9600
    pumps: dict[int, PumpSettings] = Field(min_length=1)
    lines: dict[str, tuple[int, int | str] | LineSettings] = Field(min_length=1)
    output_port: int | str = "output"
    mix_policy: Literal["refuse", "skip"] = "refuse"
    positioner: PositionerSettings = Field(default_factory=PositionerSettings)
    session: dict[str, float] = Field(
        default_factory=dict, description="PumpSession options (reply_timeout_s, max_retries...)"
    )
    log_path: str | None = Field(default=None, description="JSON-lines exchange log")
    emulator: EmulatorSettings = Field(default_factory=EmulatorSettings)


class CavroDispenser(PumpDispenser):
    """A :class:`PumpDispenser` that owns its serial bus (and, in a dry-run, its emulator)."""

    def __init__(
        self,
        *args: Any,
        bus: PumpTransport,
        emulator: Any = None,
        bridge: Any = None,
        stats_path: Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.bus = bus
        self.emulator = emulator
        self.bridge = bridge
        self.stats_path = stats_path
        self._started = time.monotonic()
        self.pump_s = 0.0  # wall time spent in aspirate/dispense calls
        self._closed = False

    def aspirate(
        self, source: str, reagent: str, stock_concentration_um: float, volume_ul: float
    ) -> None:
        started = time.monotonic()
        try:
            super().aspirate(source, reagent, stock_concentration_um, volume_ul)
        finally:
            self.pump_s += time.monotonic() - started

    def dispense(self, plate: str, well: str, volume_ul: float) -> None:
        started = time.monotonic()
        try:
            super().dispense(plate, well, volume_ul)
        finally:
            self.pump_s += time.monotonic() - started

    def link_stats(self) -> dict[str, Any]:
        """Blocks, retries, timeouts and bad frames summed over the pumps' sessions."""
        keys = ("blocks", "retries", "timeouts", "bad_frames", "polls")
        return {k: sum(getattr(p.session.stats, k) for p in self.pumps.values()) for k in keys}

    def run_stats(self) -> dict[str, Any]:
        """What this process did: link statistics, emulator counters, fluidics totals."""
        out: dict[str, Any] = {
            "pid": os.getpid(),
            "wall_s": time.monotonic() - self._started,
            "pump_s": self.pump_s,
            "link": self.link_stats(),
        }
        if self.emulator is not None:
            out["emulator"] = {
                "dropped": self.emulator.dropped,
                "garbled": self.emulator.garbled,
                "motion_s_unscaled": self.emulator.motion_s,
                "listener_errors": list(self.emulator.listener_errors),
                "pumps": {
                    a: {
                        "plunger_moves": self.emulator.pump(a).plunger_moves,
                        "aspirated": self.emulator.pump(a).aspirated,
                        "dispensed": self.emulator.pump(a).dispensed,
                        "init_count": self.emulator.pump(a).init_count,
                    }
                    for a in self.pumps
                },
            }
        if self.bridge is not None:
            out["fluidics"] = {
                "transfers": len(self.bridge.delivered),
                "partial_transfers": sum(d["partial"] for d in self.bridge.delivered),
                "delivered_ul": sum(d["volume_ul"] for d in self.bridge.delivered),
                "wasted_ul": self.bridge.wasted_ul,
                "returned_ul": self.bridge.returned_ul,
                "anomalies": list(self.bridge.anomalies),
            }
        return out

    def close(self) -> None:
        """Record the run's statistics, close the bus, stop the emulator."""
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
            if self.emulator is not None:
                self.emulator.close()


# -- settings -------------------------------------------------------------------------------


def parse_settings(settings: dict[str, Any], dry_run: bool) -> CavroSettings:
    """Validate the driver settings (and, in a dry-run, the ``CELLPILOT_PUMP_EMULATOR`` override)."""
    data = dict(settings)
    override = os.environ.get(EMULATOR_ENV) if dry_run else None
    if override:
        try:
            extra = json.loads(override)
        except json.JSONDecodeError as exc:
            raise CavroConfigError(f"{EMULATOR_ENV} is not JSON: {exc}") from None
        data["emulator"] = {**dict(data.get("emulator") or {}), **extra}
    try:
        parsed = CavroSettings.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(format_validation_error(err))
        raise CavroConfigError(f"instruments.liquid_handler.settings: {problems}") from None
    for address, pump in parsed.pumps.items():
        if pump.model not in MODELS:
            raise CavroConfigError(
                f"instruments.liquid_handler.settings.pumps[{address}].model: unknown pump model "
                f"{pump.model!r}; choose from {sorted(MODELS)}"
            )
    if not dry_run and not parsed.port:
        raise CavroConfigError(
            "instruments.liquid_handler.settings.port: is required on instruments"
        )
    return parsed


def resolve_lines(parsed: CavroSettings, protocol: Any) -> dict[str, LineSettings]:
    """Each line with its reagent and stock filled in (from the key or the protocol's stocks)."""
    stocks: dict[str, list[float]] = dict(getattr(protocol.settings, "stocks", {}) or {})
    vehicle = getattr(protocol.settings, "vehicle", None)
    out: dict[str, LineSettings] = {}
    for key, raw in parsed.lines.items():
        line = raw if isinstance(raw, LineSettings) else LineSettings(pump=raw[0], port=raw[1])
        where = f"instruments.liquid_handler.settings.lines[{key!r}]"
        match = _SOURCE_RE.match(key)
        reagent = line.reagent or (match.group("reagent") if match else key)
        stock = line.stock_um
        if stock is None and match:
            stock = float(match.group("conc"))
        elif stock is None and reagent == vehicle:
            stock = 0.0
        elif stock is None and len(stocks.get(reagent, [])) == 1:
            stock = float(stocks[reagent][0])
        if stock is None:
            raise CavroConfigError(
                f"{where}: cannot tell the stock concentration of this line; key it "
                f"'{reagent}@<conc>uM' or give stock_um"
            )
        if line.pump not in parsed.pumps:
            raise CavroConfigError(f"{where}: pump {line.pump} is not in pumps")
        out[key] = line.model_copy(update={"reagent": reagent, "stock_um": stock})
    _check_ports(parsed, out)
    return out


def _check_ports(parsed: CavroSettings, lines: dict[str, LineSettings]) -> None:
    used: dict[tuple[int, str], str] = {}
    output = valve_position(parsed.output_port)
    for key, line in lines.items():
        where = f"instruments.liquid_handler.settings.lines[{key!r}]"
        try:
            port = valve_position(line.port)
        except ValueError as exc:
            raise CavroConfigError(f"{where}: {exc}") from None
        ports = parsed.pumps[line.pump].valve_ports
        if port.isdigit() and not 1 <= int(port) <= ports:
            raise CavroConfigError(f"{where}: port {port} not in 1..{ports} of pump {line.pump}")
        if port == output:
            raise CavroConfigError(f"{where}: port {port} is the output port")
        if (line.pump, port) in used:
            raise CavroConfigError(
                f"{where}: pump {line.pump} port {port} already carries {used[(line.pump, port)]!r}"
            )
        used[(line.pump, port)] = key


def check_protocol(parsed: CavroSettings, lines: dict[str, LineSettings], protocol: Any) -> None:
    """Refuse, before anything moves, a protocol these lines cannot serve or that mixes."""
    settings = protocol.settings
    if getattr(settings, "mix_cycles", 0) and parsed.mix_policy == "refuse":
        raise CavroConfigError(
            "a fixed-nozzle pump dispenser cannot mix: set protocol.settings.mix_cycles: 0 "
            "(recommended) or instruments.liquid_handler.settings.mix_policy: skip"
        )
    wanted = [
        (f"{r}@{c:g}uM", r, float(c))
        for r, cs in getattr(settings, "stocks", {}).items()
        for c in cs
    ]
    vehicle = getattr(settings, "vehicle", None)
    if vehicle:
        wanted.append((vehicle, vehicle, 0.0))
    problems = []
    for source, reagent, stock in wanted:
        key = source if source in lines else reagent if reagent in lines else None
        if key is None:
            problems.append(f"no line for {source!r}")
        elif lines[key].reagent != reagent or abs(
            (lines[key].stock_um or 0.0) - stock
        ) > 1e-9 * max(stock, 1):
            problems.append(
                f"{source!r} would be drawn from line {key!r} "
                f"({lines[key].reagent} at {lines[key].stock_um:g} µM)"
            )
    if problems:
        raise CavroConfigError("instruments.liquid_handler.settings.lines: " + "; ".join(problems))


# -- building -------------------------------------------------------------------------------


def _start_emulator(parsed: CavroSettings, lines: dict[str, LineSettings], ctx: BuildContext):
    from simulators.fluidics import FluidicsBridge, ReagentLine, SimulatedPositioner
    from simulators.pump_emulator import FaultConfig, PumpEmulator

    emu_settings = parsed.emulator
    addresses = tuple(sorted(parsed.pumps))
    first = parsed.pumps[addresses[0]].model
    emulator = PumpEmulator(
        addresses,
        model=first,
        time_scale=emu_settings.time_scale,
        transport=emu_settings.transport,
        faults=FaultConfig(emu_settings.drop_reply, emu_settings.garble_reply, emu_settings.seed),
        pump_models={a: p.model for a, p in parsed.pumps.items()},
        pump_valve_ports={a: p.valve_ports for a, p in parsed.pumps.items()},
    )
    for kind, after in (
        ("plunger", emu_settings.overload_after_moves),
        ("valve", emu_settings.valve_overload_after_moves),
        ("stuck", emu_settings.stuck_after_moves),
    ):
        if after is not None:
            emulator.schedule_fault(kind, after, emu_settings.fault_pump)
    lab = simulated_lab(ctx)
    positioner = SimulatedPositioner(
        lab, ctx.clock, seconds_per_move=parsed.positioner.seconds_per_move
    )
    bridge = FluidicsBridge(
        lab,
        ctx.clock,
        positioner,
        syringes_ul={a: p.syringe_ul for a, p in parsed.pumps.items()},
        lines={
            (ln.pump, ln.port): ReagentLine(key, ln.reagent or key, ln.stock_um or 0.0)
            for key, ln in lines.items()
        },
        output_ports=parsed.output_port,
    ).attach(emulator)
    return emulator, bridge, positioner


def validate_cavro(settings: dict[str, Any], spec: Any, dry_run: bool) -> None:
    """Preflight: the settings, the lines the protocol needs, and the mix policy."""
    from protocols import get_protocol

    parsed = parse_settings(settings, dry_run)
    protocol = get_protocol(spec.protocol.name, spec.protocol.settings)
    check_protocol(parsed, resolve_lines(parsed, protocol), protocol)


@driver("liquid_handler", "cavro", dry_run=True, validate=validate_cavro)
def build_cavro(settings: dict[str, Any], ctx: BuildContext) -> CavroDispenser:
    """The ``cavro`` liquid handler: pumps on one serial bus behind a :class:`PumpDispenser`."""
    from protocols import get_protocol

    parsed = parse_settings(settings, ctx.dry_run)
    protocol = get_protocol(ctx.spec.protocol.name, ctx.spec.protocol.settings)
    lines = resolve_lines(parsed, protocol)
    check_protocol(parsed, lines, protocol)
    emulator = bridge = None
    positioner: PlatePositioner = FixedNozzlePositioner()
    session = dict(parsed.session)
    url = parsed.port or ""
    if ctx.dry_run:
        emulator, bridge, positioner = _start_emulator(parsed, lines, ctx)
        session = {**emulator.driver_options(), **session}
        url = emulator.port
    try:
        bus = open_transport(url, baudrate=parsed.baudrate, log_path=parsed.log_path)
    except Exception:
        if emulator is not None:
            emulator.close()
        raise
    pumps = {
        address: SyringePump(
            address=address,
            syringe_volume_ul=p.syringe_ul,
            protocol=parsed.protocol,
            model=p.model,
            transport=bus,
            valve_ports=p.valve_ports,
            **session,
        )
        for address, p in parsed.pumps.items()
    }
    dispenser = CavroDispenser(
        pumps,
        {key: (ln.pump, ln.port) for key, ln in lines.items()},
        output_port=parsed.output_port,
        positioner=positioner,
        mix_policy=parsed.mix_policy,
        stocks={key: ln.stock_um or 0.0 for key, ln in lines.items()},
        bus=bus,
        emulator=emulator,
        bridge=bridge,
        stats_path=ctx.data_dir / "pump_runs.jsonl",
    )
    try:
        dispenser.initialize()
    except BaseException:
        dispenser.close()
        raise
    ctx.shared["pump_dispenser"] = dispenser
    return dispenser
