"""Transport: frame reading by framing rules over loop://, the exchange log and its replay."""

from __future__ import annotations

import json

import pytest

from instruments.pumps import codec
from instruments.pumps.errors import PumpCommunicationError
from instruments.pumps.transport import ReplayTransport, SerialTransport


def test_reads_one_frame_at_a_time_by_framing_rules(tmp_path) -> None:
    log = tmp_path / "x.jsonl"
    port = SerialTransport("loop://", log_path=log)
    first = codec.encode_reply("oem", 0x60, b"3000")
    second = codec.encode_reply("oem", 0x40)
    port.write(b"\x00noise" + first + second)
    assert port.read_frame("oem", 0.5) == first
    assert port.read_frame("oem", 0.5) == second
    assert port.read_frame("oem", 0.05) is None
    port.write(b"/0`12\x03\r\n")
    assert port.read_frame("dt", 0.5) == b"/0`12\x03\r\n"
    port.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["dir"] for r in records] == ["tx", "rx", "rx", "timeout", "tx", "rx"]
    assert all(isinstance(r["t"], float) for r in records)
    assert bytes.fromhex(records[1]["hex"]) == first


def test_partial_frame_times_out() -> None:
    port = SerialTransport("loop://")
    port.write(codec.encode_reply("oem", 0x60, b"1")[:-1])  # checksum missing
    assert port.read_frame("oem", 0.05) is None
    port.close()


def test_bad_url_and_baud_rate() -> None:
    with pytest.raises(PumpCommunicationError, match="cannot open"):
        SerialTransport("/dev/does-not-exist")
    with pytest.raises(ValueError, match="baud"):
        SerialTransport("loop://", baudrate=19200)


def test_replay_checks_what_is_sent(tmp_path) -> None:
    log = tmp_path / "x.jsonl"
    port = SerialTransport("loop://", log_path=log)
    port.write(b"/0`\x03\r\n")
    port.read_frame("dt", 0.5)
    port.read_frame("dt", 0.02)
    port.close()
    replay = ReplayTransport(log)
    replay.write(b"/0`\x03\r\n")
    assert replay.read_frame("dt", 1) == b"/0`\x03\r\n"
    assert replay.read_frame("dt", 1) is None
    assert replay.exhausted
    with pytest.raises(PumpCommunicationError, match="exhausted"):
        replay.write(b"x")
