"""The pumps' firmware: command strings, motion, errors and reports (no transport here).

Semantics follow the XCalibur manual (see ``/work/shared/reference/syringe-pump-protocols.md``):
immediate errors (2, 3, 7, 15) come back in the answer to the offending block and are not
repeated by ``Q``; run-time errors (3 for a later operand, 9, 10, 11) stop the string and are
reported by ``Q``; 1, 7, 9 and 10 persist until an initialisation. While busy, only reports,
``Q``, ``T`` and ``V`` are accepted (others answer 15). A repeated OEM block (repeat flag, same
sequence number as the last block the pump received) is acknowledged and not executed again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from instruments.pumps.codec import (
    MULTI_ADDRESSES,
    HostBlock,
    members_of,
    single_address,
    status_byte,
)
from instruments.pumps.models import (
    SPEED_CODES_HZ,
    VALVE_TURN_S,
    VALVE_TYPES,
    SpeedSettings,
    distribution_valve_code,
    get_model,
    init_time_s,
    move_time_s,
)
from instruments.pumps.moves import PlungerMove
from simulators.pump_emulator.state import FAULT_KINDS, PumpState, ScheduledFault

_TOKEN = re.compile(r"([A-Za-z?&#*%^])(\d+(?:,\d+)*)?")
_REPORT_LETTERS = set("?&#*%FQ")
_PLUNGER = set("AaPpDd")
_VALVE = set("IOBE")
_CLEARED_BY_NEXT_COMMAND = frozenset({2, 3, 11, 15})
_KNOWN = set("ZYWwzkIOBEAaPpDdvVScLKNURXMHTJsehgG") | _REPORT_LETTERS

log = logging.getLogger(__name__)


class _Immediate(Exception):
    def __init__(self, code: int):
        self.code = code


class PumpFirmware:
    """The firmware of the pumps on one bus, driven block by block.

    Args:
        addresses: driver addresses (1-15, 16 = '@' on PSD models) of the pumps on the bus.
        model: "xcalibur", "xlp6000", "psd4" or "psd6".
        valve_ports: ports of the distribution valve.
        time_scale: multiplies every move time (0.001 for tests).
        firmware: the ``&`` answer.
        pump_models: per-address model overriding ``model`` (its stroke length); the bus's
            protocol details (speed ranges, address '@') follow ``model``.
        pump_valve_ports: per-address valve ports overriding ``valve_ports``.
        pump_valve_types: per-address ``U`` valve code (see
            :data:`~instruments.pumps.models.VALVE_TYPES`); default: the distribution valve
            with that many ports, when the table has one.
    """

    def __init__(
        self,
        addresses: tuple[int, ...] = (1,),
        *,
        model: str = "xcalibur",
        valve_ports: int = 6,
        time_scale: float = 1.0,
        firmware: str = "XCalibur-emu 1.0",
        pump_models: Mapping[int, str] | None = None,
        pump_valve_ports: Mapping[int, int] | None = None,
        pump_valve_types: Mapping[int, int] | None = None,
    ):
        self.model = get_model(model)
        self.model_name = model
        self.time_scale = time_scale
        self.firmware = firmware
        self.pumps: dict[str, PumpState] = {}
        self._numbers: dict[str, int] = {}
        for number in addresses:
            char = single_address(number, model=model)
            increments = get_model((pump_models or {}).get(number, model)).increments
            ports = (pump_valve_ports or {}).get(number, valve_ports)
            code = (pump_valve_types or {}).get(number)
            self.pumps[char] = _new_state(char, increments, ports, code)
            self._numbers[char] = number
        self._listeners: list[Callable[[PlungerMove], None]] = []
        self._scheduled: list[ScheduledFault] = []
        self.listener_errors: list[str] = []
        self.motion_s = 0.0  # unscaled: what the moves would take on real pumps
        self.protocol_lock: str | None = None

    # -- fault injection and listeners ---------------------------------------------------
    @property
    def addresses(self) -> list[int]:
        """The driver addresses of the pumps on the bus."""
        return list(self._numbers.values())

    def pump(self, address: int) -> PumpState:
        """The state of the pump at a driver address."""
        return self.pumps[single_address(address, model=self.model_name)]

    def inject_overload(self, address: int, kind: str = "plunger") -> None:
        """Make the next plunger ("plunger") or valve ("valve") move overload."""
        self.pump(address).inject_overload = kind

    def inject_stuck(self, address: int) -> None:
        """Make the next plunger move stay busy until ``T``."""
        self.pump(address).inject_stuck = True

    def inject_init_failure(self, address: int) -> None:
        """Make the next initialisation fail (error 1, cleared only by a successful init)."""
        self.pump(address).inject_init_failure = True

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

    def _notify(
        self, state: PumpState, kind: str, increments: int, overloaded: bool, valve: str
    ) -> None:
        move = PlungerMove(
            address=self._numbers[state.address],
            kind=kind,  # type: ignore[arg-type]
            increments=increments,
            valve=valve,
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

    # -- blocks ----------------------------------------------------------------------------
    def execute_block(self, block: HostBlock) -> tuple[int, str] | None:
        """Execute one host block; (status byte, data) of its answer, or None for no answer."""
        if self.protocol_lock is None or (
            self.protocol_lock == "dt" and block.protocol == "oem" and self.model_name != "xlp6000"
        ):
            self.protocol_lock = block.protocol
        if block.protocol != self.protocol_lock:
            return None
        if block.address in MULTI_ADDRESSES:
            for member in members_of(block.address):
                if member in self.pumps:
                    self._answer_for(self.pumps[member], block)
            return None
        state = self.pumps.get(block.address)
        if state is None:
            return None
        return self._answer_for(state, block)

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
            return arg is not None and bounds[0] <= arg <= bounds[1]
        if letter in "IO" and arg is not None:
            return state.distribution and 1 <= arg <= state.valve_ports
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
                ok, dt = self._init(state, letter, args)
                duration += dt
                if not ok:
                    break
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
            elif letter in "vVcLS":
                self._set_speed(state, letter, arg)
        state.busy_until = now + duration * self.time_scale
        self.motion_s += duration

    def _init(self, state: PumpState, letter: str, args: list[int]) -> tuple[bool, float]:
        """Home the plunger (pushing the syringe out through the init's output port)."""
        speed = args[0] if args and 10 <= args[0] <= 40 else None
        duration = init_time_s(state.position, speed)
        if state.inject_init_failure:
            state.inject_init_failure = False
            state.initialized, state.pending_error = False, 1
            return False, duration / 2
        if state.position:
            out = state.init_output(args) if letter != "W" else state.valve
            self._notify(state, "init", state.position, False, out)
        state.initialized, state.position, state.error = True, 0, 0
        state.valve = "i" if letter != "W" else state.valve
        state.init_count += 1
        return True, duration

    def _set_speed(self, state: PumpState, letter: str, arg: int) -> None:
        if letter == "S":
            top = SPEED_CODES_HZ[arg]
            state.speeds = SpeedSettings(
                min(state.speeds.start_hz, top),
                top,
                min(state.speeds.cutoff_hz, top),
                state.speeds.slope_code,
            )
            return
        key = {"v": "start_hz", "V": "top_hz", "c": "cutoff_hz", "L": "slope_code"}[letter]
        state.speeds = replace(state.speeds, **{key: arg})

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
        overloaded = state.inject_overload == "plunger"
        if overloaded:
            state.inject_overload = None
            distance = int(distance / 2)  # toward zero: the plunger stalls half-way
            state.initialized = False
            state.pending_error = 9
            duration /= 2
        state.position += distance
        if distance > 0:
            state.aspirated += distance
        else:
            state.dispensed -= distance
        if not overloaded:
            self._count_scheduled(state)
        if distance:
            kind = "pickup" if distance > 0 else "dispense"
            self._notify(state, kind, abs(distance), overloaded, state.valve)
        return not overloaded, duration

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
            if self.model.valve_report == "?76" and state.valve_type is not None:
                values[76] = state.valve_type.code
            if number not in values:
                raise _Immediate(3)
            return str(values[number])
        return {"&": self.firmware, "F": str(int(bool(state.buffer))), "*": "255",
                "#": "1234", "%": str(state.valve_moves)}[letter]  # fmt: skip


def _new_state(char: str, increments: int, ports: int, code: int | None) -> PumpState:
    if code is None:
        code = distribution_valve_code(ports)
        valve_type = VALVE_TYPES.get(code) if code is not None else None
        return PumpState(char, increments, ports, valve_type=valve_type, distribution=True)
    if code not in VALVE_TYPES:
        raise ValueError(f"unknown valve type code U{code}; known: {sorted(VALVE_TYPES)}")
    valve_type = VALVE_TYPES[code]
    return PumpState(
        char, increments, valve_type.ports, valve_type=valve_type,
        distribution=valve_type.distribution,
    )  # fmt: skip


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
