"""Frontend: a syringe pump in lab units (µL, µL/s, valve ports).

Example:
    >>> pump = SyringePump("/dev/ttyUSB0", address=1, syringe_volume_ul=1000)  # doctest: +SKIP
    >>> pump.initialize(); pump.aspirate(250, port="input"); pump.dispense(250, port="output")

Volumes are checked before anything is sent. After an overload, an initialisation error or a
timeout the pump refuses further moves until :meth:`SyringePump.initialize` succeeds. Several
pumps on one RS-485 bus share a transport: ``bus = open_transport(url)`` and pass
``transport=bus`` to each pump.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from instruments.pumps.backend import PumpSession
from instruments.pumps.codec import Protocol, single_address
from instruments.pumps.errors import (
    PumpCommunicationError,
    PumpError,
    PumpVolumeError,
    ReinitRequired,
)
from instruments.pumps.models import (
    VALVE_TURN_S,
    SpeedSettings,
    get_model,
    init_time_s,
    move_time_s,
)
from instruments.pumps.transport import PumpTransport, SerialTransport

ValvePort = str | int
_NAMED_PORTS = {"input": "I", "output": "O", "bypass": "B", "extra": "E"}
_VALVE_NAMES = {"i": "input", "o": "output", "b": "bypass", "e": "extra"}


def valve_position(port: ValvePort) -> str:
    """A valve port as the firmware reports it (``?6``): "i", "o", "b", "e" or "<n>".

    ``6`` and ``"06"`` give "6"; ``"output"`` gives "o". Raises ValueError otherwise.
    """
    text = str(port).strip().lower()
    if isinstance(port, bool) or not (text.isdigit() or text in _NAMED_PORTS):
        raise ValueError(f"unknown valve port {port!r}")
    return str(int(text)) if text.isdigit() else _NAMED_PORTS[text].lower()


class SyringePump:
    """A Cavro XCalibur / XLP 6000 or Hamilton PSD/4 / PSD/6 syringe pump.

    Args:
        port_url: serial URL (``/dev/ttyUSB0``, pty path, ``socket://host:port``); ignored
            when ``transport`` is given.
        address: 1-15 (address switch 0-E), or 16 for a PSD on switch F.
        syringe_volume_ul: the fitted syringe (the pump cannot report it).
        protocol: "oem" (checksummed, recommended) or "dt".
        model: "xcalibur", "xlp6000", "psd4" or "psd6".
        baudrate: 9600 or 38400.
        transport: a shared transport (several pumps on one bus); not closed by :meth:`close`.
        valve_ports: number of ports of a distribution valve (numbered ports 1..n).
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
        valve_ports: int = 6,
        log_path: str | Path | None = None,
        **session_options: Any,
    ):
        if syringe_volume_ul <= 0:
            raise ValueError(f"syringe volume must be positive, got {syringe_volume_ul}")
        self.model_name = model
        self.model = get_model(model)
        self.syringe_volume_ul = float(syringe_volume_ul)
        self.valve_ports = valve_ports
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

    # -- units -------------------------------------------------------------------------
    @property
    def ul_per_increment(self) -> float:
        """µL moved per standard-mode increment."""
        return self.syringe_volume_ul / self.model.increments

    def _to_increments(self, volume_ul: float) -> int:
        if not volume_ul > 0:
            raise PumpVolumeError(f"volume must be positive, got {volume_ul} µL")
        increments = round(volume_ul / self.ul_per_increment)
        if increments < 1:
            raise PumpVolumeError(
                f"{volume_ul} µL is below one increment ({self.ul_per_increment:.4g} µL)"
            )
        return increments

    def _valve_command(self, port: ValvePort) -> str:
        if isinstance(port, str) and port.lower() in _NAMED_PORTS:
            return _NAMED_PORTS[port.lower()]
        if isinstance(port, int) and not isinstance(port, bool):
            if not 1 <= port <= self.valve_ports:
                raise PumpVolumeError(f"valve port {port} not in 1..{self.valve_ports}")
            return f"I{port}"
        raise PumpVolumeError(f"unknown valve port {port!r}")

    # -- guarding ----------------------------------------------------------------------
    def _require_ready_to_move(self) -> None:
        if self._needs_reinit_reason is not None:
            raise ReinitRequired(
                f"refusing to move: {self._needs_reinit_reason}; call initialize()",
                address=self.session.address,
            )

    def _run(self, command: str, predicted_s: float, *, init: bool = False) -> None:
        try:
            self.session.execute(command, predicted_s, init=init)
        except PumpCommunicationError:
            self._needs_reinit_reason = (
                "the link failed during a command, so the plunger position is unknown "
                "(resume() re-reads it)"
            )
            raise
        except PumpError as exc:
            if exc.requires_reinit:
                self._initialized = False
                self._needs_reinit_reason = f"{type(exc).__name__}: {exc}"
            raise

    # -- actions -----------------------------------------------------------------------
    def initialize(self, *, clockwise: bool = True) -> None:
        """Home plunger and valve (``Z``/``Y``), then read back the speeds."""
        predicted = init_time_s(
            self.model.increments if not self._initialized else self._position_inc
        )
        self._run("ZR" if clockwise else "YR", predicted, init=True)
        self._initialized = True
        self._needs_reinit_reason = None
        self._position_inc = int(self.session.query("?"))
        self._read_speeds()

    def resume(self) -> None:
        """Adopt a pump initialised earlier (e.g. by another process) without homing it.

        Reads ``Q``, the position and the speeds. A pending re-init error keeps the pump
        locked; a pump that was never initialised answers moves with NotInitialized.
        """
        reply = self.session.exchange("Q", idempotent=True)
        if reply.error_code in (1, 6, 7, 9, 10):
            self._needs_reinit_reason = f"pump reports error code {reply.error_code}"
            return
        self._position_inc = int(self.session.query("?"))
        self._read_speeds()
        self._initialized = True
        self._needs_reinit_reason = None

    def _read_speeds(self) -> None:
        self.speeds = SpeedSettings(
            start_hz=int(self.session.query("?1")),
            top_hz=int(self.session.query("?2")),
            cutoff_hz=int(self.session.query("?3")),
            slope_code=self.speeds.slope_code,
        )

    def set_valve(self, port: ValvePort) -> None:
        """Turn the valve to "input", "output", "bypass", "extra" or numbered port 1..n."""
        self._require_ready_to_move()
        command = self._valve_command(port)
        self._run(command + "R", VALVE_TURN_S * max(self.valve_ports // 2, 1))

    def aspirate(self, volume_ul: float, port: ValvePort | None = None) -> None:
        """Draw ``volume_ul`` (optionally turning the valve to ``port`` first)."""
        self._move(volume_ul, port, dispense=False)

    def dispense(self, volume_ul: float, port: ValvePort | None = None) -> None:
        """Push out ``volume_ul`` (optionally turning the valve to ``port`` first)."""
        self._move(volume_ul, port, dispense=True)

    def _move(self, volume_ul: float, port: ValvePort | None, *, dispense: bool) -> None:
        self._require_ready_to_move()
        increments = self._to_increments(volume_ul)
        valve = self._valve_command(port) if port is not None else ""
        target = self._position_inc + (-increments if dispense else increments)
        if not 0 <= target <= self.model.increments:
            held = self._position_inc * self.ul_per_increment
            verb = "dispense" if dispense else "aspirate"
            raise PumpVolumeError(
                f"cannot {verb} {volume_ul} µL: the syringe holds {held:.4g} µL "
                f"of {self.syringe_volume_ul:.4g} µL"
            )
        predicted = move_time_s(increments, self.speeds, dispense=dispense)
        if valve:
            predicted += VALVE_TURN_S * max(self.valve_ports // 2, 1)
        letter = "D" if dispense else "P"
        self._run(f"{valve}{letter}{increments}R", predicted)
        self._verify_position(target)

    def _verify_position(self, expected: int) -> None:
        actual = int(self.session.query("?"))
        self._position_inc = actual
        if actual != expected:
            self._initialized = False
            self._needs_reinit_reason = f"plunger at {actual}, expected {expected}"
            raise ReinitRequired(
                f"plunger position {actual} differs from the expected {expected}",
                address=self.session.address,
            )

    def terminate(self) -> None:
        """Stop plunger moves (``T``); the pump must be initialised again."""
        self.session.terminate()
        self._needs_reinit_reason = "terminated"

    # -- state -------------------------------------------------------------------------
    @property
    def position_ul(self) -> float:
        """The liquid volume in the syringe (plunger position × µL per increment)."""
        self._position_inc = int(self.session.query("?"))
        return self._position_inc * self.ul_per_increment

    @property
    def speed_ul_per_s(self) -> float:
        """The top plunger speed as a flow rate (reads ``?2``)."""
        hz = int(self.session.query("?2"))
        return hz / 2 * self.ul_per_increment

    @speed_ul_per_s.setter
    def speed_ul_per_s(self, flow_ul_per_s: float) -> None:
        hz = round(2 * flow_ul_per_s / self.ul_per_increment)
        low, high = self.model.top_speed_range_hz
        if not low <= hz <= high:
            raise PumpVolumeError(
                f"{flow_ul_per_s} µL/s needs V{hz}, outside {low}..{high} Hz for "
                f"{self.model.name} with a {self.syringe_volume_ul:g} µL syringe"
            )
        self._run(f"V{hz}R", 0.0)
        self.speeds = SpeedSettings(
            start_hz=min(self.speeds.start_hz, hz),
            top_hz=hz,
            cutoff_hz=min(self.speeds.cutoff_hz, hz),
            slope_code=self.speeds.slope_code,
        )

    @property
    def valve(self) -> str | int:
        """The valve position: "input", "output", "bypass", "extra" or a port number."""
        raw = self.session.query("?6").strip()
        return int(raw) if raw.isdigit() else _VALVE_NAMES.get(raw.lower(), raw)

    def status(self) -> dict[str, Any]:
        """Ready flag, error code and position from ``Q`` and ``?`` (never raises on codes)."""
        reply = self.session.exchange("Q", idempotent=True)
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
        """Model, firmware version (``&``), address, syringe, position and valve."""
        return {
            "model": self.model.name,
            "firmware": self.session.query("&"),
            "address": self.address,
            "protocol": self.session.protocol,
            "syringe_volume_ul": self.syringe_volume_ul,
            "position_ul": self.position_ul,
            "valve": self.valve,
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
