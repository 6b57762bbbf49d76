"""Protocol backend: one :class:`PumpSession` per pump address on a (shared) transport.

A session frames commands, keeps OEM sequence numbers, retries lost or corrupted answers by
the manual's rules, turns error codes into typed exceptions and polls ``Q`` until the pump is
ready, giving up at the predicted move time plus a margin (then it sends ``T``).

Retry rules:
    OEM: no answer or a bad checksum → wait ``retry_delay_s`` (100 ms) and resend with the
    repeat flag and the SAME sequence number; the pump acknowledges a repeat it has already
    executed without executing it again.
    DT: there is no repeat flag, so only idempotent blocks (``Q`` and reports) are resent; a
    lost answer to an action raises :class:`PumpCommunicationError`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from instruments.pumps.codec import (
    MULTI_ADDRESSES,
    Protocol,
    Reply,
    decode_reply,
    encode_command,
)
from instruments.pumps.errors import (
    FramingError,
    PumpCommunicationError,
    PumpTimeout,
    error_for_code,
)
from instruments.pumps.transport import PumpTransport

log = logging.getLogger(__name__)

#: error codes a pump may still carry in the answer to the init block itself.
_STALE_ON_INIT = frozenset({1, 7, 9, 10})


@dataclass
class SessionStats:
    """Counters for diagnostics and fault tests."""

    blocks: int = 0
    retries: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    polls: int = 0


class PumpSession:
    """Speaks the firmware protocol to one pump address.

    Args:
        transport: a shared byte transport (its lock serialises the bus).
        address: the address character ('1'...'?', '@'); multi-addresses use :meth:`broadcast`.
        protocol: "oem" (checksummed, recommended) or "dt".
        reply_timeout_s: how long to wait for an answer block (the pump answers in < 5 ms).
        retry_delay_s: the wait before resending (100 ms per the manual).
        max_retries: resends per block before giving up.
        poll_interval_s: delay between ``Q`` polls (100 ms recommended per pump).
        deadline_margin_s: added to the predicted move time before declaring a pump stuck.
        time_scale: multiplies predicted move times (set it to an emulator's time scale).
    """

    def __init__(
        self,
        transport: PumpTransport,
        address: str,
        *,
        protocol: Protocol = "oem",
        reply_timeout_s: float = 0.3,
        retry_delay_s: float = 0.1,
        max_retries: int = 5,
        poll_interval_s: float = 0.1,
        deadline_margin_s: float = 2.0,
        time_scale: float = 1.0,
    ):
        if protocol not in ("oem", "dt"):
            raise ValueError(f"protocol must be 'oem' or 'dt', got {protocol!r}")
        if address in MULTI_ADDRESSES:
            raise ValueError(f"{address!r} is a multi-pump address; use broadcast()")
        self.transport = transport
        self.address = address
        self.protocol: Protocol = protocol
        self.reply_timeout_s = reply_timeout_s
        self.retry_delay_s = retry_delay_s
        self.max_retries = max_retries
        self.poll_interval_s = poll_interval_s
        self.deadline_margin_s = deadline_margin_s
        self.time_scale = time_scale
        self.stats = SessionStats()
        self._sequence = 0

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 7 + 1
        return self._sequence

    def send(self, command: str, *, idempotent: bool = False, init: bool = False) -> Reply:
        """Send one block and return its answer, raising on an error code.

        Args:
            command: the command string, e.g. ``"IP300R"``, ``"Q"`` or ``"?"``.
            idempotent: True for queries and reports (safe to resend in DT).
            init: True for an initialisation block (stale re-init codes are tolerated).

        Raises:
            PumpFirmwareError subclass: the answer carried an error code.
            PumpCommunicationError: no valid answer after the allowed retries.
        """
        reply = self.exchange(command, idempotent=idempotent)
        code = reply.error_code
        if code and not (init and code in _STALE_ON_INIT):
            raise error_for_code(code, raw=reply.raw, address=self.address)
        return reply

    def exchange(self, command: str, *, idempotent: bool) -> Reply:
        """One block and its decoded answer, with retries; error codes are NOT raised."""
        sequence = self._next_sequence()
        attempts = 1 + (self.max_retries if (self.protocol == "oem" or idempotent) else 0)
        problem = "no answer"
        with self.transport.lock:
            for attempt in range(attempts):
                if attempt:
                    self.stats.retries += 1
                    time.sleep(self.retry_delay_s)
                block = encode_command(
                    self.protocol, self.address, command, sequence, repeat=attempt > 0
                )
                self.transport.discard_input()
                self.transport.write(block)
                self.stats.blocks += 1
                frame = self.transport.read_frame(self.protocol, self.reply_timeout_s)
                if frame is None:
                    self.stats.timeouts += 1
                    problem = "no answer"
                    continue
                try:
                    return decode_reply(frame, self.protocol)
                except FramingError as exc:
                    self.stats.bad_frames += 1
                    problem = str(exc)
                    log.debug("pump %s: %s", self.address, exc)
        what = "" if attempts > 1 else " (DT: a non-idempotent block is never resent)"
        raise PumpCommunicationError(
            f"{problem} to {command!r} after {attempts} attempt(s){what}", address=self.address
        )

    def query(self, command: str) -> str:
        """A report command (``?``, ``?6``, ``&``...) and its data as text."""
        return self.send(command, idempotent=True).text

    def poll(self) -> Reply:
        """One ``Q``; raises the typed error if the status carries one."""
        self.stats.polls += 1
        return self.send("Q", idempotent=True)

    def wait_ready(self, predicted_s: float) -> Reply:
        """Poll ``Q`` until ready; give up at the predicted time plus margin.

        Args:
            predicted_s: the unscaled predicted duration of what the pump is doing.

        Raises:
            PumpTimeout: still busy at the deadline (``T`` was sent).
            PumpFirmwareError subclass: a run-time error was reported.
        """
        expected = predicted_s * self.time_scale
        deadline_s = expected * 1.2 + self.deadline_margin_s
        started = time.monotonic()
        while True:
            reply = self.poll()
            if reply.ready:
                return reply
            waited = time.monotonic() - started
            if waited > deadline_s:
                self.terminate()
                raise PumpTimeout(
                    f"pump still busy after {waited:.3f} s "
                    f"(predicted {expected:.3f} s, deadline {deadline_s:.3f} s); sent T",
                    predicted_s=expected,
                    waited_s=waited,
                    address=self.address,
                )
            time.sleep(min(self.poll_interval_s, max(deadline_s - waited, 0.0) + 1e-3))

    def execute(self, command: str, predicted_s: float, *, init: bool = False) -> Reply:
        """Send an action string (ending in ``R``) and wait until the pump is ready."""
        self.send(command, init=init)
        return self.wait_ready(predicted_s)

    def terminate(self) -> None:
        """Send ``T`` (stop plunger moves, loops, delays); errors are logged, not raised."""
        try:
            self.exchange("T", idempotent=True)
        except PumpCommunicationError as exc:
            log.warning("pump %s: T not acknowledged: %s", self.address, exc)


def broadcast(
    transport: PumpTransport, address: str, command: str, *, protocol: Protocol = "oem"
) -> None:
    """Send a block to a multi-pump address ('A', 'Q', '_', ...); no answer comes back."""
    if address not in MULTI_ADDRESSES:
        raise ValueError(f"{address!r} is not a multi-pump address")
    with transport.lock:
        transport.discard_input()
        transport.write(encode_command(protocol, address, command, 1))
