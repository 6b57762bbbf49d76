"""Firmware emulator for Cavro XCalibur / XLP 6000 and Hamilton PSD/4 / PSD/6 syringe pumps.

Serves the real serial protocol on a pseudo-terminal (``.port`` is the pty path to open with
pyserial) or on TCP (``.port`` is ``socket://127.0.0.1:PORT``), so the production driver runs
unchanged against it. Both framings are understood; like the XCalibur it locks onto OEM once
it sees an OEM block (the XLP 6000 locks onto whichever it sees first). Several pumps can
share the bus; multi-pump addresses execute without an answer.

Per pump: initialised flag, plunger position, valve, speeds, persistent error, busy-until
time. Moves take the appendix-B time scaled by ``time_scale``. While busy, action, set and
valve commands answer error 15. A repeated OEM block (repeat flag, same sequence number) is
acknowledged and not executed again. Faults are injected with seeded probabilities (dropped
and garbled answers), one-shot (overload on the next move, stuck busy, dropped answers), or
scheduled after a number of plunger moves (:meth:`PumpEmulator.schedule_fault`).

Physics hook: every executed plunger move (and every initialisation, which homes the plunger)
is reported to the listeners added with :meth:`PumpEmulator.add_move_listener` as a
:class:`PlungerMove`, from the serving thread, before the answer is sent. A repeated OEM block
that is acknowledged without executing reports nothing, so a listener sees each physical move
exactly once (``simulators.fluidics`` uses this to move liquid in the simulated lab).
"""

from __future__ import annotations

import logging
import os
import random
import re
import select
import socket
import threading
import time
import tty
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from instruments.pumps.codec import (
    MULTI_ADDRESSES,
    HostBlock,
    encode_reply,
    members_of,
    single_address,
    status_byte,
    take_host_block,
)
from instruments.pumps.models import (
    SPEED_CODES_HZ,
    VALVE_TURN_S,
    SpeedSettings,
    get_model,
    init_time_s,
    move_time_s,
)

_TOKEN = re.compile(r"([A-Za-z?&#*%^])(\d+(?:,\d+)*)?")
_REPORT_LETTERS = set("?&#*%FQ")
_PLUNGER = set("AaPpDd")
_VALVE = set("IOBE")
_CLEARED_BY_NEXT_COMMAND = frozenset({2, 3, 11, 15})
_KNOWN = set("ZYWwzkIOBEAaPpDdvVScLKNURXMHTJsehgG") | _REPORT_LETTERS
FAULT_KINDS = ("plunger", "valve", "stuck")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlungerMove:
    """One executed plunger movement, as the liquid sees it.

    Attributes:
        address: the driver address of the pump (1-15, 16 for '@').
        kind: "pickup" (plunger down: liquid drawn in through the valve), "dispense" (plunger
            up: liquid pushed out through the valve) or "init" (the plunger homed by Z/Y/W,
            pushing out whatever the syringe held).
        increments: standard-mode increments actually travelled (>= 0; an overloaded move
            travels only part of the way).
        valve: the valve position during the move: "i", "o", "b", "e" or a port number.
        increments_per_stroke: the pump's full stroke (3000 or 6000).
        overloaded: the move stopped on a plunger overload.
    """

    address: int
    kind: Literal["pickup", "dispense", "init"]
    increments: int
    valve: str
    increments_per_stroke: int
    overloaded: bool = False


@dataclass
class ScheduledFault:
    """A fault that fires on the plunger move after ``after_moves`` more successful ones."""

    kind: str
    after_moves: int
    address: int | None = None


@dataclass
class FaultConfig:
    """Seeded fault probabilities per answer."""

    drop_reply: float = 0.0
    garble_reply: float = 0.0
    seed: int = 0


@dataclass
class PumpState:
    """Firmware state of one emulated pump (positions in standard increments)."""

    address: str
    increments: int
    valve_ports: int
    initialized: bool = False
    position: int = 0
    valve: str = "i"
    speeds: SpeedSettings = field(default_factory=SpeedSettings)
    error: int = 0
    busy_until: float = 0.0
    pending_error: int = 0
    stuck: bool = False
    buffer: str = ""
    last_sequence: int = 0
    last_answer_error: int = 0
    plunger_moves: int = 0
    valve_moves: int = 0
    init_count: int = 0
    aspirated: int = 0
    dispensed: int = 0
    inject_overload: str | None = None
    inject_stuck: bool = False

    def busy(self, now: float) -> bool:
        if self.stuck:
            return True
        if now >= self.busy_until and self.pending_error:
            self.error, self.pending_error = self.pending_error, 0
        return now < self.busy_until


class _Immediate(Exception):
    def __init__(self, code: int):
        self.code = code


class PumpEmulator:
    """Emulated pumps on one serial bus.

    Args:
        addresses: driver addresses (1-15, 16 = '@' on PSD models) of the pumps on the bus.
        model: "xcalibur", "xlp6000", "psd4" or "psd6".
        valve_ports: ports of the distribution valve.
        time_scale: multiplies every move time (0.001 for tests).
        transport: "pty" or "tcp".
        faults: seeded dropped/garbled answer probabilities.
        firmware: the ``&`` answer.
        pump_models: per-address model overriding ``model`` (its stroke length); the bus's
            protocol details (speed ranges, address '@') follow ``model``.
        pump_valve_ports: per-address valve ports overriding ``valve_ports``.
    """

    def __init__(
        self,
        addresses: tuple[int, ...] = (1,),
        *,
        model: str = "xcalibur",
        valve_ports: int = 6,
        time_scale: float = 1.0,
        transport: str = "pty",
        faults: FaultConfig | None = None,
        firmware: str = "XCalibur-emu 1.0",
        pump_models: Mapping[int, str] | None = None,
        pump_valve_ports: Mapping[int, int] | None = None,
    ):
        self.model = get_model(model)
        self.model_name = model
        self.time_scale = time_scale
        self.firmware = firmware
        self.faults = faults or FaultConfig()
        self._rng = random.Random(self.faults.seed)
        self.pumps: dict[str, PumpState] = {}
        self._numbers: dict[str, int] = {}
        pump_models = dict(pump_models or {})
        pump_valve_ports = dict(pump_valve_ports or {})
        for number in addresses:
            char = single_address(number, model=model)
            increments = get_model(pump_models.get(number, model)).increments
            ports = pump_valve_ports.get(number, valve_ports)
            self.pumps[char] = PumpState(char, increments, ports)
            self._numbers[char] = number
        self._listeners: list[Callable[[PlungerMove], None]] = []
        self._scheduled: list[ScheduledFault] = []
        self.listener_errors: list[str] = []
        self.motion_s = 0.0  # unscaled: what the moves would take on real pumps
        self.protocol_lock: str | None = None
        self.dropped = 0
        self.garbled = 0
        self._drop_next = 0
        self._stop = threading.Event()
        self._kind = transport
        self._inbuf = bytearray()
        if transport == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            tty.setraw(self._master)
            self.port = os.ttyname(self._slave)
        elif transport == "tcp":
            self._server = socket.create_server(("127.0.0.1", 0))
            self._server.settimeout(0.05)
            self.port = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        else:
            raise ValueError(f"transport must be 'pty' or 'tcp', got {transport!r}")
        self._thread = threading.Thread(target=self._serve, name="pump-emulator", daemon=True)
        self._thread.start()

    def driver_options(self) -> dict[str, float]:
        """:class:`~instruments.pumps.backend.PumpSession` settings matched to this emulator.

        It answers in well under a millisecond, so timeouts and delays shrink from the real
        pump's 100 ms scale; predicted move times are scaled by ``time_scale``.
        """
        return {
            "reply_timeout_s": 0.03,
            "retry_delay_s": 0.005,
            "poll_interval_s": 0.002,
            "deadline_margin_s": 0.3,
            "time_scale": self.time_scale,
        }

    # -- fault injection ----------------------------------------------------------------
    def pump(self, address: int) -> PumpState:
        """The state of the pump at a driver address."""
        return self.pumps[single_address(address, model=self.model_name)]

    def inject_overload(self, address: int, kind: str = "plunger") -> None:
        """Make the next plunger ("plunger") or valve ("valve") move overload."""
        self.pump(address).inject_overload = kind

    def inject_stuck(self, address: int) -> None:
        """Make the next plunger move stay busy until ``T``."""
        self.pump(address).inject_stuck = True

    def schedule_fault(self, kind: str, after_moves: int, address: int | None = None) -> None:
        """Fault the plunger move that follows ``after_moves`` more successful plunger moves.

        Args:
            kind: "plunger" (overload, error 9, the plunger stops half-way), "valve" (the
                valve overloads, error 10, before the plunger moves) or "stuck" (busy until T).
            after_moves: successful plunger moves (on ``address``, or on any pump) to let
                through first; 0 faults the very next move.
            address: the pump to fault; None faults whichever pump moves next.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {kind!r}")
        if after_moves < 0:
            raise ValueError(f"after_moves must be >= 0, got {after_moves}")
        self._scheduled.append(ScheduledFault(kind, after_moves, address))

    def add_move_listener(self, listener: Callable[[PlungerMove], None]) -> None:
        """Call ``listener(move)`` for every executed plunger move and initialisation.

        Listeners run on the serving thread before the pump answers; an exception is logged
        and recorded in :attr:`listener_errors`, never fatal to the emulator.
        """
        self._listeners.append(listener)

    def _notify(self, state: PumpState, kind: str, increments: int, overloaded: bool) -> None:
        move = PlungerMove(
            address=self._numbers[state.address],
            kind=kind,  # type: ignore[arg-type]
            increments=increments,
            valve=state.valve,
            increments_per_stroke=state.increments,
            overloaded=overloaded,
        )
        for listener in self._listeners:
            try:
                listener(move)
            except Exception as exc:  # a broken listener must not kill the firmware
                log.exception("pump emulator move listener failed")
                self.listener_errors.append(f"{type(exc).__name__}: {exc}")

    def _due_fault(self, state: PumpState) -> str | None:
        """Take the scheduled fault due on this pump's next plunger move, if any."""
        number = self._numbers[state.address]
        for fault in list(self._scheduled):
            if fault.after_moves == 0 and fault.address in (None, number):
                self._scheduled.remove(fault)
                return fault.kind
        return None

    def _count_scheduled(self, state: PumpState) -> None:
        number = self._numbers[state.address]
        for fault in self._scheduled:
            if fault.address in (None, number) and fault.after_moves > 0:
                fault.after_moves -= 1

    def drop_next_replies(self, count: int = 1) -> None:
        """Execute the next ``count`` blocks but send no answer."""
        self._drop_next += count

    # -- serving -------------------------------------------------------------------------
    def _serve(self) -> None:
        if self._kind == "pty":
            master = self._master
            self._serve_channel(
                master, lambda: os.read(master, 4096), lambda d: os.write(master, d)
            )
            return
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                self._serve_channel(conn.fileno(), lambda c=conn: c.recv(4096), conn.sendall)

    def _serve_channel(self, fileno: int, read: Callable[[], bytes], write: Callable) -> None:
        self._inbuf.clear()
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([fileno], [], [], 0.05)
                if not readable:
                    continue
                data = read()
            except OSError:
                return
            if not data:
                return
            self._inbuf.extend(data)
            while (block := take_host_block(self._inbuf)) is not None:
                answer = self.handle_block(block)
                if answer:
                    try:
                        write(answer)
                    except OSError:
                        return

    def close(self) -> None:
        """Stop serving and release the pty or socket."""
        self._stop.set()
        self._thread.join(timeout=2)
        if self._kind == "pty":
            os.close(self._master)
            os.close(self._slave)
        else:
            self._server.close()

    def __enter__(self) -> PumpEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- protocol --------------------------------------------------------------------------
    def handle_block(self, block: HostBlock) -> bytes:
        """Execute one host block; return the answer bytes (b"" for none)."""
        if self.protocol_lock is None or (
            self.protocol_lock == "dt" and block.protocol == "oem" and self.model_name != "xlp6000"
        ):
            self.protocol_lock = block.protocol
        if block.protocol != self.protocol_lock:
            return b""
        if block.address in MULTI_ADDRESSES:
            for member in members_of(block.address):
                if member in self.pumps:
                    self._answer_for(self.pumps[member], block)
            return b""
        state = self.pumps.get(block.address)
        if state is None:
            return b""
        status, data = self._answer_for(state, block)
        return self._faulty(encode_reply(block.protocol, status, data.encode("ascii")))

    def _faulty(self, answer: bytes) -> bytes:
        if self._drop_next:
            self._drop_next -= 1
            self.dropped += 1
            return b""
        roll = self._rng.random()
        if roll < self.faults.drop_reply:
            self.dropped += 1
            return b""
        if roll < self.faults.drop_reply + self.faults.garble_reply:
            self.garbled += 1
            damaged = bytearray(answer)
            damaged[self._rng.randrange(len(damaged))] ^= 1 << self._rng.randrange(8)
            return bytes(damaged)
        return answer

    def _answer_for(self, state: PumpState, block: HostBlock) -> tuple[int, str]:
        now = time.monotonic()
        if block.protocol == "oem" and block.repeat and block.sequence == state.last_sequence:
            if not _is_report(block.command):
                return status_byte(not state.busy(now), state.last_answer_error), ""
        state.last_sequence = block.sequence
        try:
            data = self._run_string(state, block.command, now)
            code = 0
        except _Immediate as exc:
            data, code = "", exc.code
        if not _is_report(block.command):
            state.last_answer_error = code
        busy = state.busy(now)
        return status_byte(not busy, code or state.error), data

    def _run_string(self, state: PumpState, command: str, now: float) -> str:
        tokens = _tokenize(command)
        if len(tokens) == 1 and tokens[0][0] in _REPORT_LETTERS:
            return self._report(state, *tokens[0], now)
        busy = state.busy(now)
        letters = "".join(t[0] for t in tokens)
        if letters in ("T", "TR"):
            self._terminate(state, now)
            return ""
        if busy and letters in ("V", "VR"):
            if not self._operand_ok(state, "V", tokens[0][1]):
                raise _Immediate(3)
            state.speeds = replace(state.speeds, top_hz=tokens[0][1][0])
            return ""
        if busy:
            raise _Immediate(15)
        self._validate(state, tokens)
        if letters.endswith("R") and len(letters) > 1:
            state.buffer = command[: command.rindex("R")]
        elif letters not in ("R", "X"):
            state.buffer = command
            return ""
        self._execute(state, _tokenize(state.buffer), now)
        return ""

    def _validate(self, state: PumpState, tokens: list[tuple[str, list[int]]]) -> None:
        """Immediate errors: unknown letters (2), not initialised (7), the FIRST operand (3).

        Operands of later commands in a string are checked at run time (see _execute).
        """
        for index, (letter, args) in enumerate(tokens):
            if letter not in _KNOWN or letter in "gG":
                raise _Immediate(2)
            if (letter in _PLUNGER or letter in _VALVE) and not state.initialized:
                raise _Immediate(7)
            if index == 0 and not self._operand_ok(state, letter, args):
                raise _Immediate(3)

    def _operand_ok(self, state: PumpState, letter: str, args: list[int]) -> bool:
        arg = args[0] if args else None
        ranges = {
            "V": self.model.top_speed_range_hz,
            "v": self.model.start_speed_range_hz,
            "c": self.model.cutoff_speed_range_hz,
            "S": self.model.speed_code_range,
            "L": (1, 20),
        }
        if letter in _PLUNGER or letter in ranges:
            bounds = ranges.get(letter, (0, state.increments))
            return arg is not None and _in(bounds, arg)
        if letter in "IO" and arg is not None:
            return 1 <= arg <= state.valve_ports
        return True

    def _execute(self, state: PumpState, tokens: list[tuple[str, list[int]]], now: float) -> None:
        duration = 0.0
        if state.error in _CLEARED_BY_NEXT_COMMAND:
            state.error = 0
        for letter, args in tokens:
            arg = args[0] if args else 0
            if not self._operand_ok(state, letter, args):
                state.pending_error = 3
                break
            if letter in "ZYW":
                speed = arg if 10 <= arg <= 40 else None
                duration += init_time_s(state.position, speed)
                if state.position:
                    self._notify(state, "init", state.position, False)
                state.initialized, state.position, state.error = True, 0, 0
                state.valve = "i" if letter != "W" else state.valve
                state.init_count += 1
            elif letter in "wz":
                state.initialized = True
            elif letter in _VALVE:
                if state.inject_overload == "valve":
                    state.inject_overload = None
                    state.initialized = False
                    state.pending_error = 10
                    break
                new = str(arg) if args else letter.lower()
                duration += VALVE_TURN_S if new != state.valve else 0.0
                state.valve = new
                state.valve_moves += 1
            elif letter in _PLUNGER:
                ok, dt = self._plunger(state, letter, arg)
                duration += dt
                if not ok:
                    break
            elif letter == "M":
                duration += arg / 1000.0
            elif letter in "vVcL":
                key = {"v": "start_hz", "V": "top_hz", "c": "cutoff_hz", "L": "slope_code"}
                state.speeds = replace(state.speeds, **{key[letter]: arg})
            elif letter == "S":
                top = SPEED_CODES_HZ[arg]
                state.speeds = SpeedSettings(
                    min(state.speeds.start_hz, top),
                    top,
                    min(state.speeds.cutoff_hz, top),
                    state.speeds.slope_code,
                )
        state.busy_until = now + duration * self.time_scale
        self.motion_s += duration

    def _plunger(self, state: PumpState, letter: str, arg: int) -> tuple[bool, float]:
        """Run one plunger move; returns (continue the string?, duration)."""
        due = self._due_fault(state)
        if due == "valve":  # the valve jams while turning for this move
            state.initialized = False
            state.pending_error = 10
            return False, VALVE_TURN_S
        if due == "stuck":
            state.inject_stuck = True
        elif due == "plunger":
            state.inject_overload = "plunger"
        if state.valve == "b":
            state.pending_error = 11
            return False, 0.0
        up = letter in "Dd"
        target = arg if letter in "Aa" else state.position + (-arg if up else arg)
        if not 0 <= target <= state.increments:
            state.pending_error = 3
            return False, 0.0
        distance = target - state.position
        duration = move_time_s(distance, state.speeds, dispense=distance < 0)
        if state.inject_stuck:
            state.inject_stuck = False
            state.stuck = True
            return False, duration
        state.plunger_moves += 1
        kind = "pickup" if distance > 0 else "dispense"
        if state.inject_overload == "plunger":
            state.inject_overload = None
            moved = int(distance / 2)  # toward zero: the plunger stalls half-way
            state.position += moved
            if moved > 0:
                state.aspirated += moved
            else:
                state.dispensed -= moved
            state.initialized = False
            state.pending_error = 9
            if moved:
                self._notify(state, kind, abs(moved), True)
            return False, duration / 2
        state.position = target
        if distance > 0:
            state.aspirated += distance
        else:
            state.dispensed -= distance
        self._count_scheduled(state)
        if distance:
            self._notify(state, kind, abs(distance), False)
        return True, duration

    def _terminate(self, state: PumpState, now: float) -> None:
        state.stuck = False
        state.busy_until = min(state.busy_until, now)

    def _report(self, state: PumpState, letter: str, args: list[int], now: float) -> str:
        state.busy(now)
        if letter == "Q":
            return ""
        number = args[0] if args else None
        if letter == "?":
            values = {
                None: state.position,
                1: state.speeds.start_hz,
                2: state.speeds.top_hz,
                3: state.speeds.cutoff_hz,
                4: state.position,
                6: state.valve,
                10: int(bool(state.buffer)),
                15: state.init_count,
                16: state.plunger_moves,
                17: state.valve_moves,
                22: 255,
                23: self.firmware,
            }
            if number not in values:
                raise _Immediate(3)
            return str(values[number])
        return {"&": self.firmware, "F": str(int(bool(state.buffer))), "*": "255",
                "#": "1234", "%": str(state.valve_moves)}[letter]  # fmt: skip


def _in(bounds: tuple[int, int], value: int) -> bool:
    return bounds[0] <= value <= bounds[1]


def _tokenize(command: str) -> list[tuple[str, list[int]]]:
    tokens: list[tuple[str, list[int]]] = []
    position = 0
    while position < len(command):
        match = _TOKEN.match(command, position)
        if match is None:
            raise _Immediate(2)
        args = [int(a) for a in match.group(2).split(",")] if match.group(2) else []
        tokens.append((match.group(1), args))
        position = match.end()
    return tokens


def _is_report(command: str) -> bool:
    return bool(command) and command[0] in _REPORT_LETTERS
