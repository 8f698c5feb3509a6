"""A client for the GDB Remote Serial Protocol, as QEMU's gdbstub speaks it.

Only what armvcpu needs: memory and register access, breakpoints, continue,
interrupt, and the target description. Packets are acknowledged (QEMU 7.2
offers no ``QStartNoAckMode``).

>>> client = GdbRemote.connect_unix("/tmp/armvcpu-xyz/gdb.sock")  # doctest: +SKIP
>>> client.read_memory(0x40200000, 4)  # doctest: +SKIP
b'...'
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .errors import GdbProtocolError, TargetConnectionError

_INTERRUPT = b"\x03"


def _checksum(payload: bytes) -> bytes:
    return b"%02x" % (sum(payload) & 0xFF)


def _unescape(data: bytes) -> bytes:
    """Undo the RSP binary escaping ('}' followed by the byte XOR 0x20)."""
    if b"}" not in data:
        return data
    out = bytearray()
    it = iter(data)
    for b in it:
        out.append(next(it) ^ 0x20 if b == 0x7D else b)
    return bytes(out)


def _expand_rle(data: bytes) -> bytes:
    """Expand RSP run-length encoding ('X*n' repeats X n-29 more times)."""
    if b"*" not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == 0x2A and out:  # '*'
            out += bytes([out[-1]]) * (data[i + 1] - 29)
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


@dataclass(frozen=True)
class StopReply:
    """Why the target stopped: a signal (``T``/``S``) or an exit (``W``/``X``)."""

    kind: str  # "signal", "exited" or "terminated"
    code: int
    thread: str | None = None
    raw: str = ""

    @property
    def running_ended(self) -> bool:
        """True when the target process is gone (QEMU exited)."""
        return self.kind in ("exited", "terminated")


@dataclass(frozen=True)
class Register:
    name: str
    number: int
    bitsize: int


class GdbRemote:
    """One connection to a GDB remote target."""

    def __init__(self, sock: socket.socket, *, timeout: float = 10.0) -> None:
        self._sock = sock
        self._buf = bytearray()
        self.timeout = timeout
        self.packet_size = 4096
        self.packets_sent = 0
        self.registers: dict[str, Register] = {}

    # -- connection ---------------------------------------------------------------

    @classmethod
    def connect_unix(cls, path: str, *, timeout: float = 10.0) -> GdbRemote:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return cls(sock, timeout=timeout)

    @classmethod
    def connect_tcp(cls, host: str, port: int, *, timeout: float = 10.0) -> GdbRemote:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, timeout=timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def handshake(self) -> None:
        """Negotiate features, learn the register layout and stop state."""
        reply = self.request("qSupported:multiprocess-;swbreak+;hwbreak+;xmlRegisters=aarch64")
        for feature in reply.split(";"):
            if feature.startswith("PacketSize="):
                self.packet_size = int(feature.split("=", 1)[1], 16)
        # '?' first: QEMU clears every breakpoint when it answers '?', so it
        # must come before any breakpoint is set.
        self.request("?")
        self.registers = self._read_target_description()

    # -- raw packets ----------------------------------------------------------------

    def _recv_some(self, deadline: float | None) -> None:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no reply from the GDB remote target")
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                raise TimeoutError("no reply from the GDB remote target")
        try:
            chunk = self._sock.recv(65536)
        except OSError as exc:
            raise TargetConnectionError(f"GDB remote connection failed: {exc}") from exc
        if not chunk:
            raise TargetConnectionError("GDB remote target closed the connection")
        self._buf += chunk

    def _send_raw(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise TargetConnectionError(f"GDB remote connection failed: {exc}") from exc

    def send_packet(self, payload: str | bytes) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        frame = b"$" + data + b"#" + _checksum(data)
        for _ in range(3):
            self._send_raw(frame)
            self.packets_sent += 1
            ack = self._read_ack()
            if ack == b"+":
                return
        raise GdbProtocolError(f"target rejected packet {data[:40]!r} three times")

    def _read_ack(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            # Acks may be preceded by stray bytes; a '$' means the target
            # already replied and we treat that as acknowledged.
            while self._buf:
                b = bytes(self._buf[:1])
                if b in (b"+", b"-"):
                    del self._buf[:1]
                    return b
                if b == b"$":
                    return b"+"
                del self._buf[:1]
            self._recv_some(deadline)

    def recv_packet(self, timeout: float | None) -> bytes:
        """The next packet's payload (acknowledged); None timeout waits forever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            start = self._buf.find(b"$")
            if start >= 0:
                end = self._buf.find(b"#", start)
                if end >= 0 and len(self._buf) >= end + 3:
                    payload = bytes(self._buf[start + 1 : end])
                    checksum = bytes(self._buf[end + 1 : end + 3])
                    del self._buf[: end + 3]
                    if _checksum(payload) != checksum.lower():
                        self._send_raw(b"-")
                        continue
                    self._send_raw(b"+")
                    return _expand_rle(payload)
            else:
                self._buf.clear()  # only acks or noise so far
            self._recv_some(deadline)

    def request(self, payload: str | bytes, *, timeout: float | None = None) -> str:
        """Send one packet and return the reply, raising on an ``Exx`` error."""
        self.send_packet(payload)
        reply = self.recv_packet(self.timeout if timeout is None else timeout)
        text = reply.decode("latin-1")
        if re.fullmatch(r"E[0-9a-fA-F]{2}", text):
            cmd = payload if isinstance(payload, str) else payload.decode("latin-1")
            raise GdbProtocolError(f"target answered {text} to {cmd[:40]!r}")
        return text

    # -- target description ---------------------------------------------------------

    def _read_xfer(self, annex: str) -> bytes:
        data = b""
        while True:
            chunk = self.request(f"qXfer:features:read:{annex}:{len(data):x},{0xFFB:x}")
            if not chunk or chunk[0] not in "lm":
                raise GdbProtocolError(f"bad qXfer reply for {annex}: {chunk[:40]!r}")
            data += _unescape(chunk[1:].encode("latin-1"))
            if chunk[0] == "l":
                return data

    def _read_target_description(self) -> dict[str, Register]:
        """Register names to numbers, from the target's XML (they differ by CPU)."""
        regs: dict[str, Register] = {}
        number = 0
        pending = ["target.xml"]
        seen: set[str] = set()
        while pending:
            annex = pending.pop(0)
            if annex in seen:
                continue
            seen.add(annex)
            # QEMU writes <xi:include> without declaring the xi prefix.
            text = self._read_xfer(annex).replace(b"xi:include", b"include")
            root = ET.fromstring(text)
            includes = []
            for el in root.iter():
                tag = el.tag.rsplit("}", 1)[-1]
                if tag == "include":
                    includes.append(el.attrib["href"])
                elif tag == "reg":
                    if "regnum" in el.attrib:
                        number = int(el.attrib["regnum"])
                    name = el.attrib["name"]
                    regs[name.lower()] = Register(name, number, int(el.attrib["bitsize"]))
                    number += 1
            pending = includes + pending
        if "pc" not in regs:
            raise GdbProtocolError("target description names no 'pc' register")
        return regs

    # -- memory and registers -------------------------------------------------------

    def read_memory(self, addr: int, length: int) -> bytes:
        out = bytearray()
        chunk = max(16, (self.packet_size - 8) // 2)
        while len(out) < length:
            n = min(chunk, length - len(out))
            reply = self.request(f"m{addr + len(out):x},{n:x}")
            data = bytes.fromhex(reply)
            if not data:
                raise GdbProtocolError(f"empty memory read at {addr + len(out):#x}")
            out += data
        return bytes(out)

    def write_memory(self, addr: int, data: bytes) -> None:
        chunk = max(16, (self.packet_size - 64) // 2)
        for off in range(0, len(data), chunk):
            piece = data[off : off + chunk]
            reply = self.request(f"M{addr + off:x},{len(piece):x}:{piece.hex()}")
            if reply != "OK":
                raise GdbProtocolError(f"memory write at {addr + off:#x} answered {reply!r}")

    def _register(self, name: str) -> Register:
        try:
            return self.registers[name.lower()]
        except KeyError:
            raise GdbProtocolError(f"the target has no register named {name!r}") from None

    def read_register(self, name: str) -> int:
        reg = self._register(name)
        reply = self.request(f"p{reg.number:x}")
        if not reply or "x" in reply:
            raise GdbProtocolError(f"register {name} is not available")
        return int.from_bytes(bytes.fromhex(reply), "little")

    def write_register(self, name: str, value: int) -> None:
        reg = self._register(name)
        raw = (value & ((1 << reg.bitsize) - 1)).to_bytes(reg.bitsize // 8, "little")
        reply = self.request(f"P{reg.number:x}={raw.hex()}")
        if reply != "OK":
            raise GdbProtocolError(f"register write {name} answered {reply!r}")

    # -- execution ------------------------------------------------------------------

    def insert_breakpoint(self, addr: int) -> None:
        reply = self.request(f"Z0,{addr:x},4")
        if reply != "OK":
            raise GdbProtocolError(f"the target cannot set a breakpoint at {addr:#x} ({reply!r})")

    def remove_breakpoint(self, addr: int) -> None:
        self.request(f"z0,{addr:x},4")

    def cont(self) -> None:
        """Resume the target; collect the stop with :meth:`wait_stop`."""
        self.send_packet("c")

    def select_thread(self, thread: str) -> None:
        """``Hg``: register reads and writes go to this thread (QEMU: a CPU)."""
        reply = self.request(f"Hg{thread}")
        if reply != "OK":
            raise GdbProtocolError(f"the target cannot select thread {thread} ({reply!r})")

    def detach(self) -> None:
        """``D``: the target runs on without this client."""
        self.request("D")

    def interrupt(self) -> None:
        self._send_raw(_INTERRUPT)

    def wait_stop(self, timeout: float | None) -> StopReply:
        """Wait for a stop reply; console output packets (``O``) are skipped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            reply = self.recv_packet(remaining).decode("latin-1")
            if reply.startswith("O") and reply != "OK":
                continue
            return parse_stop_reply(reply)


def parse_stop_reply(reply: str) -> StopReply:
    if not reply:
        raise GdbProtocolError("empty stop reply")
    kind = reply[0]
    if kind in "ST":
        thread = None
        m = re.search(r"thread:([^;]+);", reply)
        if m:
            thread = m.group(1)
        return StopReply("signal", int(reply[1:3], 16), thread, reply)
    if kind == "W":
        return StopReply("exited", int(reply[1:3], 16), None, reply)
    if kind == "X":
        return StopReply("terminated", int(reply[1:3], 16), None, reply)
    raise GdbProtocolError(f"unexpected stop reply {reply[:40]!r}")
