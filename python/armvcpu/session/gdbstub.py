"""A client for the GDB Remote Serial Protocol, as QEMU's gdbstub speaks it.

Only what armvcpu needs: memory and register access, breakpoints and
watchpoints, continue, interrupt, and the target description. Packets are
acknowledged unless the target offers ``QStartNoAckMode`` (QEMU 7.2 does not).

>>> client = GdbRemote.connect_unix("/tmp/armvcpu-xyz/gdb.sock")  # doctest: +SKIP
>>> client.read_memory(0x40200000, 4)  # doctest: +SKIP
b'...'
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass

from .. import _core
from ..errors import GdbProtocolError, TargetConnectionError

_INTERRUPT = b"\x03"
# Requests in flight at most: their replies must fit the socket buffers, or
# both sides could block writing.
_MAX_POSTED = 32
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


_rsp_checksum = _core.rsp_checksum  # sum(payload) & 0xFF, in C++: replies are 800+ bytes


def _checksum(payload: bytes) -> bytes:
    return b"%02x" % _rsp_checksum(payload)


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
    """One connection to a GDB remote target.

    Requests can be pipelined: :meth:`post` queues one, and queued requests go
    out in one write with the next request or continue; their replies are
    read, in order, before anything else. An exit's answer and the continue
    after it are one write, in either mode:

    * no-ack mode (``QStartNoAckMode``, when the target offers it; QEMU 7.2
      does not): no '+' either way.
    * acknowledged: the '+' for a request's reply is sent right behind the
      request, in the same write, before the reply has come. A target that
      waits for the ack after each reply (gdbserver, OpenOCD) finds it there,
      and QEMU takes it as the ack of the reply it has just sent. An ack sent
      after the reply came would be sent after the ``c``, and QEMU stops a
      running CPU on any byte it receives that is not such an ack. Only the
      stop reply is acknowledged after it has come, with the next packet
      sent. Over a socket nothing is garbled, so a reply is never asked for
      again: a bad one is an error.
    """

    def __init__(self, sock: socket.socket, *, timeout: float = 10.0) -> None:
        self._sock = sock
        self._buf = bytearray()
        self.timeout = timeout
        self.packet_size = 4096
        self.packets_sent = 0
        self._registers: dict[str, Register] | None = None
        self.features: dict[str, str] = {}  # qSupported: name -> "+", "-", "?" or a value
        self.no_ack = False  # QStartNoAckMode is in force
        self.use_no_ack = True  # ask for it when the target offers it
        self._acks_owed = 0  # replies received whose '+' has not gone out yet
        self._out: list[bytes] = []  # framed packets for the next write
        self._posted: list[tuple[bytes, str | None]] = []  # sent; replies not read yet
        self._sock_timeout: float | None = -1.0  # what the socket is set to

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
        """Negotiate features and learn the stop state (the register layout
        waits for :attr:`registers`' first use)."""
        reply = self.request("qSupported:multiprocess-;swbreak+;hwbreak+;xmlRegisters=aarch64")
        for feature in reply.split(";"):
            if "=" in feature:
                name, value = feature.split("=", 1)
                self.features[name] = value
            elif feature[-1:] in ("+", "-", "?"):
                self.features[feature[:-1]] = feature[-1]
        if "PacketSize" in self.features:
            self.packet_size = int(self.features["PacketSize"], 16)
        if self.use_no_ack and self.features.get("QStartNoAckMode") == "+":
            self.start_no_ack()
        # '?' first: QEMU clears every breakpoint when it answers '?', so it
        # must come before any breakpoint is set.
        self.request("?")

    @property
    def registers(self) -> dict[str, Register]:
        """The target's registers by name, from its target description, read
        on first use: a session that reads no register by number (``armvcpu
        run`` on the shared-memory transport) skips the dozen packets it takes
        (~5 ms before the guest starts)."""
        if self._registers is None:
            self._registers = self._read_target_description()
        return self._registers

    def start_no_ack(self) -> bool:
        """``QStartNoAckMode``: no more '+'/'-' either way. True if in force."""
        # Its OK is still acknowledged (the '+' went with the request); nothing
        # after it is.
        if self.request("QStartNoAckMode") != "OK":
            return False
        self.no_ack = True
        return True

    # -- raw packets ----------------------------------------------------------------

    def _recv_some(self, timeout: float | None) -> None:
        if timeout != self._sock_timeout:
            self._sock.settimeout(timeout)
            self._sock_timeout = timeout
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError:
            raise TimeoutError("no reply from the GDB remote target") from None
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

    def _queue(self, payloads: list[bytes], *, preack: bool = True) -> None:
        """Frame packets for the next write (see :meth:`_flush`). While acks are
        on, each is followed by the '+' for its reply (see the class doc)."""
        plus = b"+" if preack and not self.no_ack else b""
        for p in payloads:
            self._out.append(b"$%s#%02x%s" % (p, _rsp_checksum(p), plus))
        self.packets_sent += len(payloads)

    def _flush(self) -> None:
        """Send the acks we owe and the queued packets, in one write."""
        if self._out or self._acks_owed:
            data = b"+" * self._acks_owed + b"".join(self._out)
            self._acks_owed = 0
            self._out.clear()
            self._send_raw(data)

    def send_packet(self, payload: str | bytes) -> None:
        """Send one packet; its reply (if any) is the caller's to read, with
        :meth:`recv_packet`, which acknowledges it."""
        self._queue([payload.encode() if isinstance(payload, str) else payload], preack=False)
        self._flush()

    def recv_packet(self, timeout: float | None, *, ack_now: bool = True,
                    preacked: bool = False) -> bytes:  # fmt: skip
        """The next packet's payload; None timeout waits forever.

        Its '+' goes out now, or with the next packet sent (not ``ack_now``:
        send one soon, a target may wait for it), or went out already with
        the request (``preacked``). The target's own '+' are skipped; a '-'
        (it got a packet garbled) is an error: over a socket that means the
        conversation is out of step, and resending would not help.
        """
        buf = self._buf
        deadline = None
        while True:
            start = buf.find(b"$")
            if start != 0 and buf:
                if 0x2D in (buf if start < 0 else buf[:start]):  # '-'
                    raise GdbProtocolError("the target rejected a packet (bad checksum)")
                if start < 0:
                    buf.clear()  # acks, or noise
                else:
                    del buf[:start]
                    start = 0
            if start == 0:
                end = buf.find(b"#", 1)
                if end > 0 and len(buf) >= end + 3:
                    payload = bytes(buf[1:end])
                    checksum = bytes(buf[end + 1 : end + 3])
                    del buf[: end + 3]
                    if not self.no_ack:
                        if b"%02x" % _rsp_checksum(payload) != checksum.lower():
                            if preacked:
                                raise GdbProtocolError(f"garbled reply {payload[:40]!r}")
                            self._send_raw(b"-")
                            continue
                        if not preacked:
                            self._acks_owed += 1
                            if ack_now:
                                self._flush()
                    return _expand_rle(payload) if 0x2A in payload else payload  # '*'
            if self._out:
                self._flush()  # what is queued goes out before we wait
            if timeout is None:
                self._recv_some(None)
            else:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + timeout
                elif now >= deadline:
                    raise TimeoutError("no reply from the GDB remote target")
                self._recv_some(deadline - now)

    # -- requests -------------------------------------------------------------------

    def post(self, payload: str | bytes, expect: str | None = "OK") -> None:
        """Queue a request; its reply is checked later (``expect``: the reply
        it must get; None takes any reply but an error)."""
        data = payload.encode() if isinstance(payload, str) else payload
        if len(self._posted) >= _MAX_POSTED:
            self.drain()  # bounded, so that neither side blocks writing
        self._queue([data])
        self._posted.append((data, expect))

    def drain(self) -> None:
        """Send what is queued and read every posted reply, raising on a wrong one."""
        self._flush()
        self._read_posted()

    def _read_posted(self) -> None:
        posted = self._posted
        while posted:
            reply = self.recv_packet(self.timeout, preacked=True).decode("latin-1")
            payload, expect = posted.pop(0)
            _check_reply(payload, reply, expect)

    def request(self, payload: str | bytes, *, timeout: float | None = None) -> str:
        """Send one packet (after any posted ones) and return the reply,
        raising on an ``Exx`` error."""
        data = payload.encode() if isinstance(payload, str) else payload
        if len(self._posted) >= _MAX_POSTED:
            self.drain()
        self._queue([data])
        self._flush()
        if self._posted:
            self._read_posted()
        reply = self.recv_packet(self.timeout if timeout is None else timeout, preacked=True)
        text = reply.decode("latin-1")
        _check_reply(data, text, None)
        return text

    def requests(self, payloads: list[bytes], *, timeout: float | None = None) -> list[str]:
        """Several requests in one write (the target is stopped); their replies."""
        if len(self._posted) + len(payloads) > _MAX_POSTED:
            self.drain()
        replies = []
        for first in range(0, len(payloads), _MAX_POSTED):
            batch = payloads[first : first + _MAX_POSTED]
            self._queue(batch)
            self._flush()
            self._read_posted()
            for data in batch:
                reply = self.recv_packet(self.timeout if timeout is None else timeout,
                                         preacked=True)  # fmt: skip
                text = reply.decode("latin-1")
                _check_reply(data, text, None)
                replies.append(text)
        return replies

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
        # Imported here: only the gdb transport reads the target description,
        # and every session would pay for the XML parser at start-up.
        from xml.etree import ElementTree

        seen: set[str] = set()
        while pending:
            annex = pending.pop(0)
            if annex in seen:
                continue
            seen.add(annex)
            # QEMU writes <xi:include> without declaring the xi prefix.
            text = self._read_xfer(annex).replace(b"xi:include", b"include")
            root = ElementTree.fromstring(text)
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
        chunk = max(16, (self.packet_size - 8) // 2)
        if length <= chunk:
            out = bytes.fromhex(self.request(b"m%x,%x" % (addr, length)))
        else:
            payloads = [
                b"m%x,%x" % (addr + off, min(chunk, length - off))
                for off in range(0, length, chunk)
            ]
            out = b"".join(bytes.fromhex(r) for r in self.requests(payloads))
        if len(out) != length:
            raise GdbProtocolError(f"short memory read at {addr:#x}: {len(out)} of {length} bytes")
        return out

    def write_memory(self, addr: int, data: bytes) -> None:
        self.post_write_memory(addr, data)
        self.drain()

    def post_write_memory(self, addr: int, data: bytes) -> None:
        """:meth:`write_memory` with its replies checked later (see :meth:`post`)."""
        chunk = max(16, (self.packet_size - 64) // 2)
        for off in range(0, len(data), chunk):
            piece = data[off : off + chunk]
            self.post(b"M%x,%x:%s" % (addr + off, len(piece), piece.hex().encode()))

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
        self.post_write_register(name, value)
        self.drain()

    def post_write_register(self, name: str, value: int) -> None:
        """:meth:`write_register` with its reply checked later (see :meth:`post`)."""
        reg = self._register(name)
        raw = (value & ((1 << reg.bitsize) - 1)).to_bytes(reg.bitsize // 8, "little")
        self.post(b"P%x=%s" % (reg.number, raw.hex().encode()))

    # -- execution ------------------------------------------------------------------

    def insert_breakpoint(self, addr: int) -> None:
        reply = self.request(f"Z0,{addr:x},4")
        if reply != "OK":
            raise GdbProtocolError(f"the target cannot set a breakpoint at {addr:#x} ({reply!r})")

    def remove_breakpoint(self, addr: int) -> None:
        self.request(f"z0,{addr:x},4")

    def insert_watchpoint(self, addr: int, length: int) -> bool:
        """``Z2``: stop when the CPU writes [addr, addr + length). False when
        the target cannot (no support: an empty reply, or an error)."""
        try:
            return self.request(f"Z2,{addr:x},{length:x}") == "OK"
        except GdbProtocolError:
            return False

    def remove_watchpoint(self, addr: int, length: int) -> None:
        self.request(f"z2,{addr:x},{length:x}")

    def cont(self) -> None:
        """Resume the target, in one write with the posted requests; collect
        the stop (and their replies) with :meth:`wait_stop`."""
        self._queue([b"c"], preack=False)  # its reply is the stop, acked when it comes
        self._flush()

    def select_thread(self, thread: str) -> None:
        """``Hg``: register reads and writes go to this thread (QEMU: a CPU)."""
        self.post_select_thread(thread)
        self.drain()

    def post_select_thread(self, thread: str) -> None:
        """:meth:`select_thread` with its reply checked later (see :meth:`post`)."""
        self.post(f"Hg{thread}")

    def detach(self) -> None:
        """``D``: the target runs on without this client."""
        self.request("D")

    def interrupt(self) -> None:
        self._send_raw(_INTERRUPT)

    def wait_stop(self, timeout: float | None, *, ack_now: bool = True) -> StopReply:
        """Wait for a stop reply; console output packets (``O``) are skipped.

        Unless ``ack_now``, its '+' goes out with the next packet sent (send
        one soon: a target may wait for it)."""
        self.drain()
        deadline = None if timeout is None else time.monotonic() + timeout
        remaining = timeout
        while True:
            reply = self.recv_packet(remaining, ack_now=ack_now).decode("latin-1")
            if not (reply[:1] == "O" and reply != "OK"):
                return parse_stop_reply(reply)
            if deadline is not None:
                remaining = max(0.0, deadline - time.monotonic())


def _check_reply(payload: bytes, reply: str, expect: str | None) -> None:
    if (expect is not None and reply != expect) or (
        len(reply) == 3 and reply[0] == "E" and _is_hex(reply[1:])
    ):
        cmd = payload.decode("latin-1")
        raise GdbProtocolError(f"target answered {reply[:40]!r} to {cmd[:40]!r}")


def _is_hex(text: str) -> bool:
    return _HEX_DIGITS.issuperset(text)


def parse_stop_reply(reply: str) -> StopReply:
    if not reply:
        raise GdbProtocolError("empty stop reply")
    kind = reply[0]
    if kind in "ST":
        thread = None
        at = reply.find("thread:")
        if at >= 0:
            end = reply.find(";", at)
            if end > at + 7:
                thread = reply[at + 7 : end]
        return StopReply("signal", int(reply[1:3], 16), thread, reply)
    if kind == "W":
        return StopReply("exited", int(reply[1:3], 16), None, reply)
    if kind == "X":
        return StopReply("terminated", int(reply[1:3], 16), None, reply)
    raise GdbProtocolError(f"unexpected stop reply {reply[:40]!r}")
