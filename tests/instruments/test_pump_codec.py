"""Codec: checksum vectors, framing round-trips, addressing and status decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instruments.exceptions import InstrumentError
from instruments.pumps import codec
from instruments.pumps import errors as pe


def test_checksum_vectors_from_the_psd4_manual() -> None:
    assert codec.checksum(bytes.fromhex("0231315A5203")) == 0x09
    assert codec.checksum(bytes.fromhex("02304003")) == ord("q")
    assert codec.encode_oem("1", 1, "ZR", sync=False) == b"\x0211ZR\x03\x09"
    assert codec.encode_oem("1", 1, "A300R", sync=False)[-1:] == b"!"
    assert codec.encode_oem("1", 1, "A300R", repeat=True, sync=False) == b"\x0219A300R\x03)"
    assert codec.encode_reply("oem", 0x40) == b"\x020@\x03q"


def test_sync_byte_is_not_part_of_the_checksum() -> None:
    block = codec.encode_oem("1", 1, "ZR")
    assert block[0] == 0xFF and block[1:] == b"\x0211ZR\x03\x09"


def test_dt_framing() -> None:
    assert codec.encode_dt("1", "ZR") == b"/1ZR\r"
    frame = b"/0`3000\x03\r\n"
    assert codec.find_reply(b"junk" + frame + b"more", "dt") == (4, 4 + len(frame))
    reply = codec.decode_reply(frame, "dt")
    assert reply.ready and reply.error_code == 0 and reply.text == "3000"


def test_oem_answer_is_cut_at_the_byte_after_etx_not_at_a_line_feed() -> None:
    frame = codec.encode_reply("oem", 0x60, b"3000")
    assert codec.find_reply(b"\x00\xff" + frame + b"\x02", "oem") == (2, 2 + len(frame))
    assert codec.find_reply(frame[:-1], "oem") is None


def test_bad_checksum_is_a_framing_error() -> None:
    frame = bytearray(codec.encode_reply("oem", 0x60, b"12"))
    frame[3] ^= 0x01
    with pytest.raises(pe.FramingError, match="checksum"):
        codec.decode_reply(bytes(frame), "oem")


_commands = st.text(alphabet="ZYIOBEAPDVvcSLR?&Q0123456789,", min_size=1, max_size=40)
_addresses = st.sampled_from([chr(c) for c in range(0x31, 0x41)] + list("ACQ_"))


@given(
    address=_addresses,
    command=_commands,
    sequence=st.integers(1, 7),
    repeat=st.booleans(),
    protocol=st.sampled_from(["oem", "dt"]),
    noise=st.binary(max_size=8).map(lambda b: bytes(x for x in b if x not in (2, 0x2F))),
)
def test_host_block_round_trip(address, command, sequence, repeat, protocol, noise) -> None:
    buffer = bytearray(noise + codec.encode_command(protocol, address, command, sequence, repeat))
    block = codec.take_host_block(buffer)
    assert block is not None and not buffer
    assert (block.protocol, block.address, block.command) == (protocol, address, command)
    if protocol == "oem":
        assert (block.sequence, block.repeat) == (sequence, repeat)


@given(
    ready=st.booleans(),
    code=st.integers(0, 15),
    data=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    protocol=st.sampled_from(["oem", "dt"]),
)
def test_reply_round_trip(ready, code, data, protocol) -> None:
    raw = codec.encode_reply(protocol, codec.status_byte(ready, code), data.encode())
    start, end = codec.find_reply(raw, protocol)
    reply = codec.decode_reply(raw[start:end], protocol)
    assert (reply.ready, reply.error_code, reply.text, reply.raw) == (ready, code, data, raw)


@given(st.integers(0, 255))
def test_status_byte_validation(value) -> None:
    if value & 0xD0 == 0x40:
        ready, code = codec.decode_status(value)
        assert codec.status_byte(ready, code) == value
    else:
        with pytest.raises(pe.FramingError):
            codec.decode_status(value)


@pytest.mark.parametrize(
    ("code", "cls", "reinit"),
    [
        (1, pe.InitializationError, True),
        (2, pe.InvalidCommand, False),
        (3, pe.InvalidOperand, False),
        (4, pe.InvalidCommandSequence, False),
        (5, pe.FluidDetectionError, False),
        (6, pe.EEPROMFailure, True),
        (7, pe.NotInitialized, True),
        (9, pe.PlungerOverload, True),
        (10, pe.ValveOverload, True),
        (11, pe.PlungerMoveNotAllowed, False),
        (15, pe.CommandOverflow, False),
    ],
)
def test_every_documented_code_maps_to_a_typed_error(code, cls, reinit) -> None:
    busy_char, ready_char = chr(0x40 | code), chr(0x60 | code)
    raw = codec.encode_reply("oem", ord(ready_char))
    assert codec.decode_status(ord(busy_char)) == (False, code)
    assert codec.decode_status(ord(ready_char)) == (True, code)
    error = pe.error_for_code(code, raw=raw, address="1")
    assert type(error) is cls and isinstance(error, InstrumentError)
    assert error.code == code and error.raw == raw and error.requires_reinit is reinit
    assert error.recovery


def test_undocumented_code_is_still_typed() -> None:
    error = pe.error_for_code(12)
    assert isinstance(error, pe.UnknownPumpError) and error.code == 12 and error.requires_reinit


def test_addresses() -> None:
    assert codec.single_address(1) == "1" and codec.single_address(15) == "?"
    assert codec.single_address(16, model="psd4") == "@"
    with pytest.raises(ValueError, match="1-15"):
        codec.single_address(16, model="xcalibur")
    assert codec.members_of("A") == ["1", "2"] and codec.members_of("C") == ["3", "4"]
    assert codec.members_of("U") == ["5", "6", "7", "8"]
    assert len(codec.members_of("_")) == 16
    assert codec.sequence_byte(1) == ord("1") and codec.sequence_byte(1, True) == ord("9")
    assert codec.sequence_byte(7, True) == ord("?")
