"""The pump firmware emulator, driven block by block (no driver in the way)."""

from __future__ import annotations

import os
import time

import pytest
import serial

from instruments.pumps.codec import (
    HostBlock,
    decode_reply,
    encode_oem,
    find_reply,
)
from simulators.pump_emulator import FaultConfig, PumpEmulator


def oem(command: str, seq: int = 1, repeat: bool = False, address: str = "1") -> HostBlock:
    return HostBlock("oem", address, command, seq, repeat)


def dt(command: str, address: str = "1") -> HostBlock:
    return HostBlock("dt", address, command)


def answer(emu: PumpEmulator, block: HostBlock):
    raw = emu.handle_block(block)
    return decode_reply(raw, block.protocol) if raw else None


@pytest.fixture
def emu():
    emulator = PumpEmulator((1, 2, 3, 4), time_scale=0.0001)
    yield emulator
    emulator.close()


def wait_ready(emu: PumpEmulator, address: str = "1") -> None:
    for _ in range(1000):
        if answer(emu, oem("Q", 7, address=address)).ready:
            return
        time.sleep(0.001)
    raise AssertionError("emulated pump stayed busy")


def test_repeated_sequence_number_is_acknowledged_not_executed(emu) -> None:
    answer(emu, oem("ZR", 1))
    wait_ready(emu)
    first = answer(emu, oem("P300R", 2))
    assert first.error_code == 0
    repeat = answer(emu, oem("P300R", 2, repeat=True))
    assert repeat.error_code == 0
    wait_ready(emu)
    assert emu.pump(1).position == 300 and emu.pump(1).plunger_moves == 1
    answer(emu, oem("P300R", 3, repeat=True))  # a repeat of a block never received: executes
    wait_ready(emu)
    assert emu.pump(1).position == 600 and emu.pump(1).plunger_moves == 2


def test_not_initialised_and_immediate_errors(emu) -> None:
    assert answer(emu, oem("A100R", 1)).error_code == 7
    answer(emu, oem("ZR", 2))
    wait_ready(emu)
    assert answer(emu, oem("A4000R", 3)).error_code == 3
    assert answer(emu, oem("Q", 4)).error_code == 0  # immediate errors are not repeated by Q
    assert answer(emu, oem("J9x", 5)).error_code == 2
    assert answer(emu, oem("?99", 6)).error_code == 3


def test_run_time_operand_error_stops_the_string(emu) -> None:
    answer(emu, oem("ZR", 1))
    wait_ready(emu)
    assert answer(emu, oem("A3000A3500R", 2)).error_code == 0
    time.sleep(0.01)
    status = answer(emu, oem("Q", 3))
    assert status.ready and status.error_code == 3
    assert emu.pump(1).position == 3000


def test_bypass_forbids_plunger_moves(emu) -> None:
    answer(emu, oem("ZR", 1))
    wait_ready(emu)
    answer(emu, oem("BP100R", 2))
    time.sleep(0.01)
    assert answer(emu, oem("Q", 3)).error_code == 11
    assert emu.pump(1).position == 0


def test_overflow_while_busy_but_queries_and_v_are_exempt() -> None:
    with PumpEmulator((1,), time_scale=1.0) as emu:
        answer(emu, oem("ZR", 1))  # 1.0 s of homing at full scale
        busy = answer(emu, oem("A100R", 2))
        assert busy.error_code == 15 and not busy.ready
        assert answer(emu, oem("Q", 3)).error_code == 0
        assert answer(emu, oem("?", 4)).text == "0"
        assert answer(emu, oem("V500R", 5)).error_code == 0
        assert emu.pump(1).speeds.top_hz == 500
        assert answer(emu, oem("TR", 6)).error_code == 0
        assert answer(emu, oem("Q", 7)).ready


def test_overload_and_stuck_injection(emu) -> None:
    answer(emu, oem("ZR", 1))
    wait_ready(emu)
    emu.inject_overload(1)
    answer(emu, oem("P1000R", 2))
    time.sleep(0.01)
    status = answer(emu, oem("Q", 3))
    assert status.ready and status.error_code == 9 and emu.pump(1).position == 500
    assert answer(emu, oem("P10R", 4)).error_code == 7
    assert answer(emu, oem("V800R", 5)).error_code == 9  # the overload persists until init
    answer(emu, oem("ZR", 6))
    wait_ready(emu)
    emu.inject_stuck(1)
    answer(emu, oem("P10R", 1))
    time.sleep(0.01)
    assert not answer(emu, oem("Q", 2)).ready
    answer(emu, oem("T", 3))
    assert answer(emu, oem("Q", 4)).ready


def test_protocol_lock_on_oem_as_the_xcalibur_does(emu) -> None:
    assert answer(emu, dt("Q")) is not None and emu.protocol_lock == "dt"
    assert answer(emu, oem("Q")) is not None and emu.protocol_lock == "oem"
    assert emu.handle_block(dt("Q")) == b""


def test_xlp_locks_onto_the_first_protocol() -> None:
    with PumpEmulator((1,), model="xlp6000") as emu:
        assert answer(emu, dt("Q")) is not None
        assert emu.handle_block(oem("Q")) == b""


def test_multi_addresses_execute_without_answer(emu) -> None:
    assert emu.handle_block(oem("ZR", 1, address="_")) == b""
    for address in "1234":
        wait_ready(emu, address)
    assert emu.handle_block(oem("A300R", 2, address="C")) == b""  # pumps 3 and 4
    time.sleep(0.01)
    positions = [emu.pumps[a].position for a in "1234"]
    assert positions == [0, 0, 300, 300]
    assert emu.handle_block(oem("Q", 1, address="9")) == b""  # nobody there


def test_seeded_faults_are_reproducible() -> None:
    counts = []
    for _ in range(2):
        with PumpEmulator((1,), faults=FaultConfig(0.2, 0.2, seed=5)) as emu:
            replies = [emu.handle_block(oem("Q", i % 7 + 1)) for i in range(200)]
            counts.append((emu.dropped, emu.garbled, replies))
    assert counts[0] == counts[1] and counts[0][0] > 10 and counts[0][1] > 10


def test_serves_pyserial_on_a_pty() -> None:
    with PumpEmulator((1,)) as emu:
        assert os.path.exists(emu.port)
        port = serial.Serial(emu.port, 9600, timeout=0.5)
        port.write(encode_oem("1", 1, "&"))
        raw = b""
        deadline = time.monotonic() + 2
        while find_reply(raw, "oem") is None and time.monotonic() < deadline:
            raw += port.read(1)
        assert decode_reply(raw, "oem").text == emu.firmware
        port.write(b"\xff\x0211ZR\x03\x00")  # bad checksum: ignored, no answer
        assert port.read(1) == b""
        port.close()


def test_lost_requests_are_neither_executed_nor_answered(emu) -> None:
    answer(emu, oem("ZR", 1))
    wait_ready(emu)
    emu.drop_next_requests(1)
    assert emu.handle_block(oem("P300R", 2)) == b""
    assert emu.pump(1).position == 0 and emu.lost_requests == 1
    assert answer(emu, oem("P300R", 2, repeat=True)).error_code == 0  # never received: runs
    wait_ready(emu)
    assert emu.pump(1).position == 300 and emu.pump(1).plunger_moves == 1
    with PumpEmulator((1,), faults=FaultConfig(drop_request=0.3, seed=1)) as noisy:
        replies = [noisy.handle_block(oem("Q", i % 7 + 1)) for i in range(100)]
        assert noisy.lost_requests == replies.count(b"") and 15 < noisy.lost_requests < 45


def test_a_chosen_bit_of_a_chosen_answer_can_be_flipped(emu) -> None:
    answer(emu, dt("ZR"))
    wait_ready_dt = [answer(emu, dt("Q")) for _ in range(3)]
    assert wait_ready_dt[-1].error_code == 0
    emu.corrupt_next_replies(1, offset=2, mask=0x08, command="Q")
    assert answer(emu, dt("?")).error_code == 0  # another command: untouched
    assert answer(emu, dt("Q")).error_code == 8  # 0x60 -> 0x68
    assert answer(emu, dt("Q")).error_code == 0
    emu.corrupt_next_replies(1, offset=3, mask=0x12, command="?2")
    assert answer(emu, dt("?2")).text == "#400"  # '1' (0x31) -> '#' (0x23)


def test_init_failure_is_reported_by_q_until_a_good_init(emu) -> None:
    emu.inject_init_failure(1)
    answer(emu, oem("ZR", 1))
    time.sleep(0.01)
    assert answer(emu, oem("Q", 2)).error_code == 1
    assert answer(emu, oem("P10R", 3)).error_code == 7
    assert answer(emu, oem("?", 4)).text == "0"
    answer(emu, oem("ZR", 5))
    wait_ready(emu)
    assert emu.pump(1).init_count == 1 and answer(emu, oem("Q", 6)).error_code == 0


def test_valve_types_and_the_configuration_report() -> None:
    with PumpEmulator((1, 2, 3), pump_valve_ports={2: 9, 3: 12}, pump_valve_types={1: 1}) as emu:
        assert answer(emu, oem("?76", 1, address="1")).text == "1"  # 3-port Y
        assert answer(emu, oem("?76", 1, address="2")).text == "8"  # 9-port distribution
        assert answer(emu, oem("?76", 1, address="3")).error_code == 3  # no code known
        for address in "123":
            answer(emu, oem("ZR", 2, address=address))
            wait_ready(emu, address)
        assert answer(emu, oem("I3R", 3, address="1")).error_code == 3  # no numbered ports
        assert answer(emu, oem("OR", 4, address="1")).error_code == 0
        assert answer(emu, oem("I9R", 3, address="2")).error_code == 0
        assert answer(emu, oem("I12R", 3, address="3")).error_code == 0
    with PumpEmulator((16,), model="psd4") as emu:
        assert answer(emu, oem("?76", 1, address="@")).error_code == 3  # not a PSD report


def test_init_pushes_the_syringe_out_through_its_output_port(emu) -> None:
    moves = []
    emu.add_move_listener(moves.append)
    answer(emu, oem("ZR", 1))
    wait_ready(emu)
    answer(emu, oem("I2P300R", 2))
    wait_ready(emu)
    answer(emu, oem("ZR", 3))  # port X of the 6-port valve
    wait_ready(emu)
    answer(emu, oem("I2P100R", 4))
    wait_ready(emu)
    answer(emu, oem("Z0,0,5R", 5))  # output operand: port 5
    wait_ready(emu)
    assert [(m.kind, m.increments, m.valve) for m in moves] == [
        ("pickup", 300, "2"), ("init", 300, "6"), ("pickup", 100, "2"), ("init", 100, "5"),
    ]  # fmt: skip


def test_runs_on_its_own_and_keeps_state_across_connections() -> None:
    import subprocess
    import sys

    from instruments.pumps import SyringePump

    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.pump_emulator", "--transport", "tcp",
         "--addresses", "1,2", "--time-scale", "0.001"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = proc.stdout.readline().split("port: ", 1)[1].strip()
        options = {"reply_timeout_s": 0.1, "time_scale": 0.001, "poll_interval_s": 0.005}
        with SyringePump(port, address=2, syringe_volume_ul=300, **options) as pump:
            pump.initialize()
            pump.aspirate(100, port=1)
        with SyringePump(port, address=2, syringe_volume_ul=300, **options) as pump:
            pump.resume()
            assert pump.position_ul == pytest.approx(100)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0 and "'2': (1, 1)" in err
