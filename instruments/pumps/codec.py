"""Byte-level codec for the Cavro / Hamilton PSD serial protocols (DT and OEM framings).

DT ("Terminal"): host ``/ addr cmd CR``; pump ``/ 0 status [data] ETX CR LF``.
OEM ("Standard"): host ``[FFh] STX addr seq cmd ETX chk``; pump ``STX 0 status [data] ETX chk``,
where ``chk`` is the XOR of every byte from STX to ETX inclusive. OEM answers are parsed by
keying on STX and taking the byte after ETX as the end (never by reading to a line feed).

The status byte is ``0 1 READY 0 e3 e2 e1 e0``: bit 5 set means ready, the low nibble is the
error code (see :mod:`instruments.pumps.errors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from instruments.pumps.errors import FramingError

Protocol = Literal["oem", "dt"]

STX = 0x02
ETX = 0x03
CR = 0x0D
LF = 0x0A
SYNC = 0xFF
DT_START = ord("/")
MASTER = ord("0")
READY_BIT = 0x20

#: dual-pump addresses (switch pairs), quad addresses and the all-pumps address: no answer.
DUAL_ADDRESSES = "ACEGIKMO"
QUAD_ADDRESSES = "QUY]"
ALL_ADDRESS = "_"
MULTI_ADDRESSES = frozenset(DUAL_ADDRESSES + QUAD_ADDRESSES + ALL_ADDRESS)


def single_address(switch_or_address: int, *, model: str = "xcalibur") -> str:
    """The address character for a pump.

    Args:
        switch_or_address: the driver's address 1-15 (address switch 0-E gives '1'-'?'),
            or 16 for a Hamilton PSD/4 or PSD/6 on switch F ('@').
        model: the pump model; only PSD models accept 16.
    """
    n = switch_or_address
    if 1 <= n <= 15:
        return chr(0x30 + n)
    if n == 16 and model.startswith("psd"):
        return "@"
    raise ValueError(f"pump address must be 1-15 (16 on PSD models), got {n}")


def members_of(address: str) -> list[str]:
    """The single-pump address characters a (possibly multi-) address reaches."""
    code = ord(address)
    if address == ALL_ADDRESS:
        return [chr(c) for c in range(0x31, 0x41)]
    if address in DUAL_ADDRESSES:
        first = 0x31 + (code - 0x41)
        return [chr(first), chr(first + 1)]
    if address in QUAD_ADDRESSES:
        first = 0x31 + (code - 0x51)
        return [chr(first + i) for i in range(4)]
    return [address]


def checksum(block: bytes) -> int:
    """XOR of ``block`` (STX through ETX inclusive, no sync byte)."""
    value = 0
    for byte in block:
        value ^= byte
    return value


def sequence_byte(sequence: int, repeat: bool = False) -> int:
    """``0 0 1 1 REP SQ2 SQ1 SQ0`` for a sequence number 1-7."""
    if not 1 <= sequence <= 7:
        raise ValueError(f"sequence number must be 1-7, got {sequence}")
    return 0x30 | (0x08 if repeat else 0) | sequence


def split_sequence_byte(value: int) -> tuple[int, bool]:
    """(sequence number, repeat flag) of a sequence byte."""
    return value & 0x07, bool(value & 0x08)


def encode_dt(address: str, command: str) -> bytes:
    """A DT host block: ``/`` address command CR."""
    return b"/" + address.encode("ascii") + command.encode("ascii") + b"\r"


def encode_oem(
    address: str, sequence: int, command: str, *, repeat: bool = False, sync: bool = True
) -> bytes:
    """An OEM host block: [FFh] STX address sequence command ETX checksum."""
    block = (
        bytes([STX])
        + address.encode("ascii")
        + bytes([sequence_byte(sequence, repeat)])
        + command.encode("ascii")
        + bytes([ETX])
    )
    return (bytes([SYNC]) if sync else b"") + block + bytes([checksum(block)])


def encode_command(
    protocol: Protocol, address: str, command: str, sequence: int = 1, repeat: bool = False
) -> bytes:
    """A host block in either framing."""
    if protocol == "dt":
        return encode_dt(address, command)
    return encode_oem(address, sequence, command, repeat=repeat)


def status_byte(ready: bool, error_code: int = 0) -> int:
    """The status byte for a ready flag and an error code 0-15."""
    if not 0 <= error_code <= 15:
        raise ValueError(f"error code must be 0-15, got {error_code}")
    return 0x40 | (READY_BIT if ready else 0) | error_code


def decode_status(value: int) -> tuple[bool, int]:
    """(ready, error code) of a status byte; raises FramingError for an impossible byte."""
    if value & 0xD0 != 0x40:
        raise FramingError(f"invalid status byte 0x{value:02X}")
    return bool(value & READY_BIT), value & 0x0F


def encode_reply(protocol: Protocol, status: int, data: bytes = b"") -> bytes:
    """A pump answer in either framing (used by the emulator and tests)."""
    if protocol == "dt":
        return b"/0" + bytes([status]) + data + bytes([ETX, CR, LF])
    block = bytes([STX, MASTER, status]) + data + bytes([ETX])
    return block + bytes([checksum(block)])


@dataclass(frozen=True)
class Reply:
    """A decoded pump answer."""

    status: int
    data: bytes
    raw: bytes

    @property
    def ready(self) -> bool:
        return bool(self.status & READY_BIT)

    @property
    def error_code(self) -> int:
        return self.status & 0x0F

    @property
    def text(self) -> str:
        return self.data.decode("ascii", errors="replace")


def find_reply(buffer: bytes, protocol: Protocol) -> tuple[int, int] | None:
    """(start, end) of the first complete answer frame in ``buffer``, or None.

    OEM: from an STX to the byte after the next ETX. DT: from ``/0`` to the LF after ETX CR
    (the end is taken as ETX + 3 bytes, so a damaged trailer still ends the frame).
    """
    start_byte = STX if protocol == "oem" else DT_START
    start = buffer.find(bytes([start_byte]))
    if start < 0:
        return None
    etx = buffer.find(bytes([ETX]), start + 1)
    if etx < 0:
        return None
    end = etx + (2 if protocol == "oem" else 3)
    return (start, end) if end <= len(buffer) else None


def decode_reply(frame: bytes, protocol: Protocol) -> Reply:
    """Decode one answer frame (as cut by :func:`find_reply`); raises FramingError."""
    if protocol == "oem":
        if len(frame) < 5 or frame[0] != STX or frame[-2] != ETX:
            raise FramingError(f"malformed OEM answer {frame!r}")
        if checksum(frame[:-1]) != frame[-1]:
            raise FramingError(f"OEM checksum mismatch in {frame!r}")
        body = frame[1:-2]
    else:
        if len(frame) < 6 or frame[0] != DT_START or frame[-3:] != bytes([ETX, CR, LF]):
            raise FramingError(f"malformed DT answer {frame!r}")
        body = frame[1:-3]
    if body[0] != MASTER:
        raise FramingError(f"answer not addressed to the master: {frame!r}")
    decode_status(body[1])
    data = body[2:]
    if any(b < 0x20 or b > 0x7E for b in data):
        raise FramingError(f"non-printable data in answer {frame!r}")
    return Reply(status=body[1], data=bytes(data), raw=bytes(frame))


@dataclass(frozen=True)
class HostBlock:
    """A decoded host block, as the pump sees it."""

    protocol: Protocol
    address: str
    command: str
    sequence: int = 0
    repeat: bool = False


def take_host_block(buffer: bytearray) -> HostBlock | None:
    """Remove and decode the first host block in ``buffer`` (pump side).

    Leading noise and sync bytes are dropped. OEM blocks with a bad checksum are discarded
    without an answer, as the firmware does. Returns None when no complete block is buffered.
    """
    while buffer:
        head = buffer[0]
        if head == STX:
            etx = buffer.find(bytes([ETX]))
            if etx < 0 or etx + 1 >= len(buffer):
                return None
            block, chk = bytes(buffer[: etx + 1]), buffer[etx + 1]
            del buffer[: etx + 2]
            if len(block) < 4 or checksum(block) != chk:
                continue
            seq, rep = split_sequence_byte(block[2])
            command = block[3:-1].decode("ascii", errors="replace")
            return HostBlock("oem", chr(block[1]), command, seq, rep)
        if head == DT_START:
            end = buffer.find(bytes([CR]))
            if end < 0:
                return None
            block = bytes(buffer[:end])
            del buffer[: end + 1]
            if len(block) < 2:
                continue
            command = block[2:].decode("ascii", errors="replace")
            return HostBlock("dt", chr(block[1]), command)
        del buffer[0]
    return None
