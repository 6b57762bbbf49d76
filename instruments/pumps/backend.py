"""Protocol backend: one :class:`PumpSession` per pump address on a (shared) transport.

A session frames commands, keeps OEM sequence numbers, retries lost or corrupted answers by
the manual's rules, turns error codes into typed exceptions and polls ``Q`` until the pump is
ready, giving up at the predicted move time plus a margin (then it sends ``T``).

At-most-once execution of actions:
    OEM: no answer or a bad checksum → wait ``retry_delay_s`` (100 ms) and resend with the
    repeat flag and the SAME sequence number; the pump acknowledges a repeat it has already
    executed without executing it again. The pump remembers the last sequence number it
    received across host processes, so every session (and every session after a broadcast)
    opens with a harmless ``Q``: the pump's last sequence number is then the session's own,
    and a repeat of the session's next block can never be acknowledged with an older
    process's answer.
    DT: there is no repeat flag and no checksum. Queries and reports are resent freely; an
    answer's error code and ready flag count only when a second ``Q`` agrees, and a numeric
    report only when two answers agree (one flipped bit can turn '3' into '2'). An action is
    never resent blind: when its answer is lost, garbled or carries an error code, the pump is
    polled until ready and the caller's ``settle`` check (the plunger position, the valve, the
    init counter) decides whether it ran; only an action that did not run is sent again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

from instruments.pumps.codec import (
    MULTI_ADDRESSES,
    Protocol,
    Reply,
    decode_reply,
    encode_command,
)
from instruments.pumps.errors import (
    AnswerLost,
    FramingError,
    PumpCommunicationError,
    PumpStuck,
    PumpTimeout,
    error_for_code,
)
from instruments.pumps.transport import PumpTransport

log = logging.getLogger(__name__)

T = TypeVar("T")

#: error codes a pump may still carry in the answer to the init block itself.
STALE_ON_INIT = frozenset({1, 7, 9, 10})
#: codes that refuse a report itself (the others in a report's status byte are the pump's state).
_REPORT_REFUSALS = frozenset({2, 3})


@dataclass
class SessionStats:
    """Counters for diagnostics and fault tests."""

    blocks: int = 0
    retries: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    polls: int = 0
    syncs: int = 0
    settled: int = 0
    resent: int = 0


class PumpSession:
    """Speaks the firmware protocol to one pump address.

    Args:
        transport: a shared byte transport (its lock serialises the bus).
        address: the address character ('1'...'?', '@'); multi-addresses use :func:`broadcast`.
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
        self._synced_epoch: int | None = None

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 7 + 1
        return self._sequence

    # -- blocks ------------------------------------------------------------------------
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
        if code and not (init and code in STALE_ON_INIT):
            raise error_for_code(code, raw=reply.raw, address=self.address)
        return reply

    def exchange(self, command: str, *, idempotent: bool) -> Reply:
        """One block and its decoded answer, with retries; error codes are NOT raised.

        Raises:
            AnswerLost: DT, a non-idempotent block without a valid answer (it is not resent).
            PumpCommunicationError: no valid answer after the allowed retries.
        """
        with self.transport.lock:
            self._sync()
            return self._exchange(command, idempotent=idempotent)

    def _sync(self) -> None:
        """OEM: open the session (again after a broadcast) with a harmless ``Q``."""
        epoch = getattr(self.transport, "epoch", 0)
        if self.protocol != "oem" or self._synced_epoch == epoch:
            return
        self._exchange("Q", idempotent=True)
        self._synced_epoch = epoch
        self.stats.syncs += 1

    def _exchange(self, command: str, *, idempotent: bool) -> Reply:
        sequence = self._next_sequence()
        attempts = 1 + (self.max_retries if (self.protocol == "oem" or idempotent) else 0)
        problem = "no answer"
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
        if attempts == 1:
            raise AnswerLost(f"{problem} to {command!r} (DT)", address=self.address)
        raise PumpCommunicationError(
            f"{problem} to {command!r} after {attempts} attempt(s)", address=self.address
        )

    # -- reports -----------------------------------------------------------------------
    def report(self, command: str, parse: Callable[[str], T] = str) -> T:  # type: ignore[assignment]
        """A report command's data, checked by ``parse`` (which raises ValueError if malformed).

        A malformed answer is a framing error: the report is sent again. In DT an answer counts
        only when a second one agrees. The status byte of a report is not authoritative (the
        manual: only ``Q`` is), so only the report's own refusal (codes 2 and 3) is raised.

        Raises:
            InvalidCommand, InvalidOperand: the pump refused the report.
            PumpCommunicationError: no (agreeing) well-formed answer.
        """
        confirm = self.protocol == "dt"
        seen: list[T] = []
        refused = 0
        problem = f"no two agreeing answers to {command!r}"
        for _ in range(2 * (1 + self.max_retries)):
            reply = self.exchange(command, idempotent=True)
            if reply.error_code in _REPORT_REFUSALS:
                if not confirm or refused == reply.error_code:
                    raise error_for_code(reply.error_code, raw=reply.raw, address=self.address)
                refused = reply.error_code
                continue
            refused = 0
            try:
                value = parse(reply.text)
            except ValueError as exc:
                self.stats.bad_frames += 1
                problem = f"malformed answer {reply.text!r} to {command!r} ({exc})"
                continue
            if not confirm or (seen and seen[-1] == value):
                return value
            if seen:
                self.stats.bad_frames += 1  # two answers disagree: one of them was damaged
            seen.append(value)
        raise PumpCommunicationError(problem, address=self.address)

    def query(self, command: str) -> str:
        """A report command (``?``, ``?6``, ``&``...) and its data as text."""
        return self.report(command)

    def query_int(self, command: str, low: int, high: int) -> int:
        """A numeric report, which must be decimal digits within ``low..high``."""

        def parse(text: str) -> int:
            if not text.isdigit() or len(text) > 6:
                raise ValueError("not a number")
            value = int(text)
            if not low <= value <= high:
                raise ValueError(f"outside {low}..{high}")
            return value

        return self.report(command, parse)

    # -- status ------------------------------------------------------------------------
    def status(self) -> Reply:
        """``Q``, never raising on its code; in DT a non-zero code counts once a second agrees."""
        reply = self.exchange("Q", idempotent=True)
        if self.protocol == "oem":
            return reply
        for _ in range(self.max_retries):
            if not reply.error_code:
                return reply
            again = self.exchange("Q", idempotent=True)
            if again.error_code == reply.error_code:
                return again
            self.stats.bad_frames += 1
            reply = again
        return reply

    def poll(self, tolerate: Collection[int] = ()) -> Reply:
        """One (confirmed) ``Q``; raises the typed error if its code is not in ``tolerate``."""
        self.stats.polls += 1
        reply = self.status()
        if reply.error_code and reply.error_code not in tolerate:
            raise error_for_code(reply.error_code, raw=reply.raw, address=self.address)
        return reply

    def wait_ready(
        self, predicted_s: float, *, before: str | None = None, tolerate: Collection[int] = ()
    ) -> Reply:
        """Poll ``Q`` until ready; give up at the predicted time plus margin.

        Args:
            predicted_s: the unscaled predicted duration of what the pump is doing.
            before: set when waiting before an action (what the action is): a pump still
                busy at the deadline is reported as stuck.
            tolerate: error codes that do not raise (e.g. a pending re-init before an init).

        Raises:
            PumpTimeout (PumpStuck with ``before``): still busy at the deadline (``T`` sent).
            PumpFirmwareError subclass: a run-time error was reported.
        """
        expected = predicted_s * self.time_scale
        deadline_s = expected * 1.2 + self.deadline_margin_s
        started = time.monotonic()
        seen_ready = False
        while True:
            reply = self.poll(tolerate)
            if reply.ready and (seen_ready or self.protocol == "oem"):
                return reply
            seen_ready = reply.ready  # DT: a busy status is one bit away from a ready one
            waited = time.monotonic() - started
            if waited > deadline_s:
                self.terminate()
                raise self._timeout(before, waited, expected, deadline_s)
            if not seen_ready:
                time.sleep(min(self.poll_interval_s, max(deadline_s - waited, 0.0) + 1e-3))

    def _timeout(
        self, before: str | None, waited: float, expected: float, deadline_s: float
    ) -> PumpTimeout:
        if before is not None:
            return PumpStuck(
                f"pump never became ready within {waited:.3f} s before {before} (longer than "
                f"any move it could be making, deadline {deadline_s:.3f} s): it is stuck; sent T",
                predicted_s=expected,
                waited_s=waited,
                address=self.address,
            )
        return PumpTimeout(
            f"pump still busy after {waited:.3f} s "
            f"(predicted {expected:.3f} s, deadline {deadline_s:.3f} s); sent T",
            predicted_s=expected,
            waited_s=waited,
            address=self.address,
        )

    # -- actions -----------------------------------------------------------------------
    def execute(
        self,
        command: str,
        predicted_s: float,
        *,
        init: bool = False,
        settle: Callable[[], bool] | None = None,
    ) -> Reply:
        """Send an action string (ending in ``R``), wait until the pump is ready, settle it.

        Args:
            command: the action string.
            predicted_s: its predicted (unscaled) duration.
            init: an initialisation (stale re-init codes in its own answer are tolerated).
            settle: called once the pump is ready; True when the action took effect, False
                when it did not (it never arrived, or the pump refused it); it raises when the
                pump is in neither state. Without it, a DT action whose answer is lost raises.

        Raises:
            PumpFirmwareError subclass: the pump refused the action or failed running it.
            PumpCommunicationError: no answer, or the action never took effect.
        """
        attempts = 1 + self.max_retries if settle is not None else 1
        for _ in range(attempts):
            try:
                reply: Reply | None = self.exchange(command, idempotent=False)
            except AnswerLost:
                if settle is None:
                    raise
                reply = None
            code = reply.error_code if reply is not None else 0
            refused = bool(code) and not (init and code in STALE_ON_INIT)
            if refused and (self.protocol == "oem" or settle is None):
                raise error_for_code(code, raw=reply.raw, address=self.address)  # type: ignore[union-attr]
            status = self.wait_ready(predicted_s)
            if settle is None or settle():
                if reply is None or refused:
                    self.stats.settled += 1
                return status
            if refused:  # the code was real: the pump refused the action and did nothing
                raise error_for_code(code, raw=reply.raw, address=self.address)  # type: ignore[union-attr]
            self.stats.resent += 1
            log.info("pump %s: %r did not take effect; sending it again", self.address, command)
        raise PumpCommunicationError(
            f"{command!r} did not take effect after {attempts} attempt(s)", address=self.address
        )

    def terminate(self) -> None:
        """Send ``T`` (stop plunger moves, loops, delays); errors are logged, not raised."""
        try:
            self.exchange("T", idempotent=True)
        except PumpCommunicationError as exc:
            log.warning("pump %s: T not acknowledged: %s", self.address, exc)


def broadcast(
    transport: PumpTransport, address: str, command: str, *, protocol: Protocol = "oem"
) -> None:
    """Send a block to a multi-pump address ('A', 'Q', '_', ...); no answer comes back.

    Every session on the transport opens its next exchange with a ``Q`` again, since the
    broadcast's sequence number is now the last one its pumps received.
    """
    if address not in MULTI_ADDRESSES:
        raise ValueError(f"{address!r} is not a multi-pump address")
    with transport.lock:
        transport.discard_input()
        transport.write(encode_command(protocol, address, command, 1))
        transport.epoch = getattr(transport, "epoch", 0) + 1
