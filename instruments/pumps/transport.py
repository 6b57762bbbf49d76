"""Byte transports for pumps: a pyserial port (any URL pyserial accepts) and a log replayer.

A transport writes host blocks and reads one answer frame by the framing rules of
:mod:`instruments.pumps.codec` (never ``readline``). It owns a re-entrant lock so several
pump sessions on one RS-485 bus can share it. With ``log_path`` every exchange is appended to
a JSON-lines file (``{"t": epoch_s, "dir": "tx"|"rx"|"timeout", "hex": ...}``) that
:class:`ReplayTransport` can play back in tests.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import serial

from instruments.pumps.codec import Protocol as Framing
from instruments.pumps.codec import find_reply
from instruments.pumps.errors import PortUnavailable, PumpCommunicationError

BAUD_RATES = (9600, 38400)


class PumpTransport(Protocol):
    """What a backend needs from a byte transport.

    ``epoch`` counts the broadcasts sent on it (sessions re-synchronise after one).
    """

    lock: threading.RLock
    epoch: int

    def write(self, data: bytes) -> None: ...

    def read_frame(self, framing: Framing, timeout_s: float) -> bytes | None: ...

    def discard_input(self) -> None: ...

    def close(self) -> None: ...


class _ExchangeLog:
    """Appends timestamped tx/rx records to a JSON-lines file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = self.path.open("a", encoding="utf-8")

    def record(self, direction: str, data: bytes | None) -> None:
        entry: dict[str, Any] = {"t": time.time(), "dir": direction}
        entry["hex"] = data.hex() if data is not None else None
        if data is not None:
            entry["text"] = data.decode("latin-1").encode("unicode_escape").decode("ascii")
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class SerialTransport:
    """A pyserial port opened with ``serial_for_url`` (8N1, no handshake).

    Args:
        url: ``/dev/ttyUSB0``, a pty path, ``socket://host:port`` or ``loop://``.
        baudrate: 9600 (factory default) or 38400.
        log_path: optional JSON-lines exchange log.
        inter_byte_timeout_s: once a frame has started, how long to wait for the next byte.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 9600,
        log_path: str | Path | None = None,
        inter_byte_timeout_s: float = 0.1,
    ):
        if baudrate not in BAUD_RATES:
            raise ValueError(f"baud rate must be one of {BAUD_RATES}, got {baudrate}")
        try:
            self._port = serial.serial_for_url(
                url,
                baudrate=baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=0.01,
                xonxoff=False,
                rtscts=False,
            )
        except (serial.SerialException, ValueError, OSError) as exc:
            raise PortUnavailable(f"cannot open {url!r}: {exc}") from exc
        self.url = url
        self.lock = threading.RLock()
        self.epoch = 0
        self._buffer = bytearray()
        self._inter_byte_s = inter_byte_timeout_s
        self._log = _ExchangeLog(log_path) if log_path else None

    def write(self, data: bytes) -> None:
        """Send ``data`` and log it."""
        if self._log:
            self._log.record("tx", data)
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise PumpCommunicationError(f"write to {self.url!r} failed: {exc}") from exc

    def discard_input(self) -> None:
        """Drop stale bytes (late answers) before a new exchange."""
        self._buffer.clear()
        try:
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError):
            pass

    def read_frame(self, framing: Framing, timeout_s: float) -> bytes | None:
        """One answer frame, or None if none completed within ``timeout_s``.

        The deadline is extended by the inter-byte timeout while bytes keep arriving.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            span = find_reply(bytes(self._buffer), framing)
            if span is not None:
                start, end = span
                frame = bytes(self._buffer[start:end])
                del self._buffer[:end]
                if self._log:
                    self._log.record("rx", frame)
                return frame
            now = time.monotonic()
            if now >= deadline:
                if self._log:
                    self._log.record("timeout", bytes(self._buffer))
                self._buffer.clear()
                return None
            try:
                chunk = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                raise PumpCommunicationError(f"read from {self.url!r} failed: {exc}") from exc
            if chunk:
                self._buffer.extend(chunk)
                deadline = max(deadline, time.monotonic() + self._inter_byte_s)

    def close(self) -> None:
        """Close the port and the log."""
        self._port.close()
        if self._log:
            self._log.close()


class ReplayMismatch(PumpCommunicationError):
    """The driver sent something other than what the log recorded."""


class ReplayTransport:
    """Plays back a JSON-lines exchange log written by :class:`SerialTransport`.

    Each ``write`` must match the next recorded ``tx`` (raises :class:`ReplayMismatch`
    otherwise); each ``read_frame`` returns the next recorded ``rx`` frame, or None where the
    log recorded a timeout. Replies arrive instantly.
    """

    def __init__(self, log_path: str | Path, *, strict: bool = True):
        lines = Path(log_path).read_text(encoding="utf-8").splitlines()
        self._records = [json.loads(line) for line in lines if line.strip()]
        self._index = 0
        self.strict = strict
        self.lock = threading.RLock()
        self.epoch = 0

    def _next(self, kinds: tuple[str, ...]) -> dict[str, Any]:
        if self._index >= len(self._records):
            raise ReplayMismatch("replay log exhausted")
        record = self._records[self._index]
        if record["dir"] not in kinds:
            raise ReplayMismatch(f"expected {kinds} at record {self._index}, log has {record}")
        self._index += 1
        return dict(record)

    def write(self, data: bytes) -> None:
        record = self._next(("tx",))
        if self.strict and bytes.fromhex(record["hex"]) != data:
            raise ReplayMismatch(
                f"record {self._index - 1}: sent {data!r}, log has {bytes.fromhex(record['hex'])!r}"
            )

    def read_frame(self, framing: Framing, timeout_s: float) -> bytes | None:
        record = self._next(("rx", "timeout"))
        return bytes.fromhex(record["hex"]) if record["dir"] == "rx" else None

    def discard_input(self) -> None:
        pass

    @property
    def exhausted(self) -> bool:
        """True once every record has been consumed."""
        return self._index >= len(self._records)

    def close(self) -> None:
        pass


def open_transport(
    url: str, *, baudrate: int = 9600, log_path: str | Path | None = None
) -> SerialTransport:
    """Open a shared transport, e.g. for several pumps on one RS-485 bus."""
    return SerialTransport(url, baudrate=baudrate, log_path=log_path)
