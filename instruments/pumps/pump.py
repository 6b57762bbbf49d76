"""Frontend: a syringe pump in lab units (µL, µL/s, valve ports).

Example:
    >>> pump = SyringePump("/dev/ttyUSB0", address=1, syringe_volume_ul=1000)  # doctest: +SKIP
    >>> pump.initialize(); pump.aspirate(250, port="input"); pump.dispense(250, port="output")

Volumes are checked before anything is sent. Every action is settled through the pump's own
reports (plunger position, valve, init counter), so it runs once whatever happens to its
answer (see :mod:`instruments.pumps.backend`). A pump in an unknown state (after
:meth:`connect`, :meth:`resume` or a fault) is waited for until ready, or reported stuck.
After an overload, an initialisation error or a timeout the pump refuses to move until
:meth:`SyringePump.initialize` succeeds. Pumps on one RS-485 bus share a transport
(``open_transport(url)``, passed as ``transport``). Move listeners
(:meth:`SyringePump.add_move_listener`) receive every plunger move the driver has confirmed,
including the part of a move that stopped on a fault and what an initialisation pushed out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from instruments.pumps.backend import STALE_ON_INIT, PumpSession
from instruments.pumps.codec import Protocol, Reply, single_address
from instruments.pumps.errors import (
    InvalidCommand,
    InvalidOperand,
    PumpCommunicationError,
    PumpError,
    PumpFirmwareError,
    PumpTimeout,
    PumpVolumeError,
    ReinitRequired,
)
from instruments.pumps.models import (
    MAX_VALVE_PORTS,
    VALVE_TURN_S,
    SpeedSettings,
    ValveType,
    get_model,
    init_time_s,
    move_time_s,
    parse_valve_report,
)
from instruments.pumps.moves import MoveListener, PlungerMove
from instruments.pumps.transport import PumpTransport, SerialTransport
from instruments.pumps.valves import (
    ValvePort,
    check_reported_valve,
    display,
    valve_command,
    valve_position,
)
from instruments.pumps.valves import parse_valve_report as parse_valve_position

__all__ = ["SyringePump", "ValvePort", "valve_position"]

log = logging.getLogger(__name__)


class SyringePump:
    """A Cavro XCalibur / XLP 6000 or Hamilton PSD/4 / PSD/6 syringe pump.

    Args:
        port_url: serial URL (``/dev/ttyUSB0``, pty path, ``socket://host:port``); ignored
            when ``transport`` is given.
        address: 1-15 (address switch 0-E), or 16 for a PSD on switch F.
        syringe_volume_ul: the fitted syringe (the pump cannot report it), µL.
        protocol: "oem" (checksummed, recommended) or "dt".
        model: "xcalibur", "xlp6000", "psd4" or "psd6".
        baudrate: 9600 or 38400.
        transport: a shared transport (several pumps on one bus); not closed by :meth:`close`.
        valve_ports: numbered ports of the distribution valve; None takes what the pump
            reports (any port up to 12 when it reports nothing). A pump that reports a
            different valve raises :class:`PumpConfigurationError` on :meth:`connect`.
        waste_port: a numbered port whose line goes to waste: initialisations push the
            syringe's leftover through it instead of the valve's last port.
        log_path: JSON-lines exchange log (only when this pump opens its own port).
        **session_options: passed to :class:`PumpSession` (timeouts, retries, time_scale).
    """

    def __init__(
        self,
        port_url: str | None = None,
        address: int = 1,
        syringe_volume_ul: float = 1000.0,
        protocol: Protocol = "oem",
        model: str = "xcalibur",
        baudrate: int = 9600,
        transport: PumpTransport | None = None,
        *,
        valve_ports: int | None = 6,
        waste_port: int | None = None,
        log_path: str | Path | None = None,
        **session_options: Any,
    ):
        volume = float(syringe_volume_ul)
        if not (math.isfinite(volume) and volume > 0):
            raise ValueError(f"syringe volume must be a positive number of µL, got {volume}")
        if valve_ports is not None and not 2 <= valve_ports <= MAX_VALVE_PORTS:
            raise ValueError(f"valve ports must be 2-{MAX_VALVE_PORTS}, got {valve_ports}")
        limit = valve_ports or MAX_VALVE_PORTS
        if waste_port is not None and not 1 <= waste_port <= limit:
            raise ValueError(f"waste port must be a numbered port 1-{limit}, got {waste_port}")
        self.model_name = model
        self.model = get_model(model)
        self.syringe_volume_ul = volume
        self.valve_ports = valve_ports
        self.waste_port = waste_port
        self.valve_type: ValveType | None = None
        self._owns_transport = transport is None
        if transport is None:
            if port_url is None:
                raise ValueError("give port_url or transport")
            transport = SerialTransport(port_url, baudrate=baudrate, log_path=log_path)
        self.transport = transport
        self.address = address
        self.session = PumpSession(
            transport, single_address(address, model=model), protocol=protocol, **session_options
        )
        self.speeds = SpeedSettings()
        self._initialized = False
        self._needs_reinit_reason: str | None = "not initialised yet"
        self._position_inc = 0
        self._valve: str | None = None
        self._ready_known = False
        self._listeners: list[MoveListener] = []

    # -- units -------------------------------------------------------------------------
    @property
    def ul_per_increment(self) -> float:
        """µL moved per standard-mode increment."""
        return self.syringe_volume_ul / self.model.increments

    @property
    def ports(self) -> int:
        """Numbered valve ports: as reported, else as configured, else the most any valve has."""
        if self.valve_type is not None:
            return self.valve_type.ports
        return self.valve_ports or MAX_VALVE_PORTS

    def _to_increments(self, volume_ul: float) -> int:
        if not (math.isfinite(volume_ul) and volume_ul > 0):
            raise PumpVolumeError(f"volume must be a positive number of µL, got {volume_ul}")
        increments = round(volume_ul / self.ul_per_increment)
        if increments < 1:
            raise PumpVolumeError(
                f"{volume_ul} µL is below one increment ({self.ul_per_increment:.4g} µL)"
            )
        return increments

    # -- reading the pump (nothing moves) --------------------------------------------------
    def _read_position(self) -> int:
        return self.session.query_int("?", 0, self.model.increments)

    def _read_valve(self) -> str:
        return self.session.report("?6", parse_valve_position)

    def _init_count(self) -> int | None:
        try:
            return self.session.query_int("?15", 0, 10**6)
        except (InvalidCommand, InvalidOperand, PumpCommunicationError):
            return None  # a model (or an emulator) without the counter: settle by position

    def _read_valve_type(self) -> ValveType | None:
        if self.model.valve_report is None:
            return None
        try:
            return parse_valve_report(self.session.query(self.model.valve_report))
        except (InvalidCommand, InvalidOperand, PumpCommunicationError):
            return None  # not reported: the configured ports stand

    def _read_speeds(self) -> None:
        top = self.model.top_speed_range_hz[1]
        self.speeds = SpeedSettings(
            start_hz=self.session.query_int("?1", 1, top),
            top_hz=self.session.query_int("?2", 1, top),
            cutoff_hz=self.session.query_int("?3", 1, top),
            slope_code=self.speeds.slope_code,
        )

    def connect(self) -> Reply:
        """Read the pump without moving it: ``Q``, valve type, plunger, valve and speeds.

        Returns:
            The (confirmed) ``Q`` answer.

        Raises:
            PumpConfigurationError: the pump reports a valve other than ``valve_ports``.
        """
        reply = self.session.status()
        self.valve_type = check_reported_valve(
            self._read_valve_type(), self.valve_ports, self.session.address
        )
        self._position_inc = self._read_position()
        self._valve = self._read_valve()
        self._read_speeds()  # how long a move it may still be making could take
        self._ready_known = False
        return reply

    # -- guarding ----------------------------------------------------------------------
    def _require_ready_to_move(self) -> None:
        if self._needs_reinit_reason is not None:
            raise ReinitRequired(
                f"refusing to move: {self._needs_reinit_reason}; call initialize()",
                address=self.session.address,
            )

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Book-keeping around an action: a fault locks the pump as its kind requires."""
        try:
            yield
        except PumpVolumeError:
            raise  # refused before anything was sent
        except PumpCommunicationError:
            self._ready_known = False
            self._needs_reinit_reason = (
                "the link failed during a command, so the plunger position is unknown "
                "(resume() re-reads it)"
            )
            raise
        except PumpError as exc:
            self._ready_known = False
            if exc.requires_reinit:
                self._initialized = False
                self._needs_reinit_reason = f"{type(exc).__name__}: {exc}"
            raise
        self._ready_known = True

    def _prepare(self, what: str, *, tolerate: frozenset[int] = frozenset()) -> None:
        """Before acting on a pump in an unknown state: wait until ready, re-read the plunger."""
        if self._ready_known:
            return
        longest = max(
            init_time_s(self.model.increments),
            move_time_s(self.model.increments, self.speeds, dispense=False),
        )
        self.session.wait_ready(longest, before=what, tolerate=tolerate)
        self._position_inc = self._read_position()

    # -- actions -----------------------------------------------------------------------
    def initialize(self, *, clockwise: bool = True) -> None:
        """Home plunger and valve (``Z``/``Y``), then read back position, valve and speeds.

        Homing pushes what the syringe holds out through the init's output port: the waste
        port when one is configured (``Z0,0,<waste>``), else the valve's last port (or its
        output on a valve without numbered ports). A caller whose output line ends over a
        plate moves it to waste first (:class:`~instruments.dispenser.PumpDispenser` does).
        The init is settled through the pump's init counter (``?15``), so it runs exactly
        once even when its block or answer is lost.
        """
        self.connect()
        letter = "Z" if clockwise else "Y"
        distribution = self.valve_type is None or self.valve_type.distribution
        operands = f"0,0,{self.waste_port}" if self.waste_port and distribution else ""
        out = self.init_output_port()
        with self._guard():
            self._prepare("initialise", tolerate=STALE_ON_INIT)
            before = self._position_inc
            count_before = self._init_count()

            def settle() -> bool:
                count = self._init_count() if count_before is not None else None
                if count is not None and count_before is not None:
                    return count > count_before
                return self._read_position() == 0

            predicted = init_time_s(self.model.increments)
            self.session.execute(f"{letter}{operands}R", predicted, init=True, settle=settle)
            self._initialized = True
            self._needs_reinit_reason = None
            self._position_inc = self._read_position()
            self._valve = self._read_valve()
            self._read_speeds()
        if before:
            self._emit("init", before, out)

    def init_output_port(self) -> str:
        """The valve position an initialisation pushes the syringe out through."""
        if self.valve_type is not None and not self.valve_type.distribution:
            return "o"
        if self.waste_port:
            return str(self.waste_port)
        return str(self.ports) if self.valve_type or self.valve_ports else "o"

    def resume(self) -> None:
        """Adopt a pump initialised earlier (e.g. by another process) without homing it.

        Reads ``Q``, the valve type, position and speeds. A pending re-init error keeps the
        pump locked; a pump that was never initialised answers moves with NotInitialized.
        """
        reply = self.connect()
        if reply.error_code in (1, 6, 7, 9, 10):
            self._needs_reinit_reason = f"pump reports error code {reply.error_code}"
            return
        self._initialized = True
        self._needs_reinit_reason = None

    def set_valve(self, port: ValvePort) -> None:
        """Turn the valve to "input", "output", "bypass", "extra" or numbered port 1..n."""
        self._require_ready_to_move()
        command = valve_command(port, self.ports, self.valve_type)
        target = valve_position(port)
        with self._guard():
            self._prepare("turning the valve")
            self.session.execute(
                command + "R", self._turn_time(), settle=lambda: self._settled_valve(target)
            )
        self._valve = target

    def _turn_time(self) -> float:
        return VALVE_TURN_S * max(self.ports // 2, 1)

    def aspirate(self, volume_ul: float, port: ValvePort | None = None) -> None:
        """Draw ``volume_ul`` (optionally turning the valve to ``port`` first)."""
        self._move(volume_ul, port, dispense=False)

    def dispense(self, volume_ul: float, port: ValvePort | None = None) -> None:
        """Push out ``volume_ul`` (optionally turning the valve to ``port`` first)."""
        self._move(volume_ul, port, dispense=True)

    def _move(self, volume_ul: float, port: ValvePort | None, *, dispense: bool) -> None:
        self._require_ready_to_move()
        increments = self._to_increments(volume_ul)
        valve = valve_command(port, self.ports, self.valve_type) if port is not None else ""
        valve_target = valve_position(port) if port is not None else None
        kind = "dispense" if dispense else "pickup"
        with self._guard():
            self._prepare(f"a {kind}")
            start = self._position_inc
            target = start + (-increments if dispense else increments)
            self._check_range(volume_ul, target, dispense)
            predicted = move_time_s(increments, self.speeds, dispense=dispense)
            if valve:
                predicted += self._turn_time()
            letter = "D" if dispense else "P"
            try:
                self.session.execute(
                    f"{valve}{letter}{increments}R",
                    predicted,
                    settle=lambda: self._settled_move(start, target),
                )
            except (PumpFirmwareError, PumpTimeout):
                self._report_partial(start, kind, valve_target or self._valve)
                raise
        self._position_inc = target
        self._valve = valve_target or self._valve
        self._emit(kind, increments, self._valve)

    def _check_range(self, volume_ul: float, target: int, dispense: bool) -> None:
        if not 0 <= target <= self.model.increments:
            held = self._position_inc * self.ul_per_increment
            verb = "dispense" if dispense else "aspirate"
            raise PumpVolumeError(
                f"cannot {verb} {volume_ul} µL: the syringe holds {held:.4g} µL "
                f"of {self.syringe_volume_ul:.4g} µL"
            )

    def _settled_move(self, start: int, target: int) -> bool:
        """Whether a plunger move ran: at the target (True), still at the start (False).

        The valve turn of the same string ran before the plunger moved (or the string
        stopped on a valve error, which ``Q`` reports), so the position settles both.
        """
        position = self._read_position()
        if position == start:
            return False
        if position != target:
            raise ReinitRequired(
                f"plunger position {position} differs from the expected {target} "
                f"(it was at {start})",
                address=self.session.address,
            )
        return True

    def _settled_valve(self, target: str) -> bool:
        """Whether a valve turn ran. A named position on a valve that reports port numbers
        cannot be checked (the firmware maps it to a port): any port number counts."""
        actual = self._read_valve()
        return actual == target or (not target.isdigit() and actual.isdigit())

    def _report_partial(self, start: int, kind: str, valve: str | None) -> None:
        """After a fault mid-move, tell listeners the part of the move that happened."""
        try:
            position = self._read_position()
        except PumpError:
            return
        self._position_inc = position
        if position != start and self._listeners:
            self._emit(kind, abs(position - start), valve, overloaded=True)

    def terminate(self) -> None:
        """Stop plunger moves (``T``); the pump must be initialised again."""
        self.session.terminate()
        self._needs_reinit_reason = "terminated"
        self._ready_known = False

    # -- listeners ---------------------------------------------------------------------
    def add_move_listener(self, listener: MoveListener) -> None:
        """Call ``listener(move)`` for every plunger move this driver has confirmed."""
        self._listeners.append(listener)

    def _emit(
        self, kind: str, increments: int, valve: str | None, overloaded: bool = False
    ) -> None:
        move = PlungerMove(
            address=self.address,
            kind=kind,  # type: ignore[arg-type]
            increments=increments,
            valve=valve or "?",
            increments_per_stroke=self.model.increments,
            overloaded=overloaded,
        )
        for listener in self._listeners:
            listener(move)

    # -- state -------------------------------------------------------------------------
    @property
    def position_ul(self) -> float:
        """The liquid volume in the syringe (plunger position × µL per increment)."""
        self._position_inc = self._read_position()
        return self._position_inc * self.ul_per_increment

    @property
    def speed_ul_per_s(self) -> float:
        """The top plunger speed as a flow rate (reads ``?2``)."""
        hz = self.session.query_int("?2", 1, self.model.top_speed_range_hz[1])
        return hz / 2 * self.ul_per_increment

    @speed_ul_per_s.setter
    def speed_ul_per_s(self, flow_ul_per_s: float) -> None:
        if not math.isfinite(flow_ul_per_s):
            raise PumpVolumeError(f"flow rate must be a finite number of µL/s, got {flow_ul_per_s}")
        hz = round(2 * flow_ul_per_s / self.ul_per_increment)
        low, high = self.model.top_speed_range_hz
        if not low <= hz <= high:
            raise PumpVolumeError(
                f"{flow_ul_per_s} µL/s needs V{hz}, outside {low}..{high} Hz for "
                f"{self.model.name} with a {self.syringe_volume_ul:g} µL syringe"
            )
        with self._guard():
            self._prepare("a speed change")
            self.session.execute(
                f"V{hz}R", 0.0, settle=lambda: self.session.query_int("?2", 1, high) == hz
            )
        self.speeds = SpeedSettings(
            start_hz=min(self.speeds.start_hz, hz),
            top_hz=hz,
            cutoff_hz=min(self.speeds.cutoff_hz, hz),
            slope_code=self.speeds.slope_code,
        )

    @property
    def valve(self) -> str | int:
        """The valve position: "input", "output", "bypass", "extra" or a port number."""
        return display(self._read_valve())

    def status(self) -> dict[str, Any]:
        """Ready flag, error code, position and valve (never raises on the pump's codes)."""
        reply = self.session.status()
        return {
            "address": self.address,
            "ready": reply.ready,
            "error_code": reply.error_code,
            "initialized": self._needs_reinit_reason is None,
            "needs_reinit": self._needs_reinit_reason,
            "position_ul": self.position_ul,
            "valve": self.valve,
        }

    def identify(self) -> dict[str, Any]:
        """Model, firmware (``&``), address, syringe, valve type and ports, position, state.

        Moves nothing (reads ``Q`` and reports only).
        """
        reply = self.connect()
        return {
            "model": self.model.name,
            "firmware": self.session.query("&"),
            "address": self.address,
            "protocol": self.session.protocol,
            "syringe_volume_ul": self.syringe_volume_ul,
            "valve_type": self.valve_type.name if self.valve_type else None,
            "valve_ports": self.ports if (self.valve_type or self.valve_ports) else None,
            "position_ul": self._position_inc * self.ul_per_increment,
            "valve": display(self._valve or "?"),
            "ready": reply.ready,
            "error_code": reply.error_code,
            "initialized": self._needs_reinit_reason is None,
        }

    def close(self) -> None:
        """Close the port if this pump opened it."""
        if self._owns_transport:
            self.transport.close()

    def __enter__(self) -> SyringePump:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
