"""Firmware state of one emulated pump, and the fault settings of the bus."""

from __future__ import annotations

from dataclasses import dataclass, field

from instruments.pumps.models import SpeedSettings, ValveType

#: kinds of fault :meth:`PumpEmulator.schedule_fault` can fire on a plunger move.
FAULT_KINDS = ("plunger", "valve", "stuck")


@dataclass
class ScheduledFault:
    """A fault that fires on the plunger move after ``after_moves`` more successful ones."""

    kind: str
    after_moves: int
    address: int | None = None


@dataclass
class FaultConfig:
    """Seeded fault probabilities.

    Attributes:
        drop_reply: probability that an executed block's answer is not sent.
        garble_reply: probability that one bit of an answer is flipped.
        seed: seeds the random faults (runs are reproducible).
        drop_request: probability that a host block is lost on the way to the pump (not
            executed, no answer), as if its bytes were damaged.
    """

    drop_reply: float = 0.0
    garble_reply: float = 0.0
    seed: int = 0
    drop_request: float = 0.0


@dataclass
class ReplyCorruption:
    """A deterministic damage to the next answer(s) to a command (for regression tests).

    Attributes:
        offset: the byte of the answer to damage (2 is the status byte in both framings,
            3 the first data byte).
        mask: XORed into that byte.
        command: only answers to this exact command string are damaged (None: any).
        count: how many answers to damage.
    """

    offset: int
    mask: int
    command: str | None = None
    count: int = 1


@dataclass
class PumpState:
    """Firmware state of one emulated pump (positions in standard increments).

    ``valve_type`` is what the ``?76`` configuration report answers (None: the emulator knows
    no code for this valve and answers that report with an invalid-operand error).
    ``distribution`` valves take numbered ports; others only named positions (I, O, B, E).
    """

    address: str
    increments: int
    valve_ports: int
    valve_type: ValveType | None = None
    distribution: bool = True
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
    inject_init_failure: bool = False

    def busy(self, now: float) -> bool:
        """Whether the pump is still moving at ``now`` (a stuck pump is busy until ``T``)."""
        if self.stuck:
            return True
        if now >= self.busy_until and self.pending_error:
            self.error, self.pending_error = self.pending_error, 0
        return now < self.busy_until

    def init_output(self, args: list[int]) -> str:
        """The port a ``Z``/``Y`` init pushes the syringe's contents through.

        On a distribution valve it is the init's output operand (``Z<force>,<in>,<out>``;
        0 or absent means port X, the last port); other valves push through "o".
        """
        if not self.distribution:
            return "o"
        out = args[2] if len(args) > 2 else 0
        return str(out if 1 <= out <= self.valve_ports else self.valve_ports)
