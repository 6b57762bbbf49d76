"""Firmware emulator for Cavro XCalibur / XLP 6000 and Hamilton PSD/4 / PSD/6 syringe pumps.

Serves the real serial protocol on a pseudo-terminal (``.port`` is the pty path to open with
pyserial) or on TCP (``.port`` is ``socket://127.0.0.1:PORT``), so the production driver runs
unchanged against it. Both framings are understood; like the XCalibur it locks onto OEM once
it sees an OEM block (the XLP 6000 locks onto whichever it sees first). Several pumps can
share the bus; multi-pump addresses execute without an answer. Run one on its own with
``python -m simulators.pump_emulator`` (see ``--help``).

Per pump: initialised flag, plunger position, valve (type, ports), speeds, persistent error,
busy-until time. Moves take the appendix-B time scaled by ``time_scale``. While busy, action,
set and valve commands answer error 15. A repeated OEM block (repeat flag, same sequence
number) is acknowledged and not executed again. An initialisation homes the plunger, pushing
what the syringe holds out through the init's output port (port X, or the ``Z`` operand).

Faults: seeded probabilities (dropped and garbled answers, lost requests); one-shot (overload
on the next move, stuck busy, failed initialisation, dropped answers, lost requests, a chosen
bit of the next answer flipped); or scheduled after a number of plunger moves
(:meth:`PumpEmulator.schedule_fault`).

Physics hook: every executed plunger move (and every initialisation that pushes liquid) is
reported to the listeners added with :meth:`PumpEmulator.add_move_listener` as a
:class:`~instruments.pumps.moves.PlungerMove`, from the serving thread, before the answer is
sent. A repeated OEM block that is acknowledged without executing reports nothing, so a
listener sees each physical move exactly once (``simulators.fluidics`` uses this to move liquid
in the simulated lab).
"""

from __future__ import annotations

from instruments.pumps.moves import PlungerMove
from simulators.pump_emulator.firmware import PumpFirmware
from simulators.pump_emulator.server import PumpEmulator
from simulators.pump_emulator.state import (
    FAULT_KINDS,
    FaultConfig,
    PumpState,
    ReplyCorruption,
    ScheduledFault,
)

__all__ = [
    "FAULT_KINDS",
    "FaultConfig",
    "PlungerMove",
    "PumpEmulator",
    "PumpFirmware",
    "PumpState",
    "ReplyCorruption",
    "ScheduledFault",
]
