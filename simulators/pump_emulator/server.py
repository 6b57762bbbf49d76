"""The emulated pumps on a serial line: a pseudo-terminal or a TCP socket, with link faults."""

from __future__ import annotations

import functools
import os
import random
import select
import socket
import threading
import tty
from collections.abc import Callable, Mapping

from instruments.pumps.codec import HostBlock, encode_reply, take_host_block
from simulators.pump_emulator.firmware import PumpFirmware
from simulators.pump_emulator.state import FaultConfig, ReplyCorruption


class PumpEmulator(PumpFirmware):
    """Emulated pumps on one serial bus, served on a pty or over TCP.

    Args:
        addresses: driver addresses (1-15, 16 = '@' on PSD models) of the pumps on the bus.
        model: "xcalibur", "xlp6000", "psd4" or "psd6".
        valve_ports: ports of the distribution valve.
        time_scale: multiplies every move time (0.001 for tests).
        transport: "pty" or "tcp".
        faults: seeded dropped/garbled answer and dropped request probabilities.
        firmware: the ``&`` answer.
        pump_models: per-address model overriding ``model``.
        pump_valve_ports: per-address valve ports overriding ``valve_ports``.
        pump_valve_types: per-address ``U`` valve code (a 3-port Y valve is 1).
        tcp_port: the TCP port to listen on (0: any free port).
    """

    def __init__(
        self,
        addresses: tuple[int, ...] = (1,),
        *,
        model: str = "xcalibur",
        valve_ports: int = 6,
        time_scale: float = 1.0,
        transport: str = "pty",
        faults: FaultConfig | None = None,
        firmware: str = "XCalibur-emu 1.0",
        pump_models: Mapping[int, str] | None = None,
        pump_valve_ports: Mapping[int, int] | None = None,
        pump_valve_types: Mapping[int, int] | None = None,
        tcp_port: int = 0,
    ):
        super().__init__(
            addresses,
            model=model,
            valve_ports=valve_ports,
            time_scale=time_scale,
            firmware=firmware,
            pump_models=pump_models,
            pump_valve_ports=pump_valve_ports,
            pump_valve_types=pump_valve_types,
        )
        self.faults = faults or FaultConfig()
        self._rng = random.Random(self.faults.seed)
        self.dropped = 0
        self.garbled = 0
        self.lost_requests = 0
        self._drop_next = 0
        self._lose_next_requests = 0
        self._corruptions: list[ReplyCorruption] = []
        self._stop = threading.Event()
        self._kind = transport
        self._inbuf = bytearray()
        if transport == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)
            tty.setraw(self._master)
            self.port = os.ttyname(self._slave)
        elif transport == "tcp":
            self._server = socket.create_server(("127.0.0.1", tcp_port))
            self._server.settimeout(0.05)
            self.port = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        else:
            raise ValueError(f"transport must be 'pty' or 'tcp', got {transport!r}")
        self._thread = threading.Thread(target=self._serve, name="pump-emulator", daemon=True)
        self._thread.start()

    def driver_options(self) -> dict[str, float]:
        """:class:`~instruments.pumps.backend.PumpSession` settings matched to this emulator.

        It answers in well under a millisecond, so timeouts and delays shrink from the real
        pump's 100 ms scale; predicted move times are scaled by ``time_scale``.
        """
        return {
            "reply_timeout_s": 0.03,
            "retry_delay_s": 0.005,
            "poll_interval_s": 0.002,
            "deadline_margin_s": 0.3,
            "time_scale": self.time_scale,
        }

    # -- link faults -----------------------------------------------------------------------
    def drop_next_replies(self, count: int = 1) -> None:
        """Execute the next ``count`` blocks but send no answer."""
        self._drop_next += count

    def drop_next_requests(self, count: int = 1) -> None:
        """Lose the next ``count`` host blocks on the way in: not executed, no answer."""
        self._lose_next_requests += count

    def corrupt_next_replies(
        self, count: int = 1, *, offset: int = 2, mask: int = 0x08, command: str | None = None
    ) -> None:
        """XOR ``mask`` into byte ``offset`` of the next ``count`` answers (to ``command``).

        Offset 2 is the status byte in both framings; 3 is the first data byte.
        """
        self._corruptions.append(ReplyCorruption(offset, mask, command, count))

    def handle_block(self, block: HostBlock) -> bytes:
        """Execute one host block as received from the line; the answer bytes (b"": none)."""
        if self._request_lost():
            return b""
        answer = self.execute_block(block)
        if answer is None:
            return b""
        status, data = answer
        raw = encode_reply(block.protocol, status, data.encode("ascii"))
        return self._faulty(raw, block.command)

    def _request_lost(self) -> bool:
        if self._lose_next_requests:
            self._lose_next_requests -= 1
            self.lost_requests += 1
            return True
        if self.faults.drop_request and self._rng.random() < self.faults.drop_request:
            self.lost_requests += 1
            return True
        return False

    def _faulty(self, answer: bytes, command: str) -> bytes:
        for damage in list(self._corruptions):
            if damage.command in (None, command) and damage.offset < len(answer):
                damaged = bytearray(answer)
                damaged[damage.offset] ^= damage.mask
                damage.count -= 1
                if damage.count <= 0:
                    self._corruptions.remove(damage)
                self.garbled += 1
                return bytes(damaged)
        if self._drop_next:
            self._drop_next -= 1
            self.dropped += 1
            return b""
        roll = self._rng.random()
        if roll < self.faults.drop_reply:
            self.dropped += 1
            return b""
        if roll < self.faults.drop_reply + self.faults.garble_reply:
            self.garbled += 1
            damaged = bytearray(answer)
            damaged[self._rng.randrange(len(damaged))] ^= 1 << self._rng.randrange(8)
            return bytes(damaged)
        return answer

    # -- serving ---------------------------------------------------------------------------
    def _serve(self) -> None:
        if self._kind == "pty":
            master = self._master
            self._serve_channel(
                master, lambda: os.read(master, 4096), lambda d: os.write(master, d)
            )
            return
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                self._serve_channel(conn.fileno(), functools.partial(conn.recv, 4096), conn.sendall)

    def _serve_channel(self, fileno: int, read: Callable[[], bytes], write: Callable) -> None:
        self._inbuf.clear()
        while not self._stop.is_set():
            try:
                readable, _, _ = select.select([fileno], [], [], 0.05)
                if not readable:
                    continue
                data = read()
            except OSError:
                return
            if not data:
                return
            self._inbuf.extend(data)
            while (block := take_host_block(self._inbuf)) is not None:
                answer = self.handle_block(block)
                if answer:
                    try:
                        write(answer)
                    except OSError:
                        return

    def close(self) -> None:
        """Stop serving and release the pty or socket."""
        self._stop.set()
        self._thread.join(timeout=2)
        if self._kind == "pty":
            os.close(self._master)
            os.close(self._slave)
        else:
            self._server.close()

    def __enter__(self) -> PumpEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
