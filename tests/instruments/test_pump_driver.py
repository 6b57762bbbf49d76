"""The real driver (pyserial) against the firmware emulator on a pty and over TCP."""

from __future__ import annotations

import time

import pytest

from instruments.exceptions import DeviceCommunicationError, LiquidHandlingError
from instruments.pumps import (
    CommandOverflow,
    PlungerOverload,
    PumpSession,
    PumpTimeout,
    PumpVolumeError,
    ReinitRequired,
    ReplayTransport,
    SyringePump,
    ValveOverload,
    broadcast,
    open_transport,
)
from instruments.pumps.models import SpeedSettings, move_time_s
from simulators.pump_emulator import PumpEmulator


def _pump(emu: PumpEmulator, **kw) -> SyringePump:
    options = {**emu.driver_options(), **kw}
    return SyringePump(emu.port, **options)


@pytest.mark.parametrize("protocol", ["oem", "dt"])
def test_init_valves_aspirate_dispense_over_a_pty(emulator, protocol) -> None:
    with _pump(emulator, protocol=protocol, syringe_volume_ul=500) as pump:
        pump.initialize()
        assert pump.position_ul == 0
        pump.aspirate(250, port="input")
        assert pump.position_ul == pytest.approx(250)
        assert pump.valve == "input"
        pump.set_valve(4)
        assert pump.valve == 4
        pump.dispense(100, port="output")
        assert pump.valve == "output"
        assert pump.position_ul == pytest.approx(150)
        pump.set_valve("bypass")
        assert pump.valve == "bypass"
    state = emulator.pump(1)
    assert state.position == 900 and state.plunger_moves == 2
    assert emulator.protocol_lock == protocol


def test_speed_identify_and_status(emulator) -> None:
    with _pump(emulator, syringe_volume_ul=1000) as pump:
        pump.initialize()
        assert pump.speed_ul_per_s == pytest.approx(1400 / 2 / 3)
        pump.speed_ul_per_s = 50
        assert emulator.pump(1).speeds.top_hz == 300
        assert pump.speed_ul_per_s == pytest.approx(50)
        with pytest.raises(PumpVolumeError, match="outside"):
            pump.speed_ul_per_s = 5000
        ident = pump.identify()
        assert ident["firmware"] == emulator.firmware and ident["model"] == "Cavro XCalibur"
        assert ident["position_ul"] == 0 and ident["valve"] == "input"
        status = pump.status()
        assert status["ready"] and status["error_code"] == 0 and status["initialized"]


def test_two_pumps_share_one_bus(emulator) -> None:
    bus = open_transport(emulator.port)
    left = SyringePump(
        address=1, syringe_volume_ul=1000, transport=bus, **emulator.driver_options()
    )
    right = SyringePump(
        address=2, syringe_volume_ul=250, transport=bus, **emulator.driver_options()
    )
    left.initialize()
    right.initialize()
    left.aspirate(300, port=2)
    right.aspirate(100, port=3)
    assert left.position_ul == pytest.approx(300) and right.position_ul == pytest.approx(100)
    assert emulator.pump(1).position == 900 and emulator.pump(2).position == 1200
    assert (left.valve, right.valve) == (2, 3)
    broadcast(bus, "A", "V500R")  # both pumps, no answer
    time.sleep(0.05)
    assert emulator.pump(1).speeds.top_hz == emulator.pump(2).speeds.top_hz == 500
    left.close()
    right.close()
    bus.close()


def test_over_tcp_socket_url(tcp_emulator) -> None:
    assert tcp_emulator.port.startswith("socket://")
    with _pump(tcp_emulator, model="xcalibur") as pump:
        pump.initialize()
        pump.aspirate(1000, port="input")
        pump.dispense(400, port="output")
        assert pump.position_ul == pytest.approx(600)


def test_xlp6000_and_psd4_tables() -> None:
    with PumpEmulator((1,), model="xlp6000", time_scale=0.001) as emu:
        with _pump(emu, model="xlp6000", syringe_volume_ul=1000) as pump:
            pump.initialize()
            pump.aspirate(500, port="input")
            assert emu.pump(1).position == 3000
    with PumpEmulator((16,), model="psd4", time_scale=0.001) as emu:
        with _pump(emu, model="psd4", address=16, syringe_volume_ul=1250) as pump:
            pump.initialize()
            pump.aspirate(125)
            assert emu.pump(16).position == 300 and emu.pump(16).address == "@"


def test_impossible_volumes_are_refused_before_sending(emulator) -> None:
    with _pump(emulator, syringe_volume_ul=100) as pump:
        pump.initialize()
        blocks = pump.session.stats.blocks
        with pytest.raises(PumpVolumeError, match="cannot aspirate"):
            pump.aspirate(101)
        with pytest.raises(LiquidHandlingError, match="cannot dispense"):
            pump.dispense(1)
        with pytest.raises(PumpVolumeError, match="below one increment"):
            pump.aspirate(0.01)
        with pytest.raises(PumpVolumeError, match="positive"):
            pump.aspirate(-5)
        with pytest.raises(PumpVolumeError, match="valve port 9"):
            pump.set_valve(9)
        assert pump.session.stats.blocks == blocks
    assert emulator.pump(1).plunger_moves == 0


def test_moves_before_init_are_refused(emulator) -> None:
    with _pump(emulator) as pump:
        with pytest.raises(ReinitRequired, match="not initialised"):
            pump.aspirate(10)
    assert emulator.pump(1).plunger_moves == 0


def test_plunger_overload_requires_reinit(emulator) -> None:
    with _pump(emulator) as pump:
        pump.initialize()
        emulator.inject_overload(1, "plunger")
        with pytest.raises(PlungerOverload) as info:
            pump.aspirate(500, port="input")
        assert info.value.requires_reinit and info.value.code == 9 and info.value.raw
        moves = emulator.pump(1).plunger_moves
        with pytest.raises(ReinitRequired, match="PlungerOverload"):
            pump.dispense(10)
        assert emulator.pump(1).plunger_moves == moves
        pump.initialize()
        pump.aspirate(100)
        assert pump.position_ul == pytest.approx(100)


def test_valve_overload_requires_reinit(emulator) -> None:
    with _pump(emulator) as pump:
        pump.initialize()
        emulator.inject_overload(1, "valve")
        with pytest.raises(ValveOverload):
            pump.set_valve("output")
        with pytest.raises(ReinitRequired):
            pump.set_valve("input")


def test_stuck_pump_times_out_within_the_predicted_deadline(emulator) -> None:
    with _pump(emulator, syringe_volume_ul=1000) as pump:
        pump.initialize()
        emulator.inject_stuck(1)
        options = emulator.driver_options()
        predicted = move_time_s(1500, SpeedSettings(), dispense=False) * options["time_scale"]
        deadline = predicted * 1.2 + options["deadline_margin_s"]
        started = time.monotonic()
        with pytest.raises(PumpTimeout) as info:
            pump.aspirate(500)
        elapsed = time.monotonic() - started
        assert info.value.predicted_s == pytest.approx(predicted)
        assert deadline <= elapsed < deadline + 0.25
        assert not emulator.pump(1).stuck  # T was sent
        with pytest.raises(ReinitRequired):
            pump.dispense(1)


def test_overflow_when_not_polling(emulator) -> None:
    with _pump(emulator) as pump:
        pump.initialize()
    session = PumpSession(open_transport(emulator.port), "1", **emulator.driver_options())
    emulator.time_scale = 1.0
    session.send("A3000R")
    with pytest.raises(CommandOverflow) as info:
        session.send("A0R")
    assert not info.value.requires_reinit
    session.terminate()
    session.transport.close()


def test_dt_never_resends_an_action_blind(emulator) -> None:
    with _pump(emulator, protocol="dt") as pump:
        pump.initialize()
        emulator.drop_next_replies(1)
        pump.aspirate(100)  # settled through Q and the position (issue 9, item 4)
        assert emulator.pump(1).plunger_moves == 1  # executed once, never twice
        assert pump.session.stats.settled == 1 and pump.session.stats.resent == 0
        emulator.drop_next_replies(1)
        assert pump.position_ul == pytest.approx(100)  # a query is resent
        session = PumpSession(open_transport(emulator.port), "1", protocol="dt")
        emulator.drop_next_replies(1)
        with pytest.raises(DeviceCommunicationError, match="DT"):
            session.execute("P10R", 0.0)  # without a way to settle it, a lost answer raises
        session.transport.close()


def test_oem_lost_answer_is_repeated_not_re_executed(emulator) -> None:
    with _pump(emulator) as pump:
        pump.initialize()
        emulator.drop_next_replies(1)
        pump.aspirate(100)
        assert pump.session.stats.retries == 1
        assert emulator.pump(1).plunger_moves == 1 and pump.position_ul == pytest.approx(100)


def test_replay_of_a_logged_session(emulator, tmp_path) -> None:
    log = tmp_path / "pump.jsonl"
    with _pump(emulator, log_path=log) as pump:
        pump.initialize()
        pump.aspirate(200, port="input")
        emulator.drop_next_replies(1)
        pump.dispense(50, port="output")
        recorded = (pump.position_ul, pump.identify())
    replay = ReplayTransport(log)
    with SyringePump(transport=replay, **emulator.driver_options()) as pump:
        pump.initialize()
        pump.aspirate(200, port="input")
        pump.dispense(50, port="output")
        assert (pump.position_ul, pump.identify()) == recorded
    assert replay.exhausted
    replay = ReplayTransport(log)
    with SyringePump(transport=replay, **emulator.driver_options()) as pump:
        pump.initialize()
        with pytest.raises(DeviceCommunicationError, match="log has"):
            pump.aspirate(201, port="input")


def test_lost_link_during_a_move_locks_the_pump_until_resume(emulator) -> None:
    with _pump(emulator, max_retries=2) as pump:
        pump.initialize()
        emulator.drop_next_replies(3)
        with pytest.raises(DeviceCommunicationError, match="after 3 attempt"):
            pump.aspirate(100)
        with pytest.raises(ReinitRequired, match="position is unknown"):
            pump.aspirate(100)
        pump.resume()
        assert pump.position_ul == pytest.approx(100)  # it had moved once, never twice
        pump.dispense(100)
        assert emulator.pump(1).plunger_moves == 2 and emulator.pump(1).position == 0


# -- issue 9, item 7: busy and stuck pumps --------------------------------------------------


def test_a_move_waits_for_a_pump_still_busy_from_elsewhere() -> None:
    with PumpEmulator((1,), time_scale=0.05) as emu:
        options = emu.driver_options()
        other = SyringePump(emu.port, syringe_volume_ul=1000, **options)
        other.initialize()
        other.session.send("P3000R")  # another process leaves a 0.2 s move running
        other.close()
        with SyringePump(emu.port, syringe_volume_ul=1000, **options) as pump:
            pump.resume()
            pump.dispense(100, port="output")  # no CommandOverflow
            assert pump.position_ul == pytest.approx(900)
        assert emu.pump(1).plunger_moves == 2


def test_a_pump_that_never_becomes_ready_is_reported_stuck(emulator) -> None:
    from instruments.pumps import PumpStuck

    options = emulator.driver_options()
    with _pump(emulator) as other:
        other.initialize()
    emulator.pump(1).stuck = True  # busy until T, e.g. a jammed plunger
    with SyringePump(emulator.port, **options) as pump:
        pump.resume()
        with pytest.raises(PumpStuck, match="stuck") as info:
            pump.aspirate(100, port="input")
        assert info.value.requires_reinit and "initialise" in info.value.recovery
        assert not emulator.pump(1).stuck  # T was sent
        assert emulator.pump(1).plunger_moves == 0
        with pytest.raises(PumpStuck, match="stuck"):
            emulator.pump(1).stuck = True
            pump.initialize()
